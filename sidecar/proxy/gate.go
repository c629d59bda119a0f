package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
	"github.com/chaperone-dev/chaperone/sidecar/llm"
)

// reasonPolicy is the refused counter's label of connections a policy
// refused.
const reasonPolicy = "policy"

// sinkKey carries a connection's sink in the ctx its recorders get, so
// that the request hook (one per recorder) finds its connection.
type sinkKey struct{}

// gated is what the gate decided about one request, kept until its
// records are made.
type gated struct {
	// id is the id of the request's http.request event, cited by its
	// policy.decision event.
	id      string
	verdict string
	record  v1alpha1.RecordLevel
	as      string
}

// failOpen says whether connections are relayed while recording cannot be
// guaranteed: the policy in force decides (onRecorderFailure), else the
// FailOpen option.
func (p *Proxy) failOpen() bool {
	if g := p.opts.Gate; g != nil {
		if open, ok := g.FailOpen(); ok {
			return open
		}
	}
	return p.opts.FailOpen
}

// requestHook is the HTTP/1 and HTTP/2 recorders' hook: it gates each
// request of a connection through its sink.
func (p *Proxy) requestHook(ctx context.Context, stream uint64, req *http.Request) (http1.Verdict, error) {
	s, ok := ctx.Value(sinkKey{}).(*connSink)
	if !ok {
		return http1.Verdict{}, nil
	}
	if g := p.opts.Gate; !g.Active() && !g.Brokering() {
		// Nothing can decide or change the request: allowed, recorded in
		// full, no verdict, the same outcome as gate's without its cost.
		return http1.Verdict{}, nil
	}
	return s.gate(ctx, stream, req), nil
}

// authorizationHeader is Verdict.Changed of a request whose credential
// was swapped.
var authorizationHeader = []string{"Authorization"}

// gate decides one request: records the decision, holds the request for
// approval if a rule says so, swaps the credential placeholder, and
// returns the verdict for the recorder.
func (s *connSink) gate(ctx context.Context, stream uint64, req *http.Request) http1.Verdict {
	g := s.p.opts.Gate
	host := req.Host
	in := &gate.Input{Kube: s.toKube(host), Headers: credentialHeaders(req.Header)}
	r := &in.Request
	r.Protocol = "http1"
	if req.ProtoMajor == 2 {
		r.Protocol = "http2"
	}
	s.destination(r, host)
	target := req.RequestURI
	if target == "" {
		target = req.URL.RequestURI()
	}
	r.HTTP = policy.HTTP{
		Method:  req.Method,
		URL:     target,
		Path:    req.URL.Path,
		Host:    host,
		Headers: policy.HeadersFrom(req.Header),
		Query:   policy.QueryFrom(req.URL.RawQuery),
	}
	if req.URL.Scheme != "" {
		r.HTTP.URL = req.URL.String()
	}
	// The provider is known from the request line; the model is in the
	// body, which is not read before the decision.
	if d, ok := llm.Detect(llm.Request{Method: req.Method, Host: host, URL: req.URL, Header: req.Header}); ok {
		r.LLM.Provider = d.Provider()
	}
	if in.Kube {
		if kr, ok := k8s.Decode(req.Method, target); ok {
			r.K8s = policy.K8s{Verb: kr.Verb, APIGroup: kr.APIGroup, APIVersion: kr.APIVersion,
				Resource: kr.Resource, Subresource: kr.Subresource, Namespace: kr.Namespace, Name: kr.Name}
		}
	}
	in.Summary = summary(r)

	out := g.Decide(in)
	info := gated{id: event.NewID(time.Now()), verdict: out.Verdict, record: out.Record, as: out.As}
	if out.Decided {
		s.decision(ctx, &out, info.id)
	}
	if out.Held {
		out = g.Await(ctx, in, out)
		info.verdict = out.Verdict
	}
	if !g.Active() && out.Refusal == nil {
		info.verdict = "" // no policy decided: the records carry no verdict
	}
	s.mu.Lock()
	if s.gates == nil {
		s.gates = map[uint64]gated{}
	}
	if len(s.gates) < maxPendingK8s {
		s.gates[stream] = info
	}
	s.mu.Unlock()

	v := http1.Verdict{MetadataOnly: out.Record == v1alpha1.RecordMetadataOnly || out.Record == v1alpha1.RecordNone}
	if f := out.Refusal; f != nil {
		v.Refusal = &http1.Refusal{Status: f.Status, ContentType: f.ContentType, Body: f.Body}
		s.p.log.Info("request refused", keyConn, s.id, keyReason, f.Message)
		return v
	}
	if out.Authorization != "" {
		req.Header.Set("Authorization", out.Authorization)
		v.Changed = authorizationHeader
	}
	return v
}

// destination fills a policy request's destination.
func (s *connSink) destination(r *policy.Request, host string) {
	r.Destination = policy.Destination{Host: s.dest.Host, IP: s.dst.Addr().Unmap().String(), Port: int(s.dst.Port())}
	if r.Destination.Host == "" {
		r.Destination.Host = hostOnly(host)
	}
}

// decision records a policy.decision event about the request whose
// record will have id subject.
func (s *connSink) decision(ctx context.Context, out *gate.Outcome, subject string) {
	d := &out.Decision
	pd := &event.PolicyDecision{Policy: d.Policy, Rule: d.Rule, Action: string(d.Action), Reason: d.Reason, Subject: subject}
	if d.Err != nil {
		pd.Reason = strings.TrimSpace(pd.Reason + " (rule error: " + d.Err.Error() + ")")
	}
	_ = s.emit(ctx, s.p.newEvent(event.KindPolicyDecision, time.Now(), s.id, &s.dest, func(e *event.Event) {
		e.PolicyDecision = pd
		e.Verdict = out.Verdict
	}))
}

// gatedFor returns what the gate decided about stream, if it did; done
// forgets it.
func (s *connSink) gatedFor(stream uint64, done bool) (gated, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.gates[stream]
	if done {
		delete(s.gates, stream)
	}
	return g, ok
}

// gateConn decides a connection that carries no HTTP (raw TCP, TLS passed
// through, TLS of another protocol): a policy can match its destination.
// It reports whether the connection goes on; when not, it was refused
// (closed) and recorded.
func (p *Proxy) gateConn(ctx context.Context, id string, lc *liveConn, dst netip.AddrPort, dest *event.Destination, start time.Time) bool {
	g := p.opts.Gate
	if g == nil || !g.Active() {
		return true
	}
	in := &gate.Input{Request: policy.Request{
		Protocol:    dest.Protocol,
		Destination: policy.Destination{Host: dest.Host, IP: dst.Addr().Unmap().String(), Port: int(dst.Port())},
	}}
	in.Summary = summary(&in.Request)
	out := g.Decide(in)
	s := p.newSink(ctx, id, lc, dst, dest)
	s.decision(ctx, &out, "")
	if out.Held {
		out = g.Await(ctx, in, out)
	}
	if out.Refusal == nil {
		return true
	}
	p.refuse(ctx, id, lc, dest, reasonPolicy, out.Refusal.Message, start)
	return false
}

// credentialHeaders joins each header's values, lowercased names: the
// placeholder is looked for in all of them.
func credentialHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, vs := range h {
		m[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	return m
}

// summary is one line about a request for approvers.
func summary(r *policy.Request) string {
	if k := r.K8s; k.Verb != "" {
		var b strings.Builder
		b.WriteString(k.Verb)
		if k.Resource != "" {
			b.WriteString(" " + k.Resource)
			if k.Subresource != "" {
				b.WriteString("/" + k.Subresource)
			}
		}
		switch {
		case k.Namespace != "" && k.Name != "":
			b.WriteString(" " + k.Namespace + "/" + k.Name)
		case k.Name != "":
			b.WriteString(" " + k.Name)
		case k.Namespace != "":
			b.WriteString(" in " + k.Namespace)
		}
		return b.String()
	}
	if r.HTTP.Method != "" {
		host := r.HTTP.Host
		if host == "" {
			host = r.Destination.Host
		}
		return r.HTTP.Method + " " + host + r.HTTP.Path
	}
	host := r.Destination.Host
	if host == "" {
		host = r.Destination.IP
	}
	return r.Protocol + " connection to " + host + ":" + strconv.Itoa(r.Destination.Port)
}

func hostOnly(hostport string) string {
	if h, _, err := splitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func splitHostPort(s string) (string, string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil {
		return ap.Addr().String(), strconv.Itoa(int(ap.Port())), nil
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[:i], ":") {
		return s[:i], s[i+1:], nil
	}
	return s, "", nil
}
