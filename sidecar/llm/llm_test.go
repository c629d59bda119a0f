package llm

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// feed runs a decoder over a response body, as raw bytes in pieces of n
// (all at once when n <= 0) or, when events is set, as server-sent events
// parsed by the caller.
func feed(t *testing.T, d Decoder, status int, ctype string, body []byte, n int, events bool) *event.LLMCompletion {
	t.Helper()
	d.Response(status, ctype)
	if events {
		p := sse.NewParser(sse.Options{})
		evs, err := p.Feed(body)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if err := d.ResponseEvent(ev); err != nil {
				t.Fatalf("event %q: %v", ev.Data, err)
			}
		}
	} else {
		if n <= 0 {
			n = len(body)
		}
		for b := body; len(b) > 0; {
			k := min(n, len(b))
			if err := d.ResponseChunk(b[:k]); err != nil {
				t.Fatalf("chunk: %v", err)
			}
			b = b[k:]
		}
	}
	c, err := d.Finish()
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	return c
}

func asJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func TestDecoders(t *testing.T) {
	tests := []struct {
		name     string
		host     string
		target   string
		request  string
		status   int
		ctype    string
		response string
		prompt   *event.LLMPrompt
		want     *event.LLMCompletion
	}{
		{
			name: "openai chat", host: "api.openai.com", target: "/v1/chat/completions",
			request: "openai_chat.request.json", status: 200, ctype: "application/json", response: "openai_chat.response.json",
			prompt: &event.LLMPrompt{Provider: "openai", Model: "gpt-4o", System: "You are a coding agent working in /src.",
				Messages: []event.LLMMessage{
					{Role: "user", Content: "Add a Reverse function to strings.go\n[image_url]"},
					{Role: "assistant", Content: `[tool call read_file {"path":"strings.go"}]`},
					{Role: "tool", Content: "package strs\n"},
				},
				Tools: []string{"read_file", "write_file"}},
			want: &event.LLMCompletion{Provider: "openai", Model: "gpt-4o-2024-08-06",
				Text:         "Here it is:\n\n```go\nfunc Reverse(s string) string {\n\treturn s\n}\n```\n\nDone.",
				CodeBlocks:   []string{"func Reverse(s string) string {\n\treturn s\n}\n"},
				FinishReason: "stop", InputTokens: 82, OutputTokens: 31},
		},
		{
			name: "openai chat stream", host: "api.openai.com:443", target: "/v1/chat/completions",
			request: "openai_chat_stream.request.json", status: 200, ctype: "text/event-stream; charset=utf-8", response: "openai_chat_stream.response.sse",
			prompt: &event.LLMPrompt{Provider: "openai", Model: "gpt-4o-mini", System: "Be brief.",
				Messages: []event.LLMMessage{{Role: "user", Content: "Weather in Paris and Oslo?"}}, Tools: []string{"get_weather"}},
			want: &event.LLMCompletion{Provider: "openai", Model: "gpt-4o-mini-2024-07-18", Text: "Checking both.",
				ToolCalls: []event.LLMToolCall{
					{ID: "call_p", Name: "get_weather", Arguments: `{"city":"Paris"}`},
					{ID: "call_o", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
				},
				FinishReason: "tool_calls", InputTokens: 57, OutputTokens: 44},
		},
		{
			name: "copilot", host: "api.githubcopilot.com", target: "/chat/completions",
			request: "copilot.request.json", status: 200, ctype: "text/event-stream", response: "copilot.response.sse",
			prompt: &event.LLMPrompt{Provider: "copilot", Model: "claude-sonnet-4", System: "You are GitHub Copilot.",
				Messages: []event.LLMMessage{{Role: "user", Content: "Write a hello world in Python"}}},
			want: &event.LLMCompletion{Provider: "copilot", Model: "claude-sonnet-4", Text: "```python\nprint(\"hello\")\n```",
				CodeBlocks: []string{"print(\"hello\")\n"}, FinishReason: "stop", InputTokens: 20, OutputTokens: 12},
		},
		{
			name: "responses stream", host: "api.openai.com", target: "/v1/responses",
			request: "responses.request.json", status: 200, ctype: "text/event-stream", response: "responses.response.sse",
			prompt: &event.LLMPrompt{Provider: "openai", Model: "gpt-5-codex", System: "You are Codex, a coding agent.",
				Messages: []event.LLMMessage{
					{Role: "user", Content: "Run the tests"},
					{Role: "assistant", Content: "[reasoning]"},
					{Role: "assistant", Content: `[tool call shell {"command":["go","test","./..."]}]`},
					{Role: "tool", Content: "ok  example.com/x 0.01s"},
				},
				Tools: []string{"shell", "web_search"}},
			want: &event.LLMCompletion{Provider: "openai", Model: "gpt-5-codex", Text: "Tests pass. Committing.",
				ToolCalls:    []event.LLMToolCall{{ID: "call_2", Name: "shell", Arguments: `{"command":["git","commit"]}`}},
				FinishReason: "completed", InputTokens: 310, OutputTokens: 42},
		},
		{
			name: "responses plain", host: "my-llm.internal:8000", target: "/v1/responses",
			request: "responses_plain.request.json", status: 200, ctype: "application/json", response: "responses_plain.response.json",
			prompt: &event.LLMPrompt{Provider: "openai", Model: "gpt-4.1",
				Messages: []event.LLMMessage{{Role: "user", Content: "Write a haiku about Go"}}},
			want: &event.LLMCompletion{Provider: "openai", Model: "gpt-4.1-2025-04-14", Text: "Goroutines hum soft",
				FinishReason: "max_output_tokens", InputTokens: 12, OutputTokens: 5},
		},
		{
			name: "anthropic stream", host: "api.anthropic.com", target: "/v1/messages",
			request: "anthropic.request.json", status: 200, ctype: "text/event-stream", response: "anthropic.response.sse",
			prompt: &event.LLMPrompt{Provider: "anthropic", Model: "claude-sonnet-4-5", System: "You are Claude Code.\nWork in /repo.",
				Messages: []event.LLMMessage{
					{Role: "user", Content: "List the files"},
					{Role: "assistant", Content: "Listing.\n[tool call Bash {\"command\":\"ls\"}]"},
					{Role: "user", Content: "main.go\ngo.mod"},
				},
				Tools: []string{"Bash", "web_search"}},
			want: &event.LLMCompletion{Provider: "anthropic", Model: "claude-sonnet-4-5-20250929",
				Text:         "I'll add a test:\n```go\nfunc TestX(t *testing.T) {}\n```\n",
				CodeBlocks:   []string{"func TestX(t *testing.T) {}\n"},
				ToolCalls:    []event.LLMToolCall{{ID: "toolu_02", Name: "Bash", Arguments: `{"command": "go test"}`}},
				FinishReason: "tool_use", InputTokens: 1025, OutputTokens: 89},
		},
		{
			name: "anthropic plain", host: "api.anthropic.com", target: "/v1/messages?beta=true",
			request: "anthropic_plain.request.json", status: 200, ctype: "application/json", response: "anthropic_plain.response.json",
			prompt: &event.LLMPrompt{Provider: "anthropic", Model: "claude-opus-4-1", System: "Answer in one word.",
				Messages: []event.LLMMessage{{Role: "user", Content: "Capital of France?"}}},
			want: &event.LLMCompletion{Provider: "anthropic", Model: "claude-opus-4-1-20250805", Text: "Paris",
				FinishReason: "end_turn", InputTokens: 14, OutputTokens: 4},
		},
		{
			name: "anthropic error", host: "api.anthropic.com", target: "/v1/messages",
			request: "anthropic_plain.request.json", status: 529, ctype: "application/json", response: "anthropic_error.response.json",
			prompt: &event.LLMPrompt{Provider: "anthropic", Model: "claude-opus-4-1", System: "Answer in one word.",
				Messages: []event.LLMMessage{{Role: "user", Content: "Capital of France?"}}},
			want: &event.LLMCompletion{Provider: "anthropic", Text: "error: overloaded_error: Overloaded", FinishReason: "error"},
		},
		{
			name: "gemini stream sse", host: "generativelanguage.googleapis.com",
			target:  "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
			request: "gemini.request.json", status: 200, ctype: "text/event-stream", response: "gemini_stream.response.sse",
			prompt: &event.LLMPrompt{Provider: "gemini", Model: "gemini-2.5-flash", System: "You are a helpful coding agent.",
				Messages: []event.LLMMessage{
					{Role: "user", Content: "What's in config.yaml?"},
					{Role: "model", Content: `[tool call read_file {"path":"config.yaml"}]`},
					{Role: "user", Content: `{"content":"port: 80"}`},
				},
				Tools: []string{"read_file", "googleSearch"}},
			want: &event.LLMCompletion{Provider: "gemini", Model: "gemini-2.5-flash", Text: "It sets the port to 80.",
				ToolCalls:    []event.LLMToolCall{{Name: "write_file", Arguments: `{"path":"config.yaml","content":"port: 8080"}`}},
				FinishReason: "STOP", InputTokens: 40, OutputTokens: 25},
		},
		{
			name: "gemini plain", host: "generativelanguage.googleapis.com", target: "/v1beta/models/gemini-2.0-flash:generateContent",
			request: "gemini.request.json", status: 200, ctype: "application/json", response: "gemini.response.json",
			want: &event.LLMCompletion{Provider: "gemini", Model: "gemini-2.0-flash", Text: "Sure:\n\n~~~python\nprint(1)\n~~~\n",
				CodeBlocks: []string{"print(1)\n"}, FinishReason: "STOP", InputTokens: 9, OutputTokens: 11},
		},
		{
			name: "vertex stream array", host: "us-central1-aiplatform.googleapis.com",
			target:  "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent",
			request: "gemini.request.json", status: 200, ctype: "application/json", response: "gemini_array.response.json",
			want: &event.LLMCompletion{Provider: "vertex", Model: "gemini-2.0-flash", Text: "Hello",
				FinishReason: "STOP", InputTokens: 3, OutputTokens: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := Request{Method: http.MethodPost, Host: tt.host, URL: mustURL(t, tt.target)}
			modes := []struct {
				name   string
				n      int
				events bool
				ctype  string
			}{{"whole", 0, false, tt.ctype}, {"bytes", 1, false, tt.ctype}, {"pieces", 13, false, tt.ctype}, {"sniffed", 5, false, ""}}
			if strings.HasPrefix(tt.ctype, "text/event-stream") {
				modes = append(modes, struct {
					name   string
					n      int
					events bool
					ctype  string
				}{"events", 0, true, tt.ctype})
			}
			for _, m := range modes {
				d, ok := Detect(req)
				if !ok {
					t.Fatal("not detected")
				}
				p, err := d.Request(fixture(t, tt.request))
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				if tt.prompt != nil && !reflect.DeepEqual(p, tt.prompt) {
					t.Errorf("prompt:\n got %s\nwant %s", asJSON(p), asJSON(tt.prompt))
				}
				c := feed(t, d, tt.status, m.ctype, fixture(t, tt.response), m.n, m.events)
				if !reflect.DeepEqual(c, tt.want) {
					t.Errorf("%s: completion:\n got %s\nwant %s", m.name, asJSON(c), asJSON(tt.want))
				}
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		method, host, target string
		provider             string // "" means not detected
	}{
		{"POST", "api.openai.com", "/v1/chat/completions", ProviderOpenAI},
		{"GET", "api.openai.com", "/v1/chat/completions", ""},
		{"POST", "api.openai.com", "/v1/models", ""},
		{"POST", "myres.openai.azure.com", "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21", ProviderAzure},
		{"POST", "api.individual.githubcopilot.com", "/chat/completions", ProviderCopilot},
		{"POST", "api.githubcopilot.com", "/responses", ProviderCopilot},
		{"POST", "localhost:11434", "/v1/chat/completions", ProviderOpenAI},
		{"POST", "api.anthropic.com", "/v1/messages", ProviderAnthropic},
		{"POST", "api.anthropic.com", "/v1/messages/count_tokens", ""},
		{"POST", "generativelanguage.googleapis.com", "/v1beta/models/gemini-pro:generateContent", ProviderGemini},
		{"POST", "generativelanguage.googleapis.com", "/v1beta/models/gemini-pro:countTokens", ""},
		{"POST", "generativelanguage.googleapis.com", "/v1beta/tunedModels/my-model:generateContent", ProviderGemini},
		{"POST", "example.com", "/v1/things:generateContent", ""},
	}
	for _, tt := range tests {
		d, ok := Detect(Request{Method: tt.method, Host: tt.host, URL: mustURL(t, tt.target)})
		got := ""
		if ok {
			got = d.Provider()
		}
		if got != tt.provider {
			t.Errorf("%s %s%s: provider %q, want %q", tt.method, tt.host, tt.target, got, tt.provider)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, target := range []string{"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1beta/models/m:generateContent"} {
		d, _ := Detect(Request{Method: "POST", Host: "h", URL: mustURL(t, target)})
		if _, err := d.Request([]byte("{nope")); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s request: %v", target, err)
		}
		d.Response(200, "application/json")
		if err := d.ResponseChunk([]byte(`{"choices": 7, "content": 8, "candidates": 9, "output": 1}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Finish(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s response: %v", target, err)
		}
	}
}

func TestHTTPErrorWithoutBody(t *testing.T) {
	d, _ := Detect(Request{Method: "POST", Host: "api.openai.com", URL: mustURL(t, "/v1/chat/completions")})
	d.Response(502, "")
	c, err := d.Finish()
	if err != nil || c == nil || c.FinishReason != "error" || c.Text != "error: http status 502" {
		t.Fatalf("got %+v, %v", c, err)
	}
}

func TestCodeBlocks(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"no code", nil},
		{"```\na\n```", []string{"a\n"}},
		{"x\n```go\na\nb\n```\ny\n~~~\nc\n~~~~\n", []string{"a\nb\n", "c\n"}},
		{"````md\n```\ninner\n```\n````\n", []string{"```\ninner\n```\n"}},
		{"```sh\nopen at the end", []string{"open at the end"}},
		{"    ```\n    indented code\n", nil},
		{"``` a`b\nnot a fence\n", nil},
		{"```\n```\n", nil},
	}
	for _, tt := range tests {
		if got := CodeBlocks(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("CodeBlocks(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
