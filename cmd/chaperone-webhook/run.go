package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chaperone-dev/chaperone/webhook"
	"github.com/chaperone-dev/chaperone/webhook/certs"
)

// run serves until ctx ends.
func (c Config) run(ctx context.Context, log *slog.Logger) error {
	return c.serve(ctx, log, nil)
}

// serve is run; ready, when not nil, is called with the admission listener's
// address and the certificate manager (nil with --cert-mode=files) once it
// serves.
func (c Config) serve(ctx context.Context, log *slog.Logger, ready func(addr net.Addr, m *certs.Manager)) error {
	restCfg, err := c.restConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if c.NativeSidecar == "auto" {
		native, v, err := supportsNativeSidecars(cs)
		if err != nil {
			return err
		}
		c.Inject.Mode = webhook.ModeClassic
		if native {
			c.Inject.Mode = webhook.ModeNative
		}
		log.Info("sidecar mode from the API server version", "version", v, "mode", c.Inject.Mode)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	factory := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	nsLister := factory.Core().V1().Namespaces().Lister()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	labeler := webhook.NamespaceLabelerFunc(func(ctx context.Context, name string) (map[string]string, error) {
		ns, err := nsLister.Get(name)
		if apierrors.IsNotFound(err) { // created a moment ago: ask the API server
			got, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return got.Labels, nil
		}
		if err != nil {
			return nil, err
		}
		return labels.Set(ns.Labels), nil
	})
	h, err := webhook.NewHandler(c.Inject, webhook.HandlerOptions{Namespaces: labeler, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	pv, err := webhook.NewPolicyValidator(reg, log)
	if err != nil {
		return err
	}

	var (
		cm       *certs.Manager
		files    *certs.Files
		getCert  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		runCerts func(context.Context) error
	)
	if c.CertMode == certModeFiles {
		files = certs.NewFiles(c.CertDir, log)
		if _, err := files.Load(); err != nil {
			return err
		}
		getCert = files.GetCertificate
		runCerts = func(ctx context.Context) error { return files.Run(ctx, c.RenewInterval) }
	} else {
		opts := certs.Options{Dir: c.CertDir, DNSNames: c.DNSNames, IPs: c.IPs, Logger: log}
		if c.CertSecret != "" {
			opts.Shared = certs.NewSecretStore(cs, c.CertSecretNamespace, c.CertSecret)
		}
		if cm, err = certs.New(opts); err != nil {
			return err
		}
		if _, err := cm.Ensure(ctx); err != nil {
			return err
		}
		getCert = cm.GetCertificate
		runCerts = func(ctx context.Context) error {
			return cm.Run(ctx, c.RenewInterval, cs, certs.WebhookConfig{Name: c.WebhookConfigName},
				certs.WebhookConfig{Name: c.ValidatingConfigName, Validating: true})
		}
	}
	for _, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			return errors.New("namespace cache did not sync")
		}
	}

	mux := http.NewServeMux()
	mux.Handle("POST /mutate", h.HTTPHandler())
	mux.Handle("POST "+webhook.PathValidateSessionPolicy, pv.HTTPHandler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12},
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	health := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	health.HandleFunc("GET /healthz", ok)
	health.HandleFunc("GET /readyz", ok)
	health.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hsrv := &http.Server{Addr: c.HealthAddr, Handler: health, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- runCerts(ctx) }()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve: %w", err)
		}
	}()
	go func() {
		if err := hsrv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("health: %w", err)
		}
	}()
	log.Info("webhook listening", "addr", ln.Addr().String(), "health", c.HealthAddr, "mode", c.Inject.Mode)
	if ready != nil {
		ready(ln.Addr(), cm)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(runErr, srv.Shutdown(shut), hsrv.Shutdown(shut))
}

func (c Config) restConfig() (*rest.Config, error) {
	if c.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, nil
}

// supportsNativeSidecars reports whether the API server is at least 1.29,
// where sidecar containers (restartPolicy: Always) are on by default.
func supportsNativeSidecars(cs kubernetes.Interface) (bool, string, error) {
	info, err := cs.Discovery().ServerVersion()
	if err != nil {
		return false, "", fmt.Errorf("server version: %w", err)
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		return false, info.GitVersion, fmt.Errorf("server version %q: %w", info.GitVersion, err)
	}
	return v.AtLeast(version.MajorMinor(1, 29)), info.GitVersion, nil
}
