package approvals

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the approvals' Prometheus collectors.
type metrics struct {
	requests  prometheus.Counter
	decisions *prometheus.CounterVec
	refusals  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "approvals", Name: "requests_total",
			Help: "Approval requests stored (a re-sent request counts once).",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "approvals", Name: "decisions_total",
			Help: "Approvals decided, by decision (approved, denied, expired).",
		}, []string{"decision"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "approvals", Name: "callback_refusals_total",
			Help: "Slack callbacks refused, by HTTP status.",
		}, []string{"code"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.decisions = register(reg, m.decisions)
		m.refusals = register(reg, m.refusals)
	}
	return m
}

// register adds c to reg, or returns the collector already registered
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
