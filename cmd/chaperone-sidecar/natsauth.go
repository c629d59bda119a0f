package main

import (
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
)

// natsOptions authenticate every NATS connection of the sidecar: the
// token from NATSTokenFile, read again at each reconnect so a rotated token is
// used, and the inbox prefix the server's grant for this session allows.
// Without a token file the sidecar connects as an anonymous client.
func (c ProxyConfig) natsOptions(log *slog.Logger) ([]nats.Option, error) {
	if c.NATSTokenFile == "" {
		log.Warn("no --nats-token-file: connecting to NATS without a workload token")
		return nil, nil
	}
	return natscred.Options(c.Session, c.NATSTokenFile, log)
}
