package proxy

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/mask"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/masking"
)

// plantedKey is an OpenAI-format key the fake LLM puts in its completions.
const plantedKey = "sk-proj-Zq8vN3xT5bW7cY9dF2gH4jK6mL8pR0sT1uV3wX5yA7bC9dE1fG3hJ5kL7mN9pQ2r"

// fakeLLM speaks just enough OpenAI chat completions, Anthropic messages
// and MCP to exercise the decoders: completions stream token by token.
func fakeLLM() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream bool `json:"stream"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		text := "Use this:\n```sh\nexport OPENAI_API_KEY=" + plantedKey + "\n```\n"
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			body, _ := json.Marshal(map[string]any{
				"id": "c1", "object": "chat.completion", "model": "gpt-test",
				"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
					"message": map[string]any{"role": "assistant", "content": text}}},
				"usage": map[string]any{"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33},
			})
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && r.URL.Query().Get("gz") == "1" {
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = zw.Write(body)
				_ = zw.Close()
				return
			}
			_, _ = w.Write(body)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		send := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "data: %s\n\n", b)
			fl.Flush()
		}
		for i := 0; i < len(text); i += 5 {
			send(map[string]any{"id": "c1", "model": "gpt-test", "choices": []any{map[string]any{"index": 0,
				"delta": map[string]any{"content": text[i:min(i+5, len(text))]}}}})
		}
		send(map[string]any{"id": "c1", "model": "gpt-test", "choices": []any{map[string]any{"index": 0,
			"delta": map[string]any{"tool_calls": []any{map[string]any{"index": 0, "id": "call_1", "type": "function",
				"function": map[string]any{"name": "get_weather", "arguments": `{"city":`}}}}}}})
		send(map[string]any{"id": "c1", "model": "gpt-test", "choices": []any{map[string]any{"index": 0,
			"delta": map[string]any{"tool_calls": []any{map[string]any{"index": 0,
				"function": map[string]any{"arguments": `"Oslo"}`}}}}, "finish_reason": "tool_calls"}}})
		send(map[string]any{"id": "c1", "model": "gpt-test", "choices": []any{},
			"usage": map[string]any{"prompt_tokens": 11, "completion_tokens": 22}})
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.NewDecoder(r.Body).Decode(&msg)
		var result any
		switch msg.Method {
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{"name": "read_file", "description": "reads a file",
				"inputSchema": map[string]any{"type": "object"}}}}
		case "tools/call":
			result = map[string]any{"content": []any{map[string]any{"type": "text", "text": "AWS key AKIAIOSFODNN7EXAMPLF"}}}
		default:
			w.WriteHeader(http.StatusAccepted)
			return
		}
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": result})
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", b)
	})
	return mux
}

func postJSON(t *testing.T, c *http.Client, url, body string, h ...string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exerciseLLM sends a streamed and a whole chat completion and an MCP
// tools/list and tools/call through c, and checks the recorded events.
func exerciseLLM(t *testing.T, c *http.Client, rec *memRecorder, base string) []*event.Event {
	t.Helper()
	prompt := `{"model":"gpt-test","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Weather?"}],` +
		`"tools":[{"type":"function","function":{"name":"get_weather"}}]`
	postJSON(t, c, base+"/v1/chat/completions", prompt+`,"stream":true}`)
	postJSON(t, c, base+"/v1/chat/completions?gz=1", prompt+`}`)
	mcpH := []string{"Accept", "application/json, text/event-stream", "Mcp-Protocol-Version", "2025-06-18"}
	postJSON(t, c, base+"/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, mcpH...)
	postJSON(t, c, base+"/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/hosts"}}}`, mcpH...)
	c.CloseIdleConnections()
	evs := rec.waitFor(t, "llm and mcp events", func(evs []*event.Event) bool {
		return len(ofKind(evs, event.KindLLMCompletion)) == 2 && len(ofKind(evs, event.KindMCPToolCall)) == 1
	})
	prompts := ofKind(evs, event.KindLLMPrompt)
	if len(prompts) != 2 {
		t.Fatalf("%d prompts", len(prompts))
	}
	for _, e := range prompts {
		p := e.LLMPrompt
		if p.Provider != "openai" || p.Model != "gpt-test" || p.System != "Be terse." || len(p.Messages) != 1 ||
			p.Messages[0].Content != "Weather?" || len(p.Tools) != 1 || p.Tools[0] != "get_weather" {
			t.Errorf("prompt %+v", p)
		}
		if err := e.Validate(); err != nil {
			t.Error(err)
		}
	}
	comps := ofKind(evs, event.KindLLMCompletion)
	wantText := "Use this:\n```sh\nexport OPENAI_API_KEY=" + plantedKey + "\n```\n"
	for i, e := range comps {
		c := e.LLMCompletion
		if c.Text != wantText || c.Model != "gpt-test" || c.InputTokens != 11 || c.OutputTokens != 22 ||
			len(c.CodeBlocks) != 1 || c.Latency <= 0 || c.Stream != prompts[i].LLMPrompt.Stream {
			t.Errorf("completion %d %+v", i, c)
		}
		if err := e.Validate(); err != nil {
			t.Error(err)
		}
	}
	if c := comps[0].LLMCompletion; c.FinishReason != "tool_calls" || len(c.ToolCalls) != 1 ||
		c.ToolCalls[0].Name != "get_weather" || c.ToolCalls[0].Arguments != `{"city":"Oslo"}` {
		t.Errorf("streamed completion %+v", c)
	}
	if c := comps[1].LLMCompletion; c.FinishReason != "stop" {
		t.Errorf("gzip completion finish %q", c.FinishReason)
	}
	lists := ofKind(evs, event.KindMCPToolList)
	if len(lists) != 1 || len(lists[0].MCPToolList.Tools) != 1 || lists[0].MCPToolList.Tools[0].Name != "read_file" {
		t.Errorf("tool lists %+v", lists)
	}
	call := ofKind(evs, event.KindMCPToolCall)[0].MCPToolCall
	if call.Name != "read_file" || call.Arguments != `{"path":"/etc/hosts"}` || call.Result != "AWS key AKIAIOSFODNN7EXAMPLF" || call.Error != "" {
		t.Errorf("tool call %+v", call)
	}
	// Each decoded event follows its HTTP record.
	for i, e := range evs {
		if e.Kind == event.KindLLMCompletion && (i == 0 || evs[i-1].Kind != event.KindHTTPResponse) {
			t.Errorf("llm.completion at %d follows %s", i, evs[i-1].Kind)
		}
	}
	return evs
}

func TestLLMOverHTTP1(t *testing.T) {
	up := httptest.NewServer(fakeLLM())
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	exerciseLLM(t, proxiedClient(t, addr), rec, "http://api.openai.com")
}

func TestLLMOverH2C(t *testing.T) {
	up := httptest.NewUnstartedServer(fakeLLM())
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = &p
	up.Start()
	t.Cleanup(up.Close)
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	evs := exerciseLLM(t, h2Client(addr, nil), rec, "http://api.openai.com")
	if ofKind(evs, event.KindHTTPRequest)[0].HTTPRequest.Proto != "HTTP/2.0" {
		t.Error("not HTTP/2")
	}
}

func TestLLMOff(t *testing.T) {
	up := httptest.NewServer(fakeLLM())
	defer up.Close()
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) { o.LLM.Off = true })
	c := proxiedClient(t, addr)
	postJSON(t, c, "http://api.openai.com/v1/chat/completions", `{"model":"m","messages":[]}`)
	c.CloseIdleConnections()
	evs := rec.closes(t, 1)
	if n := len(ofKind(evs, event.KindLLMPrompt)); n != 0 {
		t.Errorf("%d prompts with LLM decoding off", n)
	}
}

func TestParseLLMHosts(t *testing.T) {
	got, err := ParseLLMHosts([]string{"gw.internal:8080=openai-chat", "Claude.Corp=anthropic"})
	if err != nil || got["gw.internal"] != "openai-chat" || got["claude.corp"] != "anthropic" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"gw", "gw=nope", "=openai-chat"} {
		if _, err := ParseLLMHosts([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func newInline(t *testing.T) *masking.Inline {
	t.Helper()
	m, err := mask.New(mask.Options{Key: []byte("inline-test")})
	if err != nil {
		t.Fatal(err)
	}
	return masking.NewInline(m)
}

// exerciseInline checks that completions reach the client masked, over
// keep-alive exchanges that mix rewritten and relayed responses.
func exerciseInline(t *testing.T, c *http.Client, rec *memRecorder, base string) {
	t.Helper()
	prompt := `{"model":"gpt-test","messages":[{"role":"user","content":"key?"}]`
	token := func(s string) bool { return strings.Contains(s, "[MASKED:openai-api-key:") }
	for i := range 2 {
		streamed := postJSON(t, c, base+"/v1/chat/completions", prompt+`,"stream":true}`)
		whole := postJSON(t, c, base+"/v1/chat/completions", prompt+`}`)
		zipped := postJSON(t, c, base+"/v1/chat/completions?gz=1", prompt+`}`)
		for name, got := range map[string]string{"streamed": streamed, "whole": whole, "gzip": zipped} {
			if strings.Contains(got, plantedKey[10:30]) || !token(got) {
				t.Errorf("round %d: %s response not masked: %.300s", i, name, got)
			}
		}
		var resp struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(zipped), &resp); err != nil || len(resp.Choices) != 1 {
			t.Errorf("gzip body %q: %v", zipped, err)
		}
		// Not text: relayed as it came.
		if got := postJSON(t, c, base+"/v1/files", ""); got != "\x89PNG "+plantedKey {
			t.Errorf("binary body changed: %q", got)
		}
	}
	c.CloseIdleConnections()
	evs := rec.waitFor(t, "completions", func(evs []*event.Event) bool {
		return len(ofKind(evs, event.KindLLMCompletion)) == 6
	})
	for _, e := range ofKind(evs, event.KindLLMCompletion) {
		// The record is of what upstream sent; the recorder masks it later.
		if !strings.Contains(e.LLMCompletion.Text, plantedKey) {
			t.Errorf("completion recorded %q", e.LLMCompletion.Text)
		}
	}
}

func fakeLLMWithFiles() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", fakeLLM())
	mux.HandleFunc("POST /v1/files", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = io.WriteString(w, "\x89PNG "+plantedKey)
	})
	return mux
}

func TestInlineMaskingHTTP1(t *testing.T) {
	up := httptest.NewServer(fakeLLMWithFiles())
	defer up.Close()
	rec := newMemRecorder()
	in := newInline(t)
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) { o.MaskResponses = in })
	exerciseInline(t, proxiedClient(t, addr), rec, "http://api.openai.com")
}

func TestInlineMaskingH2C(t *testing.T) {
	up := httptest.NewUnstartedServer(fakeLLMWithFiles())
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = &p
	up.Start()
	t.Cleanup(up.Close)
	rec := newMemRecorder()
	in := newInline(t)
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), func(o *Options) { o.MaskResponses = in })
	exerciseInline(t, h2Client(addr, nil), rec, "http://api.openai.com")
}

// With MaskResponsesByPolicy, responses are masked while the policy in
// force says maskResponses, and relayed as they came otherwise; the
// decision is taken per connection.
func TestInlineMaskingByPolicy(t *testing.T) {
	up := httptest.NewServer(fakeLLMWithFiles())
	defer up.Close()
	g := gate.New(gate.Options{Session: "s1", Identity: policy.Identity{Namespace: "agents"}})
	_, addr := startProxy(t, newMemRecorder(), up.Listener.Addr().String(), func(o *Options) {
		o.MaskResponses = newInline(t)
		o.MaskResponsesByPolicy = true
		o.Gate = g
	})
	load := func(mask bool) {
		t.Helper()
		doc := "apiVersion: chaperone.dev/v1alpha1\nkind: SessionPolicy\nmetadata:\n  name: agents\nspec:\n  maskResponses: " + strconv.FormatBool(mask) + "\n"
		ps, err := policy.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		set, err := policy.Compile(ps)
		if err != nil {
			t.Fatal(err)
		}
		g.Load(set, gate.SourceServer)
	}
	ask := func() string {
		t.Helper()
		c := proxiedClient(t, addr)
		defer c.CloseIdleConnections()
		return postJSON(t, c, "http://api.openai.com/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	}
	if got := ask(); !strings.Contains(got, plantedKey) {
		t.Errorf("no policy: completion changed: %q", got)
	}
	load(true)
	if got := ask(); strings.Contains(got, plantedKey) || !strings.Contains(got, "[MASKED:") {
		t.Errorf("maskResponses: completion delivered unmasked: %q", got)
	}
	load(false)
	if got := ask(); !strings.Contains(got, plantedKey) {
		t.Errorf("maskResponses off: completion changed: %q", got)
	}
}
