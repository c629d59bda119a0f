package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
)

// connSink turns one connection's HTTP records into events: it is the
// http1.Sink and http2.Sink of the connection, and its http1.BodyFilter.
type connSink struct {
	p    *Proxy
	ctx  context.Context
	id   string
	lc   *liveConn
	dst  netip.AddrPort
	dest event.Destination
	// kube is set when the connection goes to the API server by its
	// address or TLS server name; plaintext requests may still name it by
	// their Host.
	kube bool

	mu sync.Mutex
	// k8s holds the k8s.request of each request whose response has not
	// been recorded yet, by stream.
	k8s map[uint64]pendingK8s
	// gates holds what the gate decided about each request whose records
	// are not all made yet, by stream.
	gates map[uint64]gated
}

type pendingK8s struct {
	at      time.Time
	req     *event.K8sRequest
	verdict string
}

// maxPendingK8s bounds the requests waiting for a status on one
// connection; HTTP/2 bounds its concurrent streams well below.
const maxPendingK8s = 1024

func (p *Proxy) newSink(ctx context.Context, id string, lc *liveConn, dst netip.AddrPort, dest *event.Destination) *connSink {
	s := &connSink{
		p:    p,
		id:   id,
		lc:   lc,
		dst:  dst,
		dest: *dest,
		kube: p.opts.KubeAPI.Matches(dst, dest.Host),
	}
	// The recorders get s.ctx: the request hook finds the sink in it.
	s.ctx = context.WithValue(ctx, sinkKey{}, s)
	return s
}

// toKube reports whether a request for host goes to the API server.
func (s *connSink) toKube(host string) bool {
	return s.kube || (host != "" && s.p.opts.KubeAPI.Matches(s.dst, host))
}

func (s *connSink) Blob(ctx context.Context, ref string, data []byte) error {
	if err := s.p.opts.Recorder.PublishBlob(ctx, ref, data); err != nil {
		s.p.recordFailed(s.id, s.lc, fmt.Errorf("publish blob %s: %w", ref, err))
		return err
	}
	return nil
}

// FilterBody masks Secret values: every body of a request for Secrets
// (decided by its URL alone, on any connection, so that a plaintext
// `kubectl proxy` or an API server the sidecar was not told about is
// covered too), and every object of kind Secret elsewhere.
func (s *connSink) FilterBody(method, target string, _ bool, body []byte) []byte {
	r, ok := k8s.Decode(method, target)
	out, _ := k8s.MaskSecrets(body, ok && r.Secret())
	return out
}

func (s *connSink) Request(ctx context.Context, t time.Time, r *event.HTTPRequest) error {
	d := s.dest
	if r.Host != "" {
		d.Host = r.Host
	}
	gi, gatedReq := s.gatedFor(r.Stream, false)
	if gatedReq && gi.record == v1alpha1.RecordNone {
		return nil
	}
	if s.toKube(r.Host) {
		if kr, ok := k8s.Decode(r.Method, r.URL); ok {
			ke := kr.Event(r.Stream)
			ke.As = gi.as
			s.mu.Lock()
			if s.k8s == nil {
				s.k8s = map[uint64]pendingK8s{}
			}
			if len(s.k8s) < maxPendingK8s {
				s.k8s[r.Stream] = pendingK8s{at: t, req: ke, verdict: gi.verdict}
			}
			s.mu.Unlock()
		}
	}
	return s.emit(ctx, s.p.newEvent(event.KindHTTPRequest, t, s.id, &d, func(e *event.Event) {
		e.HTTPRequest = r
		if gatedReq {
			e.ID, e.Verdict = gi.id, gi.verdict
		}
	}))
}

func (s *connSink) Response(ctx context.Context, t time.Time, r *event.HTTPResponse) error {
	if r.Streamed != event.StreamedEnd {
		s.p.m.requests.WithLabelValues(statusClass(r.Status)).Inc()
	}
	gi, gatedReq := s.gatedFor(r.Stream, r.Streamed != event.StreamedHeaders)
	if gatedReq && gi.record == v1alpha1.RecordNone {
		return nil
	}
	if err := s.emit(ctx, s.p.newEvent(event.KindHTTPResponse, t, s.id, &s.dest, func(e *event.Event) {
		e.HTTPResponse = r
		e.Verdict = gi.verdict
	})); err != nil {
		return err
	}
	s.mu.Lock()
	pk, ok := s.k8s[r.Stream]
	delete(s.k8s, r.Stream)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	pk.req.Status = r.Status
	return s.emit(ctx, s.p.newEvent(event.KindK8sRequest, pk.at, s.id, &s.dest, func(e *event.Event) {
		e.K8sRequest = pk.req
		e.Verdict = pk.verdict
	}))
}

func (s *connSink) StreamData(ctx context.Context, t time.Time, d *event.StreamData) error {
	if n, err := strconv.ParseUint(d.Stream, 10, 64); err == nil {
		if gi, ok := s.gatedFor(n, false); ok && gi.record == v1alpha1.RecordNone {
			return nil
		}
	}
	return s.emit(ctx, s.p.newEvent(event.KindStreamData, t, s.id, &s.dest, func(e *event.Event) { e.StreamData = d }))
}

func (s *connSink) emit(ctx context.Context, e *event.Event) error {
	if err := s.p.opts.Recorder.Publish(ctx, e); err != nil {
		s.p.recordFailed(s.id, s.lc, fmt.Errorf("publish %s: %w", e.Kind, err))
		return err
	}
	return nil
}
