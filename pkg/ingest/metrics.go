package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Ingester's Prometheus collectors.
type metrics struct {
	events      prometheus.Counter
	duplicates  prometheus.Counter
	blobs       prometheus.Counter
	batches     prometheus.Counter
	storeErrors prometheus.Counter
	deadLetters *prometheus.CounterVec
	batchTime   prometheus.Histogram
	batchSize   prometheus.Histogram
	pending     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "chaperone", "ingest"
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Events stored by ingest.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "duplicates_total",
			Help: "Events received again after they were stored, and skipped.",
		}),
		blobs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "blobs_total",
			Help: "Blob messages written to the store.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "batches_total",
			Help: "Batches committed to the store and acknowledged.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "store_errors_total",
			Help: "Batch writes the store refused; the batch is retried.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Messages moved to the dead-letter stream, by reason.",
		}, []string{"reason"}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_duration_seconds",
			Help:    "Time from a batch's first message to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_messages",
			Help:    "Messages per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "pending_messages",
			Help: "Messages in the stream not yet delivered to ingest, as of the last batch.",
		}),
	}
	for _, r := range allReasons {
		m.deadLetters.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.events, m.duplicates, m.blobs, m.batches, m.storeErrors,
		m.deadLetters, m.batchTime, m.batchSize, m.pending,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	return m, nil
}
