package publish

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

type metrics struct {
	publishedEvents prometheus.Counter
	publishedBlobs  prometheus.Counter
	acked           prometheus.Counter
	resent          prometheus.Counter
	dropped         prometheus.Counter
	refusedFull     prometheus.Counter
	refusedError    prometheus.Counter
	messageEvents   prometheus.Histogram
	inFlight        prometheus.Gauge
	connected       prometheus.Gauge
}

// newMetrics registers the publisher's metrics with reg; a nil reg keeps
// them unregistered.
func newMetrics(reg prometheus.Registerer, sp *spool.Spool) *metrics {
	f := promauto.With(reg)
	const ns, sub = "chaperone", "sidecar_publish"
	published := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "published_total",
		Help: "Messages accepted into the spool, by type (event, blob).",
	}, []string{"type"})
	refused := f.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "refused_total",
		Help: "Messages that could not be spooled, by reason (full, error).",
	}, []string{"reason"})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "spool_bytes",
		Help: "Bytes on disk in the spool.",
	}, func() float64 { b, _ := sp.Usage(); return float64(b) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "spool_records",
		Help: "Records in the spool not yet acknowledged by JetStream.",
	}, func() float64 { _, r := sp.Usage(); return float64(r) })
	return &metrics{
		publishedEvents: published.WithLabelValues("event"),
		publishedBlobs:  published.WithLabelValues("blob"),
		acked: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "acked_total",
			Help: "Spooled records (events and blobs) acknowledged by JetStream.",
		}),
		resent: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "resent_total",
			Help: "Spooled records sent again after a failure or restart.",
		}),
		messageEvents: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "message_events",
			Help:    "Events per message sent to JetStream (several when the spool held a backlog).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Spooled messages NATS can never take (over its max payload), dropped.",
		}),
		refusedFull:  refused.WithLabelValues("full"),
		refusedError: refused.WithLabelValues("error"),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "in_flight",
			Help: "Messages (an event, a batch of events or a blob) sent to JetStream and awaiting acknowledgement.",
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "nats_connected",
			Help: "1 while connected to NATS.",
		}),
	}
}
