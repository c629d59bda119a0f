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
	api := cs.AdmissionregistrationV1()
	if wc.Validating {
		return syncBundle(ctx, api.ValidatingWebhookConfigurations(), "validatingwebhookconfiguration", wc.Name, bundle,
			func(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
				for i := range c.Webhooks {
					out[i] = &c.Webhooks[i].ClientConfig
				}
				return out
			})
	}
	return syncBundle(ctx, api.MutatingWebhookConfigurations(), "mutatingwebhookconfiguration", wc.Name, bundle,
		func(c *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = &c.Webhooks[i].ClientConfig
			}
			return out
		})
}

// configAPI is the typed client of one kind of webhook configuration.
type configAPI[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// syncBundle sets bundle on every client config of the configuration
// name, retrying on conflicts, and reports whether it wrote.
func syncBundle[T any](ctx context.Context, api configAPI[T], kind, name string, bundle []byte,
	clientConfigs func(T) []*admissionregistrationv1.WebhookClientConfig) (bool, error) {
	wrote := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		cfg, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cc := range clientConfigs(cfg) {
			if !bytes.Equal(cc.CABundle, bundle) {
				cc.CABundle = bundle
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
		return false, fmt.Errorf("sync caBundle of %s %s: %w", kind, name, err)
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
