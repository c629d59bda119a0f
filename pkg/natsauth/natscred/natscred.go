// Package natscred is the workload's side of Chaperone's NATS
// authentication: how a sidecar or node agent presents its
// service-account token and which inbox prefix its grant allows. It is kept
// apart from natsauth so workloads do not link the verifier.
package natscred

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// InboxPrefix is the reply-subject prefix of a workload's connection.
// Workloads must connect with it (Options does): they may subscribe under
// it and nowhere else, so no workload reads another's replies.
func InboxPrefix(podUID string) string { return "_INBOX." + podUID }

// logKeyErr is the log key of errors.
const logKeyErr = "error"

// Options are the NATS options of a workload whose session (pod UID)
// is session and whose token is in tokenFile. The file is read at every
// connect and reconnect, so a token the kubelet rotated in place is used
// once the old one expired and the server closed the connection. Every
// connection of the workload needs them: the inbox prefix is part of the
// grant.
func Options(session, tokenFile string, logger *slog.Logger) ([]nats.Option, error) {
	if err := event.ValidSession(session); err != nil {
		return nil, fmt.Errorf("nats client: %w", err)
	}
	if _, err := ReadToken(tokenFile); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return []nats.Option{
		nats.CustomInboxPrefix(InboxPrefix(session)),
		nats.TokenHandler(func() string {
			tok, err := ReadToken(tokenFile)
			if err != nil {
				logger.Error("nats token", slog.Any(logKeyErr, err))
			}
			return tok
		}),
	}, nil
}

// ReadToken reads a token file, trimmed of surrounding white space.
func ReadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("nats token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("nats token file %s: empty", file)
	}
	return tok, nil
}
