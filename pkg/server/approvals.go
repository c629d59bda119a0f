package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
)

// startApprovals starts the approvals service: requests from sidecars over
// NATS, the Slack-style webhook when --approval-webhook-url is set, and the
// signed callback when --slack-signing-secret-file is. It returns the
// service, the callback handler and the function that stops it.
func startApprovals(ctx context.Context, cfg Config, nc *nats.Conn, js jetstream.JetStream, st approvals.Appender, reg prometheus.Registerer, logger *slog.Logger) (*approvals.Service, *approvals.Callback, func(context.Context) error, error) {
	log := logger.With(slog.String("component", "approvals"))
	o := approvals.Options{NATS: nc, JetStream: js, Store: st, Logger: log, Registerer: reg}
	if cfg.ApprovalWebhookURL != "" {
		o.Notifier = &approvals.Webhook{URL: cfg.ApprovalWebhookURL}
	}
	svc, err := approvals.New(ctx, o)
	if err != nil {
		return nil, nil, nil, err
	}
	var co approvals.CallbackOptions
	co.Logger = log
	if cfg.SlackSigningSecretFile != "" {
		if co.Secret, err = approvals.ReadSecret(cfg.SlackSigningSecretFile); err != nil {
			return nil, nil, nil, err
		}
	}
	if cfg.SlackUsersFile != "" {
		if co.Users, err = approvals.LoadSlackUsers(cfg.SlackUsersFile); err != nil {
			return nil, nil, nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	log.Info("approvals running", slog.Bool("webhook", o.Notifier != nil), slog.Bool("slack_callback", len(co.Secret) > 0))
	stop := func(ctx context.Context) error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("approvals did not stop: %w", ctx.Err())
		}
	}
	return svc, svc.Callback(co), stop, nil
}
