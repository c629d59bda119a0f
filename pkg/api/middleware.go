package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Log keys.
const (
	logKeyMethod    = "method"
	logKeyRoute     = "route"
	logKeyPath      = "path"
	logKeyStatus    = "status"
	logKeyDuration  = "duration"
	logKeyBytes     = "bytes"
	logKeyRequestID = "request_id"
	logKeyError     = "error"
	logKeyPanic     = "panic"
	logKeyStack     = "stack"
	logKeySession   = "session"
)

type requestIDKey struct{}

// requestID keeps a caller's id when it is a short token of safe
// characters (it ends up in logs), and makes a new one otherwise.
func requestID(given string) string {
	if given != "" && len(given) <= 128 {
		ok := true
		for _, c := range given {
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
				ok = false
				break
			}
		}
		if ok {
			return given
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestIDFrom returns the request id stored in ctx by ServeHTTP.
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// recorder remembers the status and size of a response. Unwrap lets
// http.ResponseController reach the real writer to flush.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush lets handlers that do not use http.ResponseController flush too.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// recoverPanic turns a handler panic into a logged 500. A panic with
// http.ErrAbortHandler is the deliberate way to cut a stream short and is
// passed on to net/http.
func (s *server) recoverPanic(w *recorder, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		panic(v)
	}
	s.log.ErrorContext(r.Context(), "api handler panicked",
		logKeyMethod, r.Method, logKeyPath, r.URL.Path,
		logKeyRequestID, requestIDFrom(r.Context()),
		logKeyPanic, fmt.Sprint(v), logKeyStack, string(debug.Stack()))
	if w.status != 0 {
		// The response has begun; the best we can do is cut it.
		panic(http.ErrAbortHandler)
	}
	writeError(w, http.StatusInternalServerError, "internal error (request "+requestIDFrom(r.Context())+")", "")
}

// observe logs the request and records it in the metrics.
func (s *server) observe(r *http.Request, w *recorder, route string, d time.Duration) {
	status := w.status
	if status == 0 {
		// Nothing written: net/http answers 200 with an empty body, unless
		// the handler was aborted, which the deferred panic reports.
		status = http.StatusOK
	}
	s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "http request",
		logKeyMethod, r.Method, logKeyRoute, route, logKeyPath, r.URL.Path,
		logKeyStatus, status, logKeyDuration, d, logKeyBytes, w.bytes,
		logKeyRequestID, requestIDFrom(r.Context()))
}

// metrics are the API's own Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chaperone",
			Subsystem: "api",
			Name:      "requests_total",
			Help:      "HTTP requests served by the API, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "chaperone",
			Subsystem: "api",
			Name:      "request_duration_seconds",
			Help:      "Time to serve an API request, by route; streams count until they end.",
			Buckets:   prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

// register adds c to reg, or returns the collector already registered under
// the same description, so two handlers can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("api: register metrics: %v", err))
	}
	return c
}
