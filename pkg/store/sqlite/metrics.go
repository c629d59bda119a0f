package sqlite

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	stored     prometheus.Counter
	duplicates prometheus.Counter
	failed     prometheus.Counter
	batch      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	appended := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "chaperone", Subsystem: "store", Name: "appended_events_total",
		Help: "Events passed to Append, by result: stored or duplicate (already stored, skipped).",
	}, []string{"result"})
	m := &metrics{
		stored:     appended.WithLabelValues("stored"),
		duplicates: appended.WithLabelValues("duplicate"),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "store", Name: "append_failures_total",
			Help: "Append batches that were rolled back.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "chaperone", Subsystem: "store", Name: "append_batch_seconds",
			Help:    "Time to validate, link and commit one Append batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{appended, m.failed, m.batch} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register store metrics: %w", err)
	}
	return m, nil
}
