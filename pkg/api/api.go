package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

// Options configures the API handler.
type Options struct {
	// Store serves sessions, events and blobs. Required.
	Store store.Store
	// Logger receives one line per request and every internal error.
	// Nil discards.
	Logger *slog.Logger
	// Registry is served on /metrics and receives the API's own metrics.
	// Nil uses a fresh registry.
	Registry *prometheus.Registry
	// Ready reports whether the server can do its job; /readyz answers 503
	// with its error. Nil means always ready.
	Ready func(ctx context.Context) error
	// NATSURL is the NATS address producers publish to, shown by /api/v1/info.
	NATSURL string
	// LocalMode is set when the server runs without authentication on
	// loopback, shown by /api/v1/info.
	LocalMode bool
	// Version is the server's version, shown by /api/v1/info.
	Version string
	// Verifier authenticates bearer tokens on every route but health,
	// metrics, /openapi.json and signed callbacks (see auth.go). Nil makes
	// every caller the local administrator: local mode only.
	Verifier TokenVerifier
	// Approvals serves /api/v1/approvals; nil answers 503 there.
	Approvals ApprovalService
	// SlackCallback serves POST /callbacks/slack (it checks the signature
	// itself); nil answers 404 there.
	SlackCallback http.Handler
	// WorkloadTokens serves POST /api/v1/workload-tokens (admins only; the
	// local administrator in local mode); nil answers 503 there.
	WorkloadTokens WorkloadTokenMinter
	// SessionPolicy serves PUT and DELETE /api/v1/session-policies/{session}
	// (admins only; the local administrator in local mode); nil answers 503.
	SessionPolicy SessionPolicyPublisher
}

// RequestIDHeader carries the request id: taken from the request when it is
// a sane token, generated otherwise, and always set on the response.
const RequestIDHeader = "X-Request-Id"

// readyTimeout bounds one call of Options.Ready.
const readyTimeout = 5 * time.Second

// server holds the handler's dependencies. Its clock and sleep are fields so
// tests can drive time without waiting.
type server struct {
	store     store.Store
	log       *slog.Logger
	registry  *prometheus.Registry
	ready     func(ctx context.Context) error
	natsURL   string
	localMode bool
	version   string
	verifier  TokenVerifier
	approvals ApprovalService
	slack     http.Handler
	tokens    WorkloadTokenMinter
	policies  SessionPolicyPublisher

	accessCounter *prometheus.CounterVec
	metrics       *metrics
	mux           *http.ServeMux
	now           func() time.Time
	sleep         func(ctx context.Context, d time.Duration) error
}

// route is one registered endpoint. The list in routes is the single source
// of truth for the mux and for the OpenAPI coverage test.
type route struct {
	method  string
	path    string
	handler http.HandlerFunc
}

// New returns the API's HTTP handler.
func New(o Options) http.Handler {
	return newServer(o)
}

func newServer(o Options) *server {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &server{
		store:     o.Store,
		log:       log,
		registry:  reg,
		ready:     o.Ready,
		natsURL:   o.NATSURL,
		localMode: o.LocalMode,
		version:   o.Version,
		verifier:  o.Verifier,
		approvals: o.Approvals,
		slack:     o.SlackCallback,
		tokens:    o.WorkloadTokens,
		policies:  o.SessionPolicy,
		metrics:   newMetrics(reg),
		mux:       http.NewServeMux(),
		now:       time.Now,
		sleep:     sleepCtx,
	}
	s.accessCounter = newAccessCounter(reg)
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.method+" "+rt.path, s.scoped(rt.path, rt.handler))
	}
	return s
}

func (s *server) routes() []route {
	metricsHandler := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError),
	})
	return []route{
		{http.MethodGet, "/healthz", s.healthz},
		{http.MethodGet, "/readyz", s.readyz},
		{http.MethodGet, "/metrics", metricsHandler.ServeHTTP},
		{http.MethodGet, "/openapi.json", s.openAPI},
		{http.MethodGet, "/api/v1/info", s.info},
		{http.MethodGet, "/api/v1/sessions", s.listSessions},
		{http.MethodGet, "/api/v1/sessions/{id}", s.getSession},
		{http.MethodGet, "/api/v1/sessions/{id}/events", s.sessionEvents},
		{http.MethodGet, "/api/v1/sessions/{id}/replay", s.replay},
		{http.MethodGet, "/api/v1/sessions/{id}/streams/{stream}", s.streamCast},
		{http.MethodGet, "/api/v1/sessions/{id}/verify", s.verify},
		{http.MethodGet, "/api/v1/blobs/{ref}", s.blob},
		{http.MethodGet, "/api/v1/approvals", s.listApprovals},
		{http.MethodPost, "/api/v1/approvals/{id}/approve", s.approve},
		{http.MethodPost, "/api/v1/approvals/{id}/deny", s.deny},
		{http.MethodPost, "/callbacks/slack", s.slackCallback},
		{http.MethodPost, "/api/v1/workload-tokens", s.workloadToken},
		{http.MethodPut, "/api/v1/session-policies/{session}", s.putSessionPolicy},
		{http.MethodDelete, "/api/v1/session-policies/{session}", s.deleteSessionPolicy},
	}
}

// ServeHTTP tags, routes, recovers, logs and counts one request.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	id := requestID(r.Header.Get(RequestIDHeader))
	w.Header().Set(RequestIDHeader, id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))

	h, pattern := s.mux.Handler(r)
	route := routeLabel(pattern)
	rec := &recorder{ResponseWriter: w}
	defer func() {
		s.observe(r, rec, route, s.now().Sub(start))
		s.audit(r, rec, route)
	}()
	defer s.recoverPanic(rec, r)

	if pattern == "" {
		s.unrouted(rec, r, h)
		return
	}
	var ok bool
	if r, ok = s.authorize(rec, r, pattern); !ok {
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// routeLabel turns a mux pattern into a bounded metric label.
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// unrouted answers requests no route matched. The mux's own 404 and 405
// handlers write plain text; run them into a capture and answer in JSON.
func (s *server) unrouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := &capture{header: http.Header{}}
	h.ServeHTTP(c, r)
	switch c.status {
	case http.StatusMethodNotAllowed:
		if allow := c.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path, "")
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, "")
	}
}

// capture is a ResponseWriter that keeps the status and headers and drops
// the body.
type capture struct {
	header http.Header
	status int
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return len(b), nil
}

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
