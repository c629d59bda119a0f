package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the proxy's Prometheus series.
type metrics struct {
	conns     *prometheus.CounterVec
	active    prometheus.Gauge
	refused   *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	requests  *prometheus.CounterVec
	recordErr prometheus.Counter
	tls       *prometheus.CounterVec
	streams   *prometheus.CounterVec
	loops     prometheus.Counter
	upstreams *prometheus.CounterVec
	idle      prometheus.Gauge
}

// Values of the upstreams counter's outcome label.
const (
	upstreamDialed = "dialed"
	upstreamReused = "reused"
)

// Refusal reasons, the values of the refused counter's reason label.
const (
	reasonOrigDst   = "origdst"
	reasonLoop      = "loop"
	reasonRecording = "recording"
	reasonUpstream  = "upstream"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_connections_total",
			Help: "Connections relayed, by recognised protocol.",
		}, []string{"protocol"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chaperone_sidecar_connections_active",
			Help: "Connections being handled now.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_connections_refused_total",
			Help: "Connections refused, by reason (origdst, loop, recording, upstream, tls).",
		}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_bytes_total",
			Help: "Bytes relayed, by direction (up: client to upstream, down: upstream to client).",
		}, []string{"direction"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_http_requests_total",
			Help: "HTTP exchanges recorded, by response status class (1xx..5xx, or error).",
		}, []string{"class"}),
		recordErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chaperone_sidecar_recording_errors_total",
			Help: "Events or blobs the recorder did not take.",
		}),
		tls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_tls_connections_total",
			Help: "TLS connections, by mode (intercepted, passthrough, refused).",
		}, []string{"mode"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_streams_total",
			Help: "Exec, attach and port-forward connections decoded, by transport (websocket, spdy).",
		}, []string{"transport"}),
		loops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chaperone_sidecar_looped_connections_total",
			Help: "Upstream connections of the sidecar's that conntrack redirected back to it (relayed raw, recorded once).",
		}),
		upstreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_sidecar_upstream_connections_total",
			Help: "Upstream connections taken for client connections, by outcome (dialed: a new one; reused: one an earlier client left idle).",
		}, []string{"outcome"}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chaperone_sidecar_upstream_idle_connections",
			Help: "Upstream connections kept idle for the next client connection to their destination.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.conns, m.active, m.refused, m.bytes, m.requests, m.recordErr, m.tls, m.streams, m.loops, m.upstreams, m.idle)
	}
	return m
}

// statusClass names the class of an HTTP status for the requests counter.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "error"
	}
	return string(rune('0'+code/100)) + "xx"
}
