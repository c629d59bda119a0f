package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/runner"
	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

// plantedKey is an OpenAI-format key the fake model writes into its
// completions when asked for one.
const plantedKey = "sk-proj-Zq8vN3xT5bW7cY9dF2gH4jK6mL8pR0sT1uV3wX5yA7bC9dE1fG3hJ5kL7mN9pQ2r"

// sdkReport is what e2e/sdk prints per call (see its Report).
type sdkReport struct {
	API          string `json:"api"`
	Stream       bool   `json:"stream"`
	Model        string `json:"model"`
	System       string `json:"system"`
	User         string `json:"user"`
	Tools        []string
	Text         string                                     `json:"text"`
	ToolCalls    []struct{ Name, Arguments, Result string } `json:"tool_calls"`
	InputTokens  int64                                      `json:"input_tokens"`
	OutputTokens int64                                      `json:"output_tokens"`
	Finish       string                                     `json:"finish"`
}

var buildSDK = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "chaperone-e2e-sdk-")
	if err != nil {
		return "", err
	}
	//nolint:gosec // the binary must be executable by the command's uid
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "sdk")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = "sdk"
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build e2e/sdk: %w\n%s", err, b)
	}
	return out, nil
})

// completionText is what the fake model answers; with the key when the
// prompt asks for one.
func completionText(prompt string) string {
	v := "debug"
	if strings.Contains(prompt, "key") {
		v = plantedKey
	}
	return "Set it like this:\n```sh\nexport SETTING=" + v + "\n```\nThen run the tool again.\n"
}

// fakeModel speaks OpenAI chat completions and Anthropic messages, whole
// and streamed token by token, with one tool call each.
func fakeModel() http.Handler {
	mux := http.NewServeMux()
	sse := func(w http.ResponseWriter) func(event string, v any) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		return func(event string, v any) {
			b, _ := json.Marshal(v)
			if event != "" {
				fmt.Fprintf(w, "event: %s\n", event)
			}
			fmt.Fprintf(w, "data: %s\n\n", b)
			fl.Flush()
		}
	}
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream   bool `json:"stream"`
			Messages []struct {
				Role    string `json:"role"`
				Content any    `json:"content"`
			} `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		prompt := ""
		for _, m := range req.Messages {
			if s, ok := m.Content.(string); ok && m.Role == "user" {
				prompt = s
			}
		}
		text := completionText(prompt)
		call := map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Oslo"}`}}
		usage := map[string]any{"prompt_tokens": 31, "completion_tokens": 42, "total_tokens": 73}
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
				"choices": []any{map[string]any{"index": 0, "finish_reason": "tool_calls",
					"message": map[string]any{"role": "assistant", "content": text, "tool_calls": []any{call}}}},
				"usage": usage})
			return
		}
		send := sse(w)
		chunk := func(delta map[string]any, finish any) map[string]any {
			return map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
				"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
		}
		send("", chunk(map[string]any{"role": "assistant", "content": ""}, nil))
		for i := 0; i < len(text); i += 4 {
			send("", chunk(map[string]any{"content": text[i:min(i+4, len(text))]}, nil))
		}
		send("", chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "id": "call_1", "type": "function",
			"function": map[string]any{"name": "get_weather", "arguments": `{"city":`}}}}, nil))
		send("", chunk(map[string]any{"tool_calls": []any{map[string]any{"index": 0, "function": map[string]any{"arguments": `"Oslo"}`}}}}, "tool_calls"))
		send("", map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test", "choices": []any{}, "usage": usage})
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Stream   bool `json:"stream"`
			Messages []struct {
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			} `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		prompt := ""
		if n := len(req.Messages); n > 0 && len(req.Messages[n-1].Content) > 0 {
			prompt = req.Messages[n-1].Content[0].Text
		}
		text := completionText(prompt)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
				"content": []any{map[string]any{"type": "text", "text": text},
					map[string]any{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": map[string]any{"city": "Oslo"}}},
				"stop_reason": "tool_use", "usage": map[string]any{"input_tokens": 31, "output_tokens": 42}})
			return
		}
		send := sse(w)
		send("message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_1", "type": "message", "role": "assistant",
			"model": "claude-sonnet-4-5", "content": []any{}, "usage": map[string]any{"input_tokens": 31, "output_tokens": 1}}})
		send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		for i := 0; i < len(text); i += 4 {
			send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "text_delta", "text": text[i:min(i+4, len(text))]}})
		}
		send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		send("content_block_start", map[string]any{"type": "content_block_start", "index": 1,
			"content_block": map[string]any{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": map[string]any{}}})
		for _, part := range []string{`{"city":`, `"Oslo"}`} {
			send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 1,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": part}})
		}
		send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 1})
		send("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "tool_use"},
			"usage": map[string]any{"output_tokens": 42}})
		send("message_stop", map[string]any{"type": "message_stop"})
	})
	return mux
}

func serveOn(t *testing.T, ip netip.Addr, h http.Handler) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// startMCPServer runs the MCP Go SDK's server (e2e/sdk mcp-server) on ip.
func startMCPServer(t *testing.T, sdk string, ip netip.Addr) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, sdk, "mcp-server", netip.AddrPortFrom(ip, 0).String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("mcp server: %q, %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return addr
}

// runSDK runs the three SDK clients in one recorded session and returns
// their reports and the stored events.
func runSDK(t *testing.T, srvNATS string, cl *client.Client, sb *sandbox.Sandbox, sdk, model, mcpAddr, prompt string, sidecarArgs ...string) ([]sdkReport, []*event.Event) {
	t.Helper()
	script := `set -eu
"$SDK" openai "http://$MODEL/v1/" "$PROMPT"
"$SDK" anthropic "http://$MODEL/" "$PROMPT"
"$SDK" mcp "http://$MCP/mcp"
`
	var out, errOut, sidecarLog bytes.Buffer
	res, err := runner.Run(t.Context(), runner.Options{
		Command:     []string{"/bin/bash", "-c", script},
		Env:         []string{"SDK=" + sdk, "MODEL=" + model, "MCP=" + mcpAddr, "PROMPT=" + prompt},
		NATSURL:     srvNATS,
		Token:       cl.WorkloadToken,
		SidecarPath: bin("chaperone-sidecar"),
		SidecarArgs: sidecarArgs,
		User:        "e2e-llm",
		Sandbox:     sb,
		Stdout:      &out,
		Stderr:      &errOut,
		SidecarLog:  &sidecarLog,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v (exit %d)\nstdout:\n%s\nstderr:\n%s\nsidecar:\n%s", err, res.ExitCode, out.String(), errOut.String(), sidecarLog.String())
	}
	var reports []sdkReport
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var r sdkReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("sdk output %q: %v", line, err)
		}
		reports = append(reports, r)
	}
	if len(reports) != 5 {
		t.Fatalf("%d sdk reports:\n%s", len(reports), out.String())
	}
	return reports, waitEnded(t, cl, res.Session)
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// checkLLMRecording compares the recorded llm.* and mcp.* events with what
// the SDK clients sent and received.
func checkLLMRecording(t *testing.T, reports []sdkReport, evs []*event.Event) {
	t.Helper()
	var prompts, comps []*event.Event
	var lists, calls []*event.Event
	for _, e := range evs {
		switch e.Kind {
		case event.KindLLMPrompt:
			prompts = append(prompts, e)
		case event.KindLLMCompletion:
			comps = append(comps, e)
		case event.KindMCPToolList:
			lists = append(lists, e)
		case event.KindMCPToolCall:
			calls = append(calls, e)
		}
	}
	if len(prompts) != 4 || len(comps) != 4 || len(lists) != 1 || len(calls) != 1 {
		dumpEvents(t, evs)
		t.Fatalf("recorded %d prompts, %d completions, %d tool lists, %d tool calls; want 4, 4, 1, 1", len(prompts), len(comps), len(lists), len(calls))
	}
	for i, r := range reports[:4] {
		p, c := prompts[i].LLMPrompt, comps[i].LLMCompletion
		provider := map[string]string{"openai": "openai", "anthropic": "anthropic"}[r.API]
		if p.Provider != provider || p.Model != r.Model || p.System != r.System || len(p.Messages) != 1 ||
			p.Messages[0].Role != "user" || p.Messages[0].Content != r.User || strings.Join(p.Tools, ",") != strings.Join(r.Tools, ",") {
			t.Errorf("%s stream=%v: prompt %+v, client sent %+v", r.API, r.Stream, p, r)
		}
		if c.Provider != provider || c.Text != r.Text || c.InputTokens != r.InputTokens || c.OutputTokens != r.OutputTokens ||
			c.FinishReason != r.Finish || c.Latency <= 0 || c.Stream != p.Stream || len(c.CodeBlocks) != 1 {
			t.Errorf("%s stream=%v: completion\n%+v\nclient got\n%+v", r.API, r.Stream, c, r)
		}
		if len(c.ToolCalls) != len(r.ToolCalls) {
			t.Errorf("%s stream=%v: %d tool calls recorded, client got %d", r.API, r.Stream, len(c.ToolCalls), len(r.ToolCalls))
			continue
		}
		for j, tc := range r.ToolCalls {
			if c.ToolCalls[j].Name != tc.Name || !sameJSON(c.ToolCalls[j].Arguments, tc.Arguments) {
				t.Errorf("%s stream=%v: tool call %+v, client got %+v", r.API, r.Stream, c.ToolCalls[j], tc)
			}
		}
	}
	m := reports[4]
	var names []string
	for _, tl := range lists[0].MCPToolList.Tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != strings.Join(m.Tools, ",") {
		t.Errorf("mcp tools recorded %v, client got %v", names, m.Tools)
	}
	call := calls[0].MCPToolCall
	if call.Name != m.ToolCalls[0].Name || !sameJSON(call.Arguments, m.ToolCalls[0].Arguments) || call.Result != m.ToolCalls[0].Result || call.Error != "" {
		t.Errorf("mcp call recorded %+v, client %+v", call, m.ToolCalls[0])
	}
}

// TestLLMSDKs runs the official OpenAI, Anthropic and MCP Go SDKs behind
// the real sidecar against local servers speaking their APIs (the MCP one
// is the MCP SDK's own server), and compares the recorded prompts,
// completions, tool calls and usage with what the clients sent and got.
// Then, with responses masked, a completion carrying a key reaches the
// clients masked, streamed or not.
func TestLLMSDKs(t *testing.T) {
	sdk, err := buildSDK()
	if err != nil {
		t.Fatal(err)
	}
	srv, cl := startServer(t)
	sb := newSandbox(t)
	model := serveOn(t, sb.HostIP(), fakeModel())
	mcpAddr := startMCPServer(t, sdk, sb.HostIP())

	t.Run("record", func(t *testing.T) {
		reports, evs := runSDK(t, srv.Addrs.NATS, cl, sb, sdk, model.String(), mcpAddr, "How do I set the log level?")
		if !strings.Contains(reports[0].Text, "SETTING=debug") || len(reports[0].ToolCalls) != 1 || reports[1].InputTokens != 31 {
			t.Fatalf("the SDK did not get the fake answers: %+v", reports[:2])
		}
		checkLLMRecording(t, reports, evs)
	})
	t.Run("mask-responses", func(t *testing.T) {
		reports, evs := runSDK(t, srv.Addrs.NATS, cl, sb, sdk, model.String(), mcpAddr, "Which key do I use?", "--mask-responses")
		for _, r := range reports[:4] {
			if strings.Contains(r.Text, plantedKey[:24]) || !strings.Contains(r.Text, "SETTING=[MASKED:openai-api-key:") {
				t.Errorf("%s stream=%v: the client got %q", r.API, r.Stream, r.Text)
			}
		}
		t.Logf("the streamed OpenAI completion reached the client as %q", reports[1].Text)
		// The recording masks with the same key: it shows what the client got.
		checkLLMRecording(t, reports, evs)
	})
}
