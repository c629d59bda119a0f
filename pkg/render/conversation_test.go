package render

import (
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

func TestConversation(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var evs []*event.Event
	add := func(kind event.Kind, conn string, set func(e *event.Event)) {
		e := event.New("s1", kind, t0.Add(time.Duration(len(evs))*time.Second))
		e.Conn = conn
		set(e)
		evs = append(evs, e)
	}
	llmDest := &event.Destination{Addr: "10.0.0.9:443", Host: "api.openai.com", Protocol: "tls"}
	add(event.KindConnOpen, "c1", func(e *event.Event) { e.Dest, e.ConnOpen = llmDest, &event.ConnOpen{} })
	add(event.KindHTTPRequest, "c1", func(e *event.Event) {
		e.Dest = llmDest
		e.HTTPRequest = &event.HTTPRequest{Stream: 1, Method: "POST", URL: "/v1/chat/completions", Host: "api.openai.com"}
	})
	add(event.KindLLMPrompt, "c1", func(e *event.Event) {
		e.LLMPrompt = &event.LLMPrompt{Stream: 1, Provider: "openai", Model: "gpt-5", System: "Be terse.",
			Messages: []event.LLMMessage{{Role: "user", Content: "List the pods"}}, Tools: []string{"kubectl"}}
	})
	add(event.KindHTTPResponse, "c1", func(e *event.Event) { e.HTTPResponse = &event.HTTPResponse{Stream: 1, Status: 200} })
	add(event.KindLLMCompletion, "c1", func(e *event.Event) {
		e.LLMCompletion = &event.LLMCompletion{Stream: 1, Model: "gpt-5", Text: "Running:\n```sh\nkubectl get pods\n```",
			CodeBlocks: []string{"kubectl get pods"}, ToolCalls: []event.LLMToolCall{{Name: "kubectl", Arguments: `{"args":"get pods"}`}},
			FinishReason: "tool_calls", InputTokens: 10, OutputTokens: 20, Latency: 1500 * time.Millisecond}
	})
	add(event.KindProcessExec, "", func(e *event.Event) {
		e.ProcessExec = &event.ProcessExec{PID: 42, Binary: "/usr/bin/kubectl", Arguments: []string{"kubectl", "get", "pods"}}
	})
	add(event.KindHTTPRequest, "c2", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 1, Method: "GET", URL: "/api/v1/namespaces/default/pods", Host: "10.96.0.1"}
	})
	add(event.KindHTTPResponse, "c2", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 1, Status: 200, Latency: 5 * time.Millisecond}
	})
	add(event.KindK8sRequest, "c2", func(e *event.Event) {
		e.K8sRequest = &event.K8sRequest{Verb: "list", Resource: "pods", Namespace: "default", Status: 200}
	})
	add(event.KindMCPToolCall, "c3", func(e *event.Event) {
		e.MCPToolCall = &event.MCPToolCall{Name: "read_file", Arguments: `{"path":"/etc/hosts"}`, Result: "127.0.0.1 localhost"}
	})
	add(event.KindHTTPRequest, "c1", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 2, Method: "POST", URL: "/v1/chat/completions", Host: "api.openai.com"}
	})
	add(event.KindLLMPrompt, "c1", func(e *event.Event) {
		e.LLMPrompt = &event.LLMPrompt{Stream: 2, Provider: "openai", Model: "gpt-5", System: "Be terse.",
			Messages: []event.LLMMessage{{Role: "user", Content: "List the pods"}, {Role: "assistant", Content: "Running"},
				{Role: "tool", Content: "pod-a Running"}}}
	})
	c := NewConversation()
	var lines []string
	for _, e := range evs {
		lines = append(lines, c.Add(e)...)
	}
	lines = append(lines, c.Flush()...)
	got := strings.Join(lines, "\n")
	want := strings.Join([]string{
		"── turn 1: openai gpt-5 (1 messages, tools: kubectl)",
		"  system: Be terse.",
		"  user: List the pods",
		"  ← gpt-5 (1.5s, 10→20 tokens, tool_calls)",
		"    Running:",
		"    ```sh",
		"    kubectl get pods",
		"    ```",
		`    tool call kubectl {"args":"get pods"}`,
		"    (1 code block)",
		"    → exec kubectl get pods (pid 42)",
		"    → GET http://10.96.0.1/api/v1/namespaces/default/pods",
		"      → 200 (5ms, 0 B)",
		"    → k8s list pods -n default → 200",
		`    → mcp read_file {"path":"/etc/hosts"}`,
		"      → 127.0.0.1 localhost",
		"── turn 2: openai gpt-5 (3 messages)",
		"  tool: pod-a Running",
	}, "\n")
	if got != want {
		t.Errorf("conversation\n got:\n%s\nwant:\n%s", got, want)
	}
}
