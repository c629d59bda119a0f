package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// Providers, as recorded in LLMPrompt.Provider and LLMCompletion.Provider.
const (
	ProviderOpenAI    = "openai"
	ProviderCopilot   = "copilot"
	ProviderAnthropic = "anthropic"
	ProviderGemini    = "gemini"
	ProviderVertex    = "vertex"
	ProviderAzure     = "azure-openai"
)

// MaxBody bounds the bytes of a non-streaming response body a decoder keeps.
const MaxBody = 16 << 20

// Errors of the decoders, wrapped with detail; check them with errors.Is.
var (
	// ErrMalformed says a body or stream event is not what the API sends.
	ErrMalformed = errors.New("malformed llm message")
	// ErrTooLarge says a response body passed MaxBody.
	ErrTooLarge = errors.New("llm response too large")
)

// Request is what a decoder needs to know of an HTTP request before its body.
type Request struct {
	Method string
	// Host is the request's host (the Host header or :authority, or the
	// TLS SNI), with or without a port.
	Host string
	// URL is the request target; only its path and query are used.
	URL *url.URL
	// Header is the request's header; may be nil.
	Header http.Header
}

// Decoder decodes one LLM API exchange. Feed it the request body, then the
// response header, then the response as it streams: either raw body bytes
// through ResponseChunk or, when the caller already parses server-sent
// events, the events through ResponseEvent. Finish returns the completion.
// A Decoder is not safe for concurrent use.
type Decoder interface {
	// Provider names the API's provider (one of the Provider constants).
	Provider() string
	// Request decodes the request body into the prompt.
	Request(body []byte) (*event.LLMPrompt, error)
	// Response starts the response. contentType selects JSON or
	// server-sent events; when empty the body is sniffed.
	Response(status int, contentType string)
	// ResponseChunk feeds the next bytes of the response body. An error
	// reports a part that could not be decoded; decoding goes on.
	ResponseChunk(p []byte) error
	// ResponseEvent feeds one server-sent event of a streaming response.
	ResponseEvent(ev sse.Event) error
	// Finish ends the response and returns the completion decoded so far.
	// The caller sets Latency and Stream on it. A completion is returned
	// whenever anything was decoded, even with an error.
	Finish() (*event.LLMCompletion, error)
}

// Detect recognises an LLM API request by its method, host and path and
// returns a decoder for it.
func Detect(r Request) (Decoder, bool) {
	if r.Method != http.MethodPost || r.URL == nil {
		return nil, false
	}
	host := hostname(r.Host)
	path := strings.TrimRight(r.URL.Path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return newChat(providerFor(host, ProviderOpenAI)), true
	case strings.HasSuffix(path, "/responses"):
		return newResponses(providerFor(host, ProviderOpenAI)), true
	case strings.HasSuffix(path, "/v1/messages"):
		return newAnthropic(providerFor(host, ProviderAnthropic)), true
	}
	if model, _, ok := geminiPath(path); ok {
		return newGemini(providerFor(host, ProviderGemini), model), true
	}
	return nil, false
}

// API shapes, for DetectAs.
const (
	APIChat      = "openai-chat"
	APIResponses = "openai-responses"
	APIAnthropic = "anthropic"
	APIGemini    = "gemini"
)

// APIs lists the API shapes DetectAs knows.
var APIs = []string{APIChat, APIResponses, APIAnthropic, APIGemini}

// DetectAs returns a decoder of the API shape api for a POST whatever its
// path, for gateways that serve an LLM API under paths of their own.
// Gemini takes the model from the path when it can. ok is false for other
// methods and unknown shapes.
func DetectAs(api string, r Request) (Decoder, bool) {
	if r.Method != http.MethodPost || r.URL == nil {
		return nil, false
	}
	host := hostname(r.Host)
	switch api {
	case APIChat:
		return newChat(providerFor(host, ProviderOpenAI)), true
	case APIResponses:
		return newResponses(providerFor(host, ProviderOpenAI)), true
	case APIAnthropic:
		return newAnthropic(providerFor(host, ProviderAnthropic)), true
	case APIGemini:
		model, _, _ := geminiPath(strings.TrimRight(r.URL.Path, "/"))
		return newGemini(providerFor(host, ProviderGemini), model), true
	}
	return nil, false
}

// Hostname returns h without its port and trailing dot, in lower case.
func Hostname(h string) string { return hostname(h) }

func hostname(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func hostIs(host, domain string) bool {
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// providerFor names the provider behind host; def is the API shape's
// provider, used for self-hosted and unknown compatible endpoints.
func providerFor(host, def string) string {
	switch {
	case hostIs(host, "githubcopilot.com"):
		return ProviderCopilot
	case hostIs(host, "openai.azure.com"):
		return ProviderAzure
	case strings.HasSuffix(host, "aiplatform.googleapis.com"): // also {region}-aiplatform…
		return ProviderVertex
	case hostIs(host, "openai.com"):
		return ProviderOpenAI
	case hostIs(host, "anthropic.com"):
		return ProviderAnthropic
	case hostIs(host, "generativelanguage.googleapis.com"):
		return ProviderGemini
	}
	return def
}

// response is the body plumbing every decoder shares: it tells JSON from
// server-sent events, feeds events to the decoder as they complete and
// keeps a bounded copy of a JSON body for Finish.
type response struct {
	status  int
	mode    int // modeUnknown, modeJSON or modeSSE
	parser  *sse.Parser
	body    []byte
	tooBig  bool
	onEvent func(sse.Event) error
}

const (
	modeUnknown = iota
	modeJSON
	modeSSE
)

// Response starts the response; see Decoder.
func (r *response) Response(status int, contentType string) {
	r.status = status
	if contentType == "" {
		return
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	}
	if mt == "text/event-stream" {
		r.mode = modeSSE
	} else {
		r.mode = modeJSON
	}
}

// ResponseChunk feeds the next bytes of the response body; see Decoder.
func (r *response) ResponseChunk(p []byte) error {
	if r.mode == modeUnknown {
		// Leading whitespace (and a BOM) means nothing to either format:
		// blank lines dispatch no event, so it is dropped while sniffing.
		p = bytes.TrimLeft(p, " \t\r\n\xef\xbb\xbf")
		if len(p) == 0 {
			return nil
		}
		if p[0] == '{' || p[0] == '[' {
			r.mode = modeJSON
		} else {
			r.mode = modeSSE
		}
	}
	if r.mode == modeJSON {
		if r.tooBig {
			return nil
		}
		if len(r.body)+len(p) > MaxBody {
			r.tooBig = true
			r.body = nil
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBody)
		}
		r.body = append(r.body, p...)
		return nil
	}
	if r.parser == nil {
		r.parser = sse.NewParser(sse.Options{})
	}
	evs, err := r.parser.Feed(p)
	errs := []error{err}
	for _, ev := range evs {
		errs = append(errs, r.onEvent(ev))
	}
	return errors.Join(errs...)
}

// finish flushes a pending event of an unterminated stream and returns the
// JSON body, if the response was JSON.
func (r *response) finish() ([]byte, error) {
	if r.parser != nil {
		if ev, ok := r.parser.End(); ok {
			return nil, r.onEvent(ev)
		}
		return nil, nil
	}
	if r.tooBig {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBody)
	}
	return bytes.TrimSpace(r.body), nil
}

// failed says the response is an HTTP error.
func (r *response) failed() bool { return r.status >= 400 }

// completion assembles an LLMCompletion from streamed or whole parts.
type completion struct {
	provider     string
	model        string
	text         strings.Builder
	calls        []*event.LLMToolCall
	byKey        map[string]*event.LLMToolCall
	finishReason string
	inputTokens  int64
	outputTokens int64
	errText      string
	decoded      bool
}

// call returns the tool call with key, creating it in order of first sight.
func (c *completion) call(key string) *event.LLMToolCall {
	if tc, ok := c.byKey[key]; ok {
		return tc
	}
	if c.byKey == nil {
		c.byKey = map[string]*event.LLMToolCall{}
	}
	tc := &event.LLMToolCall{}
	c.byKey[key] = tc
	c.calls = append(c.calls, tc)
	return tc
}

func (c *completion) result() *event.LLMCompletion {
	out := &event.LLMCompletion{
		Provider:     c.provider,
		Model:        c.model,
		Text:         c.text.String(),
		FinishReason: c.finishReason,
		InputTokens:  c.inputTokens,
		OutputTokens: c.outputTokens,
	}
	if c.errText != "" {
		out.Text = joinNonEmpty("\n", out.Text, c.errText)
		if out.FinishReason == "" {
			out.FinishReason = "error"
		}
	}
	for _, tc := range c.calls {
		out.ToolCalls = append(out.ToolCalls, *tc)
	}
	out.CodeBlocks = CodeBlocks(out.Text)
	return out
}

// apiError is the error body shape OpenAI, Anthropic and Gemini share:
// {"error": {"message": ...}} (Anthropic adds a type, Gemini a status).
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Status  string `json:"status"`
	} `json:"error"`
}

// errorText returns the message of an API error body, or "" if body is not
// one.
func errorText(body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return ""
	}
	return "error: " + joinNonEmpty(": ", joinNonEmpty(" ", e.Error.Type, e.Error.Status), e.Error.Message)
}

// done returns the completion at Finish: nil when nothing was decoded and
// the response was no error.
func (c *completion) done(r *response, err error) (*event.LLMCompletion, error) {
	if r.failed() && c.errText == "" {
		c.errText = fmt.Sprintf("error: http status %d", r.status)
	}
	if !c.decoded && c.errText == "" {
		return nil, err
	}
	return c.result(), err
}

// eventJSON is what every decoder's ResponseEvent starts with: it skips
// empty and "[DONE]" events, keeps the text of an error response's events,
// and decodes the rest into v. ok is false when there is nothing to apply.
func eventJSON[T any](r *response, c *completion, ev sse.Event, what string, v *T) (ok bool, err error) {
	data := strings.TrimSpace(ev.Data)
	if data == "" || data == "[DONE]" {
		return false, nil
	}
	if r.failed() {
		c.errText = joinNonEmpty("\n", c.errText, errorOr(data))
		return false, nil
	}
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return false, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return true, nil
}

// bodyJSON is what every decoder's Finish starts with: it flushes a
// stream's last event, keeps the text of an error response, and decodes a
// JSON body into v. ok says v was filled.
func bodyJSON[T any](r *response, c *completion, what string, v *T) (ok bool, err error) {
	body, err := r.finish()
	switch {
	case len(body) == 0:
		return false, err
	case r.failed():
		c.errText = errorOr(string(body))
		return false, err
	}
	if uerr := json.Unmarshal(body, v); uerr != nil {
		return false, fmt.Errorf("%w: %s: %w", ErrMalformed, what, uerr)
	}
	return true, err
}
