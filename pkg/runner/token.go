package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// TokenFunc returns the NATS token of a session;
// (*client.Client).WorkloadToken is one.
type TokenFunc func(ctx context.Context, session string) (string, error)

// tokenRefresh is how often a run's token is fetched again: well inside
// the server's default lifetime (24 h), so a long run keeps publishing.
const tokenRefresh = 6 * time.Hour

// tokenFileName is the token's file in the run's trust directory.
const tokenFileName = "nats-token"

// writeToken fetches the session's token into dir for the sidecar's UID
// and returns the sidecar's flags.
func writeToken(ctx context.Context, dir, session string, fn TokenFunc) ([]string, error) {
	path := filepath.Join(dir, tokenFileName)
	if err := fetchToken(ctx, path, session, fn); err != nil {
		return nil, err
	}
	return []string{"--nats-token-file", path}, nil
}

// fetchToken writes a fresh token to path, atomically so the sidecar never
// reads half of one.
func fetchToken(ctx context.Context, path, session string, fn TokenFunc) error {
	tok, err := fn(ctx, session)
	if err != nil {
		return fmt.Errorf("nats token for session %s: %w", session, err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(tok), 0o400); err != nil {
		return fmt.Errorf("nats token: %w", err)
	}
	if err := os.Chown(tmp, DefaultProxyUID, DefaultProxyUID); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("nats token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("nats token: %w", err)
	}
	return nil
}

// refreshToken renews the token every tokenRefresh until ctx ends. A
// failure is logged and retried at the next tick: the current token is
// still good for hours.
func refreshToken(ctx context.Context, path, session string, fn TokenFunc, log *slog.Logger) {
	t := time.NewTicker(tokenRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fetchToken(ctx, path, session, fn); err != nil {
				log.Warn("refresh nats token", logKeyError, err)
			}
		}
	}
}
