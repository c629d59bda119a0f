package server

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaperone-dev/chaperone/pkg/kubepolicy"
)

// startKubePolicies starts the SessionPolicy watcher that feeds d (see
// package kubepolicy) and returns its stop. It fails at once when the
// cluster is not reachable or does not serve SessionPolicy to us.
func startKubePolicies(ctx context.Context, cfg Config, d *Distributor, log *slog.Logger) (func(context.Context) error, error) {
	rc, err := kubeRESTConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kube-policies: %w", err)
	}
	rc.UserAgent = "chaperone-server"
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--kube-policies: kubernetes client: %w", err)
	}
	w, err := kubepolicy.New(kubepolicy.Options{Client: dc, Publisher: d, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := w.Check(ctx); err != nil {
		return nil, fmt.Errorf("--kube-policies: %w", err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	return func(ctx context.Context) error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("sessionpolicy watcher did not stop: %w", ctx.Err())
		}
	}, nil
}

// kubeRESTConfig reads kubeconfig, or the pod's in-cluster config when it
// is empty.
func kubeRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (or give --kubeconfig): %w", err)
	}
	return rc, nil
}
