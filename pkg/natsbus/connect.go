package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect dials NATS with settings suited to a long-running component:
// reconnect forever, buffer publishes while reconnecting, and retry the
// first connect too. opts are applied after the defaults and override them.
// ctx bounds the initial connect.
func Connect(ctx context.Context, url string, opts ...nats.Option) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	all := append([]nats.Option{
		nats.Name("chaperone"),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(64 << 20),
		nats.PingInterval(20 * time.Second),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	return nc, nil
}

// LogEvents returns an option that logs disconnects, reconnects, closes and
// asynchronous errors of a connection.
func LogEvents(logger *slog.Logger) nats.Option {
	return func(o *nats.Options) error {
		o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", slog.Any("error", err))
			}
		}
		o.ReconnectedCB = func(nc *nats.Conn) {
			logger.Info("nats reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
		}
		o.ClosedCB = func(*nats.Conn) { logger.Debug("nats connection closed") }
		o.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			logger.Warn("nats async error", slog.String("subject", subj), slog.Any("error", err))
		}
		return nil
	}
}
