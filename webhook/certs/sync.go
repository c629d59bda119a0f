package certs

import (
	"bytes"
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// WebhookConfig names an admission webhook configuration whose caBundle
// Run keeps current.
type WebhookConfig struct {
	// Name of the configuration; empty names none.
	Name string
	// Validating selects a ValidatingWebhookConfiguration instead of a
	// MutatingWebhookConfiguration.
	Validating bool
}

// SyncCABundle sets bundle as the caBundle of every webhook of the
// MutatingWebhookConfiguration name, if it differs. It reports whether it
// wrote.
func SyncCABundle(ctx context.Context, cs kubernetes.Interface, name string, bundle []byte) (bool, error) {
	return syncConfig(ctx, cs, WebhookConfig{Name: name}, bundle)
}

// SyncValidatingCABundle is SyncCABundle for a
// ValidatingWebhookConfiguration.
func SyncValidatingCABundle(ctx context.Context, cs kubernetes.Interface, name string, bundle []byte) (bool, error) {
	return syncConfig(ctx, cs, WebhookConfig{Name: name, Validating: true}, bundle)
}

func syncConfig(ctx context.Context, cs kubernetes.Interface, wc WebhookConfig, bundle []byte) (bool, error) {
	wrote := false
	set := func(cc *admissionregistrationv1.WebhookClientConfig) {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle = bundle
			wrote = true
		}
	}
	kind := "mutatingwebhookconfiguration"
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		if wc.Validating {
			kind = "validatingwebhookconfiguration"
			api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
			cfg, err := api.Get(ctx, wc.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for i := range cfg.Webhooks {
				set(&cfg.Webhooks[i].ClientConfig)
			}
			if !wrote {
				return nil
			}
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		}
		api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
		cfg, err := api.Get(ctx, wc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			set(&cfg.Webhooks[i].ClientConfig)
		}
		if !wrote {
			return nil
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sync caBundle of %s %s: %w", kind, wc.Name, err)
	}
	return wrote, nil
}

// Run calls Ensure and, when cs is not nil, syncs the caBundle of each
// named webhook configuration every interval until ctx ends; the sync runs
// every time, so a caBundle reset by a chart upgrade is repaired. Errors
// are logged and retried on the next tick.
func (m *Manager) Run(ctx context.Context, interval time.Duration, cs kubernetes.Interface, configs ...WebhookConfig) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := m.Ensure(ctx); err != nil {
			m.opts.Logger.Error("webhook certificate renewal", "error", err)
		} else if cs != nil {
			for _, wc := range configs {
				if wc.Name == "" {
					continue
				}
				if wrote, err := syncConfig(ctx, cs, wc, m.CABundle()); err != nil {
					m.opts.Logger.Error("webhook caBundle sync", "error", err)
				} else if wrote {
					m.opts.Logger.Info("webhook caBundle updated", "config", wc.Name, "validating", wc.Validating)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
