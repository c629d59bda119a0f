package render

import (
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

func TestLine(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	zero, three := 0, 3
	mk := func(kind event.Kind, set func(e *event.Event)) *event.Event {
		e := event.New("s1", kind, t0)
		set(e)
		return e
	}
	gh := &event.Destination{Addr: "140.82.112.6:443", Host: "api.github.com", Protocol: "tls"}
	pg := &event.Destination{Addr: "10.0.0.1:5432", Protocol: "tcp"}
	tests := []struct {
		e    *event.Event
		want string
	}{
		{mk(event.KindHTTPRequest, func(e *event.Event) {
			e.HTTPRequest = &event.HTTPRequest{Method: "GET", URL: "http://host/path"}
		}), "GET http://host/path"},
		{mk(event.KindHTTPRequest, func(e *event.Event) {
			e.Dest = gh
			e.HTTPRequest = &event.HTTPRequest{Method: "POST", URL: "/repos?x=1", Host: "api.github.com", Body: &event.Body{Size: 2048}}
		}), "POST https://api.github.com/repos?x=1 (2.0 KiB)"},
		{mk(event.KindHTTPResponse, func(e *event.Event) {
			e.HTTPResponse = &event.HTTPResponse{Status: 200, Latency: 12 * time.Millisecond, Body: &event.Body{Size: 1229}}
		}), "→ 200 (12ms, 1.2 KiB)"},
		{mk(event.KindHTTPResponse, func(e *event.Event) {
			e.HTTPResponse = &event.HTTPResponse{Error: "upstream reset"}
		}), "→ error: upstream reset"},
		{mk(event.KindConnOpen, func(e *event.Event) { e.Dest, e.ConnOpen = pg, &event.ConnOpen{} }), "tcp 10.0.0.1:5432 open"},
		{mk(event.KindConnOpen, func(e *event.Event) {
			e.Dest, e.ConnOpen = gh, &event.ConnOpen{Refused: "policy"}
		}), "tls api.github.com (140.82.112.6:443) refused: policy"},
		{mk(event.KindConnClose, func(e *event.Event) {
			e.ConnClose = &event.ConnClose{BytesUp: 120, BytesDown: 3481, Duration: 1200 * time.Millisecond}
		}), "closed ↑120 B ↓3.4 KiB 1.2s"},
		{mk(event.KindK8sRequest, func(e *event.Event) {
			e.Verdict = "deny"
			e.K8sRequest = &event.K8sRequest{Verb: "get", Resource: "secrets", Namespace: "prod", Name: "db", Status: 403}
		}), "k8s get secrets prod/db → 403 [deny]"},
		{mk(event.KindK8sRequest, func(e *event.Event) {
			e.K8sRequest = &event.K8sRequest{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "dev", Name: "web"}
		}), "k8s create pods/exec dev/web"},
		{mk(event.KindStreamData, func(e *event.Event) {
			e.StreamData = &event.StreamData{Stream: "exec-1", Channel: "stdout", Data: &event.Body{Size: 6, Text: "hello\n"}}
		}), "exec-1 stdout 6 B: hello"},
		{mk(event.KindStreamData, func(e *event.Event) {
			e.StreamData = &event.StreamData{Stream: "exec-1", Channel: "resize", Width: 80, Height: 24}
		}), "exec-1 resize 80x24"},
		{mk(event.KindStreamData, func(e *event.Event) {
			e.StreamData = &event.StreamData{Stream: "exec-1", Channel: "exit", Exit: &three}
		}), "exec-1 exit 3"},
		{mk(event.KindLLMPrompt, func(e *event.Event) {
			e.LLMPrompt = &event.LLMPrompt{Provider: "openai", Model: "gpt-4o", Tools: []string{"bash"},
				Messages: []event.LLMMessage{{Role: "user", Content: "fix the\ntests"}, {Role: "assistant", Content: "ok"}}}
		}), "llm openai gpt-4o prompt: 2 messages, 1 tools: fix the tests"},
		{mk(event.KindLLMCompletion, func(e *event.Event) {
			e.LLMCompletion = &event.LLMCompletion{Model: "gpt-4o", Text: "Done.", InputTokens: 120, OutputTokens: 34, Latency: 1500 * time.Millisecond, FinishReason: "stop"}
		}), "llm ← gpt-4o: Done. (120→34 tokens, 1.5s) [stop]"},
		{mk(event.KindLLMCompletion, func(e *event.Event) {
			e.LLMCompletion = &event.LLMCompletion{ToolCalls: []event.LLMToolCall{{Name: "bash"}, {Name: "edit"}}}
		}), "llm ←: tool calls bash, edit"},
		{mk(event.KindSQLQuery, func(e *event.Event) {
			e.SQLQuery = &event.SQLQuery{Database: "app", Statement: "SELECT *\n  FROM users"}
		}), "sql app: SELECT * FROM users"},
		{mk(event.KindSQLResult, func(e *event.Event) {
			e.SQLResult = &event.SQLResult{Tag: "SELECT 3", Rows: 3, Duration: 2 * time.Millisecond}
		}), "sql → SELECT 3 (3 rows, 2ms)"},
		{mk(event.KindSQLResult, func(e *event.Event) {
			e.SQLResult = &event.SQLResult{Error: "permission denied"}
		}), "sql → error: permission denied"},
		{mk(event.KindProcessExec, func(e *event.Event) {
			e.ProcessExec = &event.ProcessExec{PID: 42, Binary: "/bin/sh", Arguments: []string{"sh", "-c", "ls"}}
		}), "exec sh -c ls (pid 42)"},
		{mk(event.KindProcessExit, func(e *event.Event) { e.ProcessExit = &event.ProcessExit{PID: 42, Code: 1} }), "exit pid 42 code 1"},
		{mk(event.KindProcessExit, func(e *event.Event) { e.ProcessExit = &event.ProcessExit{PID: 42, Signal: 9} }), "exit pid 42 signal 9"},
		{mk(event.KindPolicyDecision, func(e *event.Event) {
			e.PolicyDecision = &event.PolicyDecision{Action: "Deny", Rule: "no-secrets", Reason: "secrets are off limits"}
		}), "policy Deny rule no-secrets: secrets are off limits"},
		{mk(event.KindApprovalRequested, func(e *event.Event) {
			e.ApprovalRequested = &event.ApprovalRequested{Summary: "delete deployment web", ApproverGroups: []string{"sre"}}
		}), "approval requested: delete deployment web (sre)"},
		{mk(event.KindApprovalDecided, func(e *event.Event) {
			e.ApprovalDecided = &event.ApprovalDecided{Decision: "approved", Approvers: []string{"alice"}}
		}), "approval approved by alice"},
		{mk(event.KindSessionStart, func(e *event.Event) {
			e.SessionStart = &event.SessionStart{Origin: "run", Command: []string{"make", "test"}}
		}), "session start: make test"},
		{mk(event.KindSessionStart, func(e *event.Event) {
			e.Identity = &event.Identity{Namespace: "ns", Pod: "agent"}
			e.SessionStart = &event.SessionStart{Origin: "pod"}
		}), "session start: pod ns/agent"},
		{mk(event.KindSessionEnd, func(e *event.Event) { e.SessionEnd = &event.SessionEnd{ExitCode: &zero} }), "session end (exit 0)"},
	}
	for _, tt := range tests {
		if err := tt.e.Validate(); err != nil {
			t.Fatalf("test event invalid: %v", err)
		}
		if got := Line(tt.e); got != tt.want {
			t.Errorf("Line(%s) = %q, want %q", tt.e.Kind, got, tt.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 120: "120 B", 1023: "1023 B", 1024: "1.0 KiB", 3481: "3.4 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 850 * time.Microsecond: "850µs", 12345 * time.Microsecond: "12ms",
		1234 * time.Millisecond: "1.2s", 200 * time.Second: "3m20s",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 10, "plain"},
		{"  a \n\t b  ", 10, "a b"},
		{"\x1b[31mred\x1b[0m", 40, `\x1b[31mred\x1b[0m`},
		{"bell\a", 10, `bell\a`},
		{"abcdef", 3, "abc…"},
		{"abc   ", 3, "abc"},
		{"abc d", 3, "abc…"},
		{"héllo", 10, "héllo"},
		{"bad\xffutf", 10, `bad\xffutf`},
		{"rtl\u202eoverride", 20, `rtl\u202eoverride`},
	}
	for _, tt := range tests {
		if got := Clean(tt.in, tt.max); got != tt.want {
			t.Errorf("Clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

// FuzzClean checks no control character survives Clean, whatever the input.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "a\x1b]0;title\x07b", "\r\n", "\xff\xfe", "\u2028x", strings.Repeat("é", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Clean(s, 20)
		for _, r := range out {
			if unicode.IsControl(r) || r == '\n' || unicode.Is(unicode.Cf, r) {
				t.Fatalf("Clean(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}

func TestDetails(t *testing.T) {
	e := &event.Event{Kind: event.KindHTTPRequest, HTTPRequest: &event.HTTPRequest{
		Method: "POST", URL: "/x",
		Headers: map[string][]string{"Authorization": {"[REDACTED]"}, "Content-Type": {"application/json"}, "Accept": {"*/*"}},
		Body:    &event.Body{Size: 9, Recorded: 9, Text: "{\"a\":\"b\"}"},
	}}
	got := Details(e)
	want := []string{"Authorization: [REDACTED]", "Content-Type: application/json", `body: {"a":"b"}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Details = %q, want %q", got, want)
	}
	if d := Details(&event.Event{Kind: event.KindConnOpen, ConnOpen: &event.ConnOpen{}}); d != nil {
		t.Fatalf("conn.open details = %q, want none", d)
	}
}
