package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/ingest"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

// Files and folders inside Config.DataDir.
const (
	DBFile        = "chaperone.db"
	NATSDir       = "nats"
	AddressesFile = "addresses.json"
)

// ErrNATSDisconnected is reported by readiness while NATS is unreachable.
var ErrNATSDisconnected = errors.New("nats not connected")

// Run starts the server and serves until ctx is done, then stops in order:
// HTTP stops accepting, ingest commits and acks its batch in flight, the
// NATS connection and the embedded server close, then the store. The stop
// is bounded by Config.ShutdownTimeout.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LocalMode() {
		logger.Warn("local mode: the API has no authentication and listens on loopback only; set --oidc-issuer for a shared server",
			slog.String("http_addr", cfg.HTTPAddr))
	}
	// Discovery first: a wrong issuer should stop the start before
	// anything else is opened.
	verifier, err := cfg.verifier(ctx, logger.With(slog.String("component", "auth")))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	addrFile := filepath.Join(cfg.DataDir, AddressesFile)
	// A stale file would tell scripts that an old server is up.
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", addrFile, err)
	}

	// Each started part pushes its stop; they run in reverse on return.
	var stops []stopFunc
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			if serr := stops[i].fn(sctx); serr != nil {
				logger.Error("shutdown", slog.String("part", stops[i].name), slog.Any("error", serr))
				err = errors.Join(err, fmt.Errorf("stop %s: %w", stops[i].name, serr))
			}
		}
		logger.Info("chaperone-server stopped")
	}()
	push := func(name string, fn func(context.Context) error) { stops = append(stops, stopFunc{name, fn}) }

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	dbPath := filepath.Join(cfg.DataDir, DBFile)
	st, err := sqlite.Open(ctx, dbPath, sqlite.WithLogger(logger.With(slog.String("component", "store"))), sqlite.WithRegisterer(reg))
	if err != nil {
		return err
	}
	push("store", func(context.Context) error { return st.Close() })
	logger.Info("store open", slog.String("path", dbPath))

	// Workload authentication: keys, and the cluster issuer's discovery.
	na, err := cfg.natsAuth(ctx, logger.With(slog.String("component", "natsauth")))
	if err != nil {
		return err
	}
	natsURL := cfg.NATSURL
	if natsURL == "" {
		emb, err := natsbus.StartEmbedded(ctx, natsbus.EmbeddedOptions{
			Addr:     cfg.NATSAddr,
			StoreDir: filepath.Join(cfg.DataDir, NATSDir),
			Logger:   logger,
			Auth:     na.embedded(),
		})
		if err != nil {
			return err
		}
		push("embedded nats", emb.Shutdown)
		natsURL = emb.ClientURL()
	}
	nc, err := natsbus.Connect(ctx, natsURL, append([]nats.Option{nats.Name("chaperone-server"),
		natsbus.LogEvents(logger.With(slog.String("component", "nats")))}, na.connectOptions()...)...)
	if err != nil {
		return err
	}
	push("nats connection", func(ctx context.Context) error {
		// Acks of the last batch must leave before the connection closes.
		ferr := nc.FlushWithContext(ctx)
		nc.Close()
		if errors.Is(ferr, nats.ErrConnectionClosed) {
			return nil
		}
		return ferr
	})
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := natsbus.EnsureStreams(ctx, js); err != nil {
		return err
	}
	callout, err := na.startCallout(ctx, nc, reg, logger.With(slog.String("component", "natsauth")))
	if err != nil {
		return err
	}
	if callout != nil {
		push("nats auth callout", callout.Stop)
	}

	ing, err := ingest.New(ingest.Options{
		Store:      st,
		JetStream:  js,
		Logger:     logger.With(slog.String("component", "ingest")),
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	ingCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	ingDone := make(chan error, 1)
	go func() { ingDone <- ing.Run(ingCtx) }()
	push("ingest", func(ctx context.Context) error {
		stopIngest()
		select {
		case err := <-ingDone:
			return err
		case <-ctx.Done():
			return fmt.Errorf("ingest did not finish its batch: %w", ctx.Err())
		}
	})

	ready := func(ctx context.Context) error {
		if err := st.Ping(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if !nc.IsConnected() {
			return ErrNATSDisconnected
		}
		return ing.Ready()
	}
	distributor, stopPolicy, err := startPolicy(ctx, cfg, js, logger)
	if err != nil {
		return err
	}
	push("policy", stopPolicy)
	appr, slackCB, stopApprovals, err := startApprovals(ctx, cfg, nc, js, st, reg, logger)
	if err != nil {
		return err
	}
	push("approvals", stopApprovals)

	handler := api.New(api.Options{
		Approvals:      appr,
		SlackCallback:  slackCB,
		Store:          st,
		Logger:         logger.With(slog.String("component", "api")),
		Registry:       reg,
		Ready:          ready,
		NATSURL:        natsURL,
		LocalMode:      cfg.LocalMode(),
		Version:        cfg.Version,
		Verifier:       verifierOrNil(verifier),
		WorkloadTokens: na.local,
		SessionPolicy:  distributor,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	// Cancelled when the stop begins, so long replays and streams end.
	httpCtx, cancelHTTP := context.WithCancel(context.WithoutCancel(ctx))
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return httpCtx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()
	push("http", func(ctx context.Context) error {
		cancelHTTP()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
			return err
		}
		return nil
	})

	addrs := Addresses{HTTP: "http://" + ln.Addr().String(), NATS: natsURL}
	if err := writeAddresses(addrFile, addrs); err != nil {
		return err
	}
	logger.Info("chaperone-server running",
		slog.String("http", addrs.HTTP), slog.String("nats", addrs.NATS),
		slog.Bool("local_mode", cfg.LocalMode()), slog.String("addresses_file", addrFile))

	select {
	case <-ctx.Done():
		logger.Info("chaperone-server stopping", slog.Any("cause", context.Cause(ctx)))
		return nil
	case err := <-httpDone:
		return fmt.Errorf("http server: %w", err)
	case err := <-ingDone:
		// Run only returns early on a bug; treat it as fatal.
		ingDone <- err
		return fmt.Errorf("ingest stopped: %w", err)
	}
}

type stopFunc struct {
	name string
	fn   func(context.Context) error
}
