package certs

import (
	"bytes"
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// SyncCABundle sets bundle as the caBundle of every webhook of the
// MutatingWebhookConfiguration name, if it differs. It reports whether it
// wrote.
func SyncCABundle(ctx context.Context, cs kubernetes.Interface, name string, bundle []byte) (bool, error) {
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
		cfg, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
				cfg.Webhooks[i].ClientConfig.CABundle = bundle
				wrote = true
			}
		}
		if !wrote {
			return nil
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sync caBundle of mutatingwebhookconfiguration %s: %w", name, err)
	}
	return wrote, nil
}

// Run calls Ensure and, when cs is not nil, SyncCABundle every interval
// until ctx ends; the sync runs every time, so a caBundle reset by a chart
// upgrade is repaired. Errors are logged and retried on the next tick.
func (m *Manager) Run(ctx context.Context, interval time.Duration, cs kubernetes.Interface, webhookConfig string) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := m.Ensure(ctx); err != nil {
			m.opts.Logger.Error("webhook certificate renewal", "error", err)
		} else if cs != nil && webhookConfig != "" {
			if wrote, err := SyncCABundle(ctx, cs, webhookConfig, m.CABundle()); err != nil {
				m.opts.Logger.Error("webhook caBundle sync", "error", err)
			} else if wrote {
				m.opts.Logger.Info("webhook caBundle updated", "config", webhookConfig)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
