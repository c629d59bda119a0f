package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Addresses is the content of DataDir/addresses.json: where the running
// server can be reached, with the ports it really chose.
type Addresses struct {
	HTTP string `json:"http"`
	NATS string `json:"nats"`
}

// ReadAddresses reads the addresses.json of a data dir.
func ReadAddresses(dataDir string) (Addresses, error) {
	var a Addresses
	b, err := os.ReadFile(filepath.Join(dataDir, AddressesFile))
	if err != nil {
		return a, fmt.Errorf("read addresses: %w", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("parse %s: %w", AddressesFile, err)
	}
	return a, nil
}

// writeAddresses writes path atomically, so a reader never sees half a file.
func writeAddresses(path string, a Addresses) error {
	h, err := json.Marshal(a.HTTP)
	if err != nil {
		return fmt.Errorf("encode addresses: %w", err)
	}
	n, err := json.Marshal(a.NATS)
	if err != nil {
		return fmt.Errorf("encode addresses: %w", err)
	}
	// The documented shape, byte for byte, for scripts that do not parse JSON.
	b := fmt.Appendf(nil, `{"http": %s, "nats": %s}`, h, n)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addresses-*.json")
	if err != nil {
		return fmt.Errorf("write addresses: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write addresses: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write addresses: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write addresses: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write addresses: %w", err)
	}
	return nil
}
