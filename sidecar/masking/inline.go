package masking

import (
	"mime"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/mask"
)

// Defaults of Inline.
const (
	// DefaultHold is how many bytes of a streamed text are held back, so
	// that a secret split across chunks or events is seen whole before any
	// of it is sent. Secrets longer than that (PEM keys, long JWTs) are
	// caught when they arrive in fewer, larger pieces.
	DefaultHold = 256
	// DefaultMaxWhole is the largest non-streamed body masked as a whole
	// (structure-aware: JSON members named like secrets); larger bodies
	// are masked as a text stream.
	DefaultMaxWhole = 8 << 20
	// maxEvent bounds one server-sent event held while it is incomplete.
	maxEvent = 1 << 20
	// context is how much already-sent text is kept in front of held text,
	// so that rules whose keyword precedes the secret (password=…) still
	// match when the keyword went out in an earlier piece.
	contextLen = 128
)

// Inline masks response bodies on their way to the agent, when policy
// says responses are masked too: a completion that carries a key is
// delivered with the key's token instead. It is safe for concurrent use;
// each Body is one response's.
type Inline struct {
	m        *mask.Masker
	hold     int
	maxWhole int
}

// NewInline returns an Inline that masks with m.
func NewInline(m *mask.Masker) *Inline {
	return &Inline{m: m, hold: DefaultHold, maxWhole: DefaultMaxWhole}
}

// Body returns the masker of one response body of content type ct, or nil
// when the type is not text (images, archives, protobuf, gRPC): those are
// relayed unchanged. stream says the body is a stream whose bytes must
// not wait for its end (server-sent events always are).
func (in *Inline) Body(ct string) *Body {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	b := &Body{in: in}
	switch {
	case mt == "text/event-stream":
		b.sse = newEventStream(in)
	case strings.Contains(mt, "json"):
		b.kind = kindJSON
	case mt == "application/x-www-form-urlencoded":
		b.kind = kindForm
	case mt == "" || strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+xml") || mt == "application/xml" ||
		mt == "application/yaml" || mt == "application/x-yaml" || mt == "application/javascript":
		b.kind = kindText
	default:
		return nil
	}
	return b
}

const (
	kindText = iota
	kindJSON
	kindForm
)

// Body masks one response body. Write it the body's bytes as they come
// and send what it returns; Close returns the rest. A Body is not safe
// for concurrent use.
type Body struct {
	in   *Inline
	kind int
	sse  *eventStream
	// whole gathers a non-streamed body until its end or maxWhole;
	// past that it is masked as a text stream.
	whole     []byte
	streaming bool
	text      textStream
	// Found counts the secrets masked so far.
	Found int
}

// Stream says the body is masked as it comes rather than at its end:
// server-sent events, and bodies past the whole-body bound.
func (b *Body) Stream() bool { return b.sse != nil || b.streaming }

// Write takes the next bytes of the body and returns the masked bytes
// that may be sent now; some may be held back until more come.
func (b *Body) Write(p []byte) []byte {
	switch {
	case b.sse != nil:
		out := b.sse.write(p)
		b.Found = b.sse.found
		return out
	case b.streaming:
		out := b.text.write(b.in, p)
		b.Found = b.text.found
		return out
	}
	if len(b.whole)+len(p) <= b.in.maxWhole {
		b.whole = append(b.whole, p...)
		return nil
	}
	b.streaming = true
	out := b.text.write(b.in, append(b.whole, p...))
	b.whole = nil
	b.Found = b.text.found
	return out
}

// Close returns the rest of the masked body.
func (b *Body) Close() []byte {
	switch {
	case b.sse != nil:
		out := b.sse.close()
		b.Found = b.sse.found
		return out
	case b.streaming:
		out := b.text.close(b.in)
		b.Found = b.text.found
		return out
	}
	var out []byte
	var fs []mask.Finding
	switch b.kind {
	case kindJSON:
		out, fs = b.in.m.MaskJSON(b.whole)
	case kindForm:
		s, f := b.in.m.MaskForm(string(b.whole))
		out, fs = []byte(s), f
	default:
		out, fs = b.in.m.MaskBytes(b.whole)
	}
	b.Found += len(fs)
	b.whole = nil
	return out
}

// textStream masks a text as it streams: it holds back the last bytes
// (and any secret that reaches into them) until more come.
type textStream struct {
	ctx     string // the end of what was sent, for rules with a keyword before
	pending []byte
	found   int
}

func (t *textStream) write(in *Inline, p []byte) []byte {
	t.pending = append(t.pending, p...)
	return t.release(in, len(t.pending)-in.hold)
}

func (t *textStream) close(in *Inline) []byte { return t.release(in, len(t.pending)) }

// release sends the pending bytes before cut, moved back so that no
// secret is split, masked.
func (t *textStream) release(in *Inline, cut int) []byte {
	if cut <= 0 {
		return nil
	}
	all := t.ctx + string(t.pending)
	off := len(t.ctx)
	spans := in.m.Find(all)
	for _, s := range spans {
		if s.End > off && s.Start-off < cut && s.End-off > cut && cut < len(t.pending) {
			cut = max(0, s.Start-off)
		}
	}
	if cut <= 0 {
		return nil
	}
	var out []byte
	last := 0
	for _, s := range spans {
		st, en := s.Start-off, s.End-off
		if en <= 0 || st >= cut {
			continue
		}
		st = max(st, 0)
		out = append(out, t.pending[last:st]...)
		out = append(out, s.Token...)
		last = en
		t.found++
	}
	out = append(out, t.pending[last:cut]...)
	sent := string(t.pending[:cut])
	t.ctx = lastBytes(t.ctx+sent, contextLen)
	t.pending = append(t.pending[:0], t.pending[cut:]...)
	return out
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
