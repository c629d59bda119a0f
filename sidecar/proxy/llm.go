package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/http1"
	"github.com/chaperone-dev/chaperone/sidecar/llm"
)

// LLMOptions configure the decoding of LLM API and MCP traffic into
// llm.prompt, llm.completion, mcp.tool_list and mcp.tool_call events.
// Known APIs are recognised by their paths (llm.Detect, llm.DetectMCP) on
// any host.
type LLMOptions struct {
	// Off turns the decoding off; the HTTP records stay.
	Off bool
	// Hosts maps a host name (no port) to the API shape (one of llm.APIs)
	// every POST to it is decoded as, whatever its path: gateways that
	// serve an LLM API under paths of their own.
	Hosts map[string]string
}

// ParseLLMHosts parses HOST=API pairs (--llm-host) into LLMOptions.Hosts.
func ParseLLMHosts(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		host, api, ok := strings.Cut(p, "=")
		host = llm.Hostname(strings.TrimSpace(host))
		api = strings.TrimSpace(api)
		known := false
		for _, a := range llm.APIs {
			known = known || a == api
		}
		if !ok || host == "" || !known {
			return nil, fmt.Errorf("llm host %q: want HOST=API with API one of %s", p, strings.Join(llm.APIs, ", "))
		}
		out[host] = api
	}
	return out, nil
}

// maxGzipped bounds the compressed bytes of an encoded LLM response kept
// to be decoded at its end.
const maxGzipped = 4 << 20

// Observe implements http1.Observer (for HTTP/2 too): requests to LLM APIs
// and MCP servers are decoded beside their HTTP records.
func (s *connSink) Observe(stream uint64, method, target, host string, h http.Header) http1.Exchange {
	opts := &s.p.opts.LLM
	if opts.Off || method != http.MethodPost {
		return nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil
	}
	if host == "" {
		host = u.Host
	}
	if host == "" {
		host = s.dest.Host
	}
	r := llm.Request{Method: method, Host: host, URL: u, Header: h}
	x := &llmExchange{s: s, stream: stream, dest: s.dest}
	if host != "" {
		x.dest.Host = host
	}
	if api, ok := opts.Hosts[llm.Hostname(host)]; ok {
		x.dec, _ = llm.DetectAs(api, r)
	} else if d, ok := llm.Detect(r); ok {
		x.dec = d
	} else if m, ok := llm.DetectMCP(r); ok {
		x.mcp = m
	}
	if x.dec == nil && x.mcp == nil {
		return nil
	}
	return x
}

// llmExchange decodes one LLM API or MCP exchange and records what it
// found. Its methods come from the relay's two directions, so mu guards it.
type llmExchange struct {
	s      *connSink
	stream uint64
	dest   event.Destination

	mu    sync.Mutex
	dec   llm.Decoder // an LLM API, or
	mcp   *llm.MCP    // an MCP exchange
	start time.Time
	// off is set when the request turned out not to be what was detected.
	off bool
	// gz holds a gzip-encoded response, decoded at End.
	gz     *bytes.Buffer
	gzOver bool
	// requested is set once the request body was decoded; response bytes
	// that come before (the request's record waits for the previous
	// response's) wait in early, so that MCP answers find their calls.
	requested bool
	early     []byte
}

// maxEarly bounds the response bytes held until the request is decoded.
const maxEarly = 1 << 20

func (x *llmExchange) logDecode(what string, err error) {
	x.s.p.log.Debug("llm decode", keyConn, x.s.id, "stream", x.stream, "what", what, keyErr, err)
}

func (x *llmExchange) RequestBody(ctx context.Context, start time.Time, recorded []byte, size int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.start = start
	defer x.flushEarly()
	if int64(len(recorded)) < size {
		x.off = true
		x.logDecode("request", fmt.Errorf("body of %d bytes cut to %d by the body cap", size, len(recorded)))
		return
	}
	if x.mcp != nil {
		if _, err := x.mcp.Request(recorded); err != nil {
			x.off = true
			x.logDecode("mcp request", err)
		}
		return
	}
	p, err := x.dec.Request(recorded)
	if err != nil || p == nil {
		x.off = true
		x.logDecode("llm request", err)
		return
	}
	p.Stream = x.stream
	llm.FitPrompt(p, event.MaxSize/2)
	_ = x.s.emit(ctx, x.s.p.newEvent(event.KindLLMPrompt, start, x.s.id, &x.dest, func(e *event.Event) { e.LLMPrompt = p }))
}

func (x *llmExchange) ResponseHead(status int, h http.Header) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip", "x-gzip":
		x.gz = &bytes.Buffer{}
	default:
		x.off = true // another encoding (br, zstd) cannot be decoded here
		x.logDecode("response", fmt.Errorf("content encoding %q", h.Get("Content-Encoding")))
		return
	}
	ct := h.Get("Content-Type")
	if x.mcp != nil {
		x.mcp.Response(status, ct)
	} else {
		x.dec.Response(status, ct)
	}
}

func (x *llmExchange) ResponseBody(p []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.off {
		return
	}
	if x.gz != nil {
		if x.gz.Len()+len(p) > maxGzipped {
			x.gzOver = true
			return
		}
		x.gz.Write(p)
		return
	}
	x.chunk(p)
}

// flushEarly feeds the response bytes that came before the request was
// decoded. mu is held.
func (x *llmExchange) flushEarly() {
	x.requested = true
	if len(x.early) > 0 && !x.off {
		x.chunk(x.early)
	}
	x.early = nil
}

// chunk feeds response bytes to the decoder, or holds them until the
// request was decoded. mu is held.
func (x *llmExchange) chunk(p []byte) {
	if !x.requested && len(x.early)+len(p) <= maxEarly {
		x.early = append(x.early, p...)
		return
	}
	var err error
	if x.mcp != nil {
		err = x.mcp.ResponseChunk(p)
	} else {
		err = x.dec.ResponseChunk(p)
	}
	if err != nil {
		x.logDecode("response", err)
	}
}

func (x *llmExchange) End(ctx context.Context, end time.Time, errMsg string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.off {
		return
	}
	if x.gz != nil {
		x.gunzip()
	}
	x.off = true
	if !x.requested {
		x.requested = true
		if len(x.early) > 0 {
			x.chunk(x.early)
		}
	}
	if x.mcp != nil {
		x.endMCP(ctx, end)
		return
	}
	c, err := x.dec.Finish()
	if err != nil {
		x.logDecode("response", err)
	}
	if c == nil {
		return
	}
	c.Stream = x.stream
	if !x.start.IsZero() {
		c.Latency = end.Sub(x.start)
	}
	if errMsg != "" && c.FinishReason == "" {
		c.FinishReason = "error"
	}
	llm.FitCompletion(c, event.MaxSize/2)
	_ = x.s.emit(ctx, x.s.p.newEvent(event.KindLLMCompletion, end, x.s.id, &x.dest, func(e *event.Event) { e.LLMCompletion = c }))
}

// gunzip feeds the decoded gzip body to the decoder. mu is held.
func (x *llmExchange) gunzip() {
	if x.gzOver {
		x.logDecode("response", fmt.Errorf("gzip body over %d bytes", maxGzipped))
		return
	}
	zr, err := gzip.NewReader(x.gz)
	if err != nil {
		x.logDecode("response", err)
		return
	}
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, rerr := zr.Read(buf)
		if n > 0 {
			total += int64(n)
			if total > llm.MaxBody {
				x.logDecode("response", fmt.Errorf("%w: gunzipped", llm.ErrTooLarge))
				return
			}
			x.chunk(buf[:n])
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				x.logDecode("response", rerr)
			}
			return
		}
	}
}

// endMCP records the tool lists and calls of an MCP exchange. mu is held.
func (x *llmExchange) endMCP(ctx context.Context, end time.Time) {
	res, err := x.mcp.Finish()
	if err != nil {
		x.logDecode("mcp response", err)
	}
	if res == nil {
		return
	}
	for _, l := range res.ToolLists {
		l.Stream = x.stream
		_ = x.s.emit(ctx, x.s.p.newEvent(event.KindMCPToolList, end, x.s.id, &x.dest, func(e *event.Event) { e.MCPToolList = l }))
	}
	for _, c := range res.ToolCalls {
		c.Stream = x.stream
		fitToolCall(c, event.MaxSize/2)
		_ = x.s.emit(ctx, x.s.p.newEvent(event.KindMCPToolCall, end, x.s.id, &x.dest, func(e *event.Event) { e.MCPToolCall = c }))
	}
}

// fitToolCall bounds an MCP tool call's arguments and result to about max
// bytes; the whole exchange stays in the HTTP records.
func fitToolCall(c *event.MCPToolCall, max int) {
	if len(c.Arguments)+len(c.Result) <= max {
		return
	}
	cut := func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		for n > 0 && s[n]&0xC0 == 0x80 {
			n--
		}
		return s[:n] + "…[truncated]"
	}
	c.Arguments = cut(c.Arguments, max/2)
	c.Result = cut(c.Result, max/2)
}

// RewritesResponses implements http1.Rewriter: with Options.MaskResponses
// responses are masked on their way to the agent — always, or while the
// policy in force asks for it (Options.MaskResponsesByPolicy), decided per
// connection when it starts.
func (s *connSink) RewritesResponses() bool { return s.p.masksResponses() }

func (p *Proxy) masksResponses() bool {
	if p.opts.MaskResponses == nil {
		return false
	}
	if !p.opts.MaskResponsesByPolicy {
		return true
	}
	return p.opts.Gate != nil && p.opts.Gate.MaskResponses()
}

// RewriteResponse implements http1.Rewriter (for HTTP/2 too). Bodies that
// are not text, or whose encoding cannot be decoded, are relayed as they
// came, and said so in the log.
func (s *connSink) RewriteResponse(method, target string, status int, h http.Header) http1.BodyRewriter {
	if !s.p.masksResponses() {
		return nil
	}
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip", "x-gzip":
	default:
		s.p.log.Warn("response not masked: content encoding", keyConn, s.id, "encoding", enc, "target", target)
		return nil
	}
	b := s.p.opts.MaskResponses.Body(h.Get("Content-Type"))
	if b == nil {
		return nil
	}
	return b
}
