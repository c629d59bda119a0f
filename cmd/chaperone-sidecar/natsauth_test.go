package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// The webhook's CHAPERONE_NATS_TOKEN_FILE is the default NATS token; a missing file
// stops the sidecar with a clear error instead of connecting without it.
func TestProxyTokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	env := map[string]string{"POD_UID": "pod-1", "CHAPERONE_NATS_URL": "nats://127.0.0.1:4222", "CHAPERONE_NATS_TOKEN_FILE": file}
	cfg, err := parseProxyFlags(nil, io.Discard, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATSTokenFile != file {
		t.Fatalf("token file %q, want %q", cfg.NATSTokenFile, file)
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := cfg.natsOptions(log); err == nil {
		t.Fatal("missing token file accepted")
	}
	if err := os.WriteFile(file, []byte("tok\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.natsOptions(log)
	if err != nil || len(opts) == 0 {
		t.Fatalf("options: %v %v", opts, err)
	}
	cfg.NATSTokenFile = ""
	if opts, err := cfg.natsOptions(log); err != nil || opts != nil {
		t.Fatalf("without a token file: %v %v", opts, err)
	}
}
