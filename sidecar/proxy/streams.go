package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
	"github.com/chaperone-dev/chaperone/sidecar/streams"
)

// streamSubresources are the pod subresources whose upgraded connections
// carry terminal or port-forward streams.
var streamSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true}

// Upgraded decodes the streams of a Kubernetes exec, attach or
// port-forward connection once the API server switched it to WebSocket or
// SPDY/3.1. The request's URL alone decides, as for Secret masking: a
// plaintext `kubectl proxy` or an API server the sidecar was not told about
// is recorded too. Other upgrades are relayed unwatched.
func (s *connSink) Upgraded(ctx context.Context, u *http1.Upgrade) http1.Tap {
	r, ok := k8s.Decode(u.Method, u.Target)
	if !ok || r.Resource != "pods" || r.APIGroup != "" || !streamSubresources[r.Subresource] {
		return nil
	}
	name := StreamName(r.Subresource, s.id, u.Stream)
	emit := func(d *event.StreamData) { s.streamData(ctx, d) }
	proto := strings.ToLower(strings.TrimSpace(u.Response.Get("Upgrade")))
	switch {
	case proto == "websocket":
		s.p.m.streams.WithLabelValues("websocket").Inc()
		return streams.NewWebSocket(u.Response.Get("Sec-WebSocket-Protocol"), emit, streams.WithStream(name))
	case strings.HasPrefix(proto, "spdy/"):
		s.p.m.streams.WithLabelValues("spdy").Inc()
		return streams.NewSPDY(emit, streams.WithStream(name))
	}
	s.p.log.Debug("upgrade not decoded", keyConn, s.id, keyProto, proto, "target", u.Target)
	return nil
}

// StreamName is the event.StreamData.Stream of the exec, attach or
// port-forward stream opened by request number stream of connection conn:
// "exec-<conn>-<stream>". It is unique in a session and safe in a URL path
// segment (the server's .../streams/{stream}.cast route).
func StreamName(subresource, conn string, stream uint64) string {
	return fmt.Sprintf("%s-%s-%d", subresource, conn, stream)
}

// streamData records one decoded piece of a stream. Data larger than the
// inline limit goes to a blob first, like HTTP bodies.
func (s *connSink) streamData(ctx context.Context, d *event.StreamData) {
	if b := d.Data; b != nil && b.Ref == "" {
		inline := s.p.opts.InlineLimit
		if inline <= 0 {
			inline = http1.DefaultInlineLimit
		}
		raw := b.B64
		if raw == nil {
			raw = []byte(b.Text)
		}
		if len(raw) > inline {
			nb, err := http1.RecordBody(ctx, s.Blob, raw, b.Size, inline)
			if err != nil {
				return // recordFailed has been called by Blob
			}
			d.Data = nb
		}
	}
	_ = s.StreamData(ctx, time.Now(), d)
}
