package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// MaxText is how many characters of free text (statements, messages,
// stream data) a line shows before it is cut with "…".
const MaxText = 80

// Line renders one event as a single line without its time or kind, e.g.
// "GET http://host/path", "→ 200 (12ms, 1.2 KiB)", "tcp 10.0.0.1:5432 open",
// "closed ↑120 B ↓3.4 KiB 1.2s". A policy verdict is appended in brackets.
func Line(e *event.Event) string {
	s := line(e)
	if e.Verdict != "" {
		s += " [" + Clean(e.Verdict, 16) + "]"
	}
	return s
}

func line(e *event.Event) string {
	switch {
	case e.SessionStart != nil:
		return sessionStart(e)
	case e.SessionEnd != nil:
		p := e.SessionEnd
		s := "session end"
		if p.ExitCode != nil {
			s += fmt.Sprintf(" (exit %d)", *p.ExitCode)
		}
		if p.Reason != "" {
			s += ": " + Clean(p.Reason, MaxText)
		}
		return s
	case e.ConnOpen != nil:
		s := proto(e) + " " + dest(e)
		if e.ConnOpen.Refused != "" {
			return s + " refused: " + Clean(e.ConnOpen.Refused, MaxText)
		}
		return s + " open"
	case e.ConnClose != nil:
		p := e.ConnClose
		s := fmt.Sprintf("closed ↑%s ↓%s %s", Bytes(p.BytesUp), Bytes(p.BytesDown), Duration(p.Duration))
		if p.TLS != nil && p.TLS.SNI != "" {
			s += " tls " + Clean(p.TLS.SNI, MaxText)
		}
		if p.Error != "" {
			s += ": " + Clean(p.Error, MaxText)
		}
		return s
	case e.HTTPRequest != nil:
		return httpRequest(e)
	case e.HTTPResponse != nil:
		return httpResponse(e.HTTPResponse)
	case e.K8sRequest != nil:
		return k8sRequest(e.K8sRequest)
	case e.StreamData != nil:
		return streamData(e.StreamData)
	case e.LLMPrompt != nil:
		return llmPrompt(e.LLMPrompt)
	case e.LLMCompletion != nil:
		return llmCompletion(e.LLMCompletion)
	case e.MCPToolList != nil:
		return mcpList(e.MCPToolList)
	case e.MCPToolCall != nil:
		p := e.MCPToolCall
		s := "mcp " + Clean(p.Name, 64) + " " + Clean(p.Arguments, MaxText/2)
		switch {
		case p.Error != "":
			return s + " → error: " + Clean(p.Error, MaxText/2)
		case p.IsError:
			return s + " → tool error: " + Clean(p.Result, MaxText/2)
		}
		return s + " → " + Clean(p.Result, MaxText/2)
	case e.SQLQuery != nil:
		p := e.SQLQuery
		s := "sql"
		if p.Database != "" {
			s += " " + Clean(p.Database, 32)
		}
		return s + ": " + Clean(p.Statement, MaxText)
	case e.SQLResult != nil:
		p := e.SQLResult
		if p.Error != "" {
			return "sql → error: " + Clean(p.Error, MaxText)
		}
		return fmt.Sprintf("sql → %s (%d rows, %s)", Clean(cmpOr(p.Tag, "ok"), 32), p.Rows, Duration(p.Duration))
	case e.ProcessExec != nil:
		p := e.ProcessExec
		args := Clean(strings.Join(p.Arguments, " "), MaxText)
		if args == "" {
			args = Clean(p.Binary, MaxText)
		}
		return fmt.Sprintf("exec %s (pid %d)", args, p.PID)
	case e.ProcessExit != nil:
		p := e.ProcessExit
		if p.Signal != 0 {
			return fmt.Sprintf("exit pid %d signal %d", p.PID, p.Signal)
		}
		return fmt.Sprintf("exit pid %d code %d", p.PID, p.Code)
	case e.PolicyDecision != nil:
		p := e.PolicyDecision
		s := "policy " + Clean(p.Action, 32)
		if p.Rule != "" {
			s += " rule " + Clean(p.Rule, 40)
		}
		if p.Reason != "" {
			s += ": " + Clean(p.Reason, MaxText)
		}
		return s
	case e.PolicyLoaded != nil:
		p := e.PolicyLoaded
		if p.Error != "" {
			return "policy refused (" + Clean(p.Source, 16) + "): " + Clean(p.Error, MaxText)
		}
		if p.Hash == "" {
			return "policy: none"
		}
		return fmt.Sprintf("policy loaded from %s: %s (%.12s)", Clean(p.Source, 16), Clean(strings.Join(p.Policies, ", "), MaxText), p.Hash)
	case e.ApprovalRequested != nil:
		p := e.ApprovalRequested
		s := "approval requested: " + Clean(p.Summary, MaxText)
		if len(p.ApproverGroups) > 0 {
			s += " (" + Clean(strings.Join(p.ApproverGroups, ", "), 40) + ")"
		}
		return s
	case e.ApprovalDecided != nil:
		p := e.ApprovalDecided
		s := "approval " + Clean(p.Decision, 16)
		if len(p.Approvers) > 0 {
			s += " by " + Clean(strings.Join(p.Approvers, ", "), 40)
		}
		if p.Reason != "" {
			s += ": " + Clean(p.Reason, MaxText)
		}
		return s
	}
	return Clean(string(e.Kind), 32)
}

func sessionStart(e *event.Event) string {
	p := e.SessionStart
	switch {
	case len(p.Command) > 0:
		return "session start: " + Clean(strings.Join(p.Command, " "), MaxText)
	case e.Identity != nil && e.Identity.Pod != "":
		return "session start: pod " + Clean(e.Identity.Namespace+"/"+e.Identity.Pod, MaxText)
	case p.Origin != "":
		return "session start (" + Clean(p.Origin, 16) + ")"
	}
	return "session start"
}

func proto(e *event.Event) string {
	if e.Dest != nil && e.Dest.Protocol != "" {
		return Clean(e.Dest.Protocol, 16)
	}
	return "tcp"
}

func dest(e *event.Event) string {
	if e.Dest == nil {
		return "?"
	}
	if e.Dest.Host != "" && !strings.HasPrefix(e.Dest.Addr, e.Dest.Host+":") {
		return Clean(e.Dest.Host, 64) + " (" + Clean(e.Dest.Addr, 48) + ")"
	}
	return Clean(e.Dest.Addr, 64)
}

func httpRequest(e *event.Event) string {
	p := e.HTTPRequest
	u := p.URL
	if !strings.Contains(u, "://") && p.Host != "" {
		scheme := "http://"
		if e.Dest != nil && (e.Dest.Protocol == "tls" || strings.HasSuffix(e.Dest.Addr, ":443")) {
			scheme = "https://"
		}
		u = scheme + p.Host + u
	}
	s := Clean(p.Method, 16) + " " + Clean(u, 2*MaxText)
	if p.Body != nil && p.Body.Size > 0 {
		s += " (" + Bytes(p.Body.Size) + ")"
	}
	return s
}

func httpResponse(p *event.HTTPResponse) string {
	if p.Error != "" {
		return "→ error: " + Clean(p.Error, MaxText)
	}
	var size int64
	if p.Body != nil {
		size = p.Body.Size
	}
	d := p.Latency
	if d == 0 {
		d = p.Duration
	}
	return fmt.Sprintf("→ %d (%s, %s)", p.Status, Duration(d), Bytes(size))
}

func k8sRequest(p *event.K8sRequest) string {
	res := p.Resource
	if p.Subresource != "" {
		res += "/" + p.Subresource
	}
	if p.APIGroup != "" {
		res += "." + p.APIGroup
	}
	s := "k8s " + Clean(p.Verb, 16) + " " + Clean(res, 64)
	switch {
	case p.Namespace != "" && p.Name != "":
		s += " " + Clean(p.Namespace+"/"+p.Name, 64)
	case p.Namespace != "":
		s += " -n " + Clean(p.Namespace, 64)
	case p.Name != "":
		s += " " + Clean(p.Name, 64)
	}
	if p.Status != 0 {
		s += " → " + strconv.Itoa(p.Status)
	}
	return s
}

func streamData(p *event.StreamData) string {
	s := Clean(p.Stream, 32) + " " + Clean(p.Channel, 16)
	switch {
	case p.Channel == "resize":
		return fmt.Sprintf("%s %dx%d", s, p.Width, p.Height)
	case p.Exit != nil:
		return fmt.Sprintf("%s %d", s, *p.Exit)
	case p.Data != nil:
		s += " " + Bytes(p.Data.Size)
		if p.Data.Text != "" {
			s += ": " + Clean(p.Data.Text, MaxText)
		}
	}
	return s
}

func llmPrompt(p *event.LLMPrompt) string {
	s := "llm " + Clean(p.Provider, 24)
	if p.Model != "" {
		s += " " + Clean(p.Model, 40)
	}
	s += fmt.Sprintf(" prompt: %d messages", len(p.Messages))
	if len(p.Tools) > 0 {
		s += fmt.Sprintf(", %d tools", len(p.Tools))
	}
	for i := len(p.Messages) - 1; i >= 0; i-- {
		if p.Messages[i].Role == "user" {
			return s + ": " + Clean(p.Messages[i].Content, MaxText)
		}
	}
	return s
}

func llmCompletion(p *event.LLMCompletion) string {
	s := "llm ←"
	if p.Model != "" {
		s += " " + Clean(p.Model, 40)
	}
	switch {
	case p.Text != "":
		s += ": " + Clean(p.Text, MaxText)
	case len(p.ToolCalls) > 0:
		names := make([]string, 0, len(p.ToolCalls))
		for _, c := range p.ToolCalls {
			names = append(names, c.Name)
		}
		s += ": tool calls " + Clean(strings.Join(names, ", "), MaxText)
	}
	if p.InputTokens != 0 || p.OutputTokens != 0 {
		s += fmt.Sprintf(" (%d→%d tokens", p.InputTokens, p.OutputTokens)
		if p.Latency != 0 {
			s += ", " + Duration(p.Latency)
		}
		s += ")"
	}
	if p.FinishReason != "" {
		s += " [" + Clean(p.FinishReason, 24) + "]"
	}
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Bytes renders a byte count: "120 B", "3.4 KiB", "1.2 MiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration renders a duration with two or three significant figures:
// "850µs", "12ms", "1.2s", "3m20s".
func Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Clean makes untrusted text safe and short for one terminal line: control
// characters (including ESC, so no terminal escape sequences), line breaks
// and invalid UTF-8 become visible escapes or spaces, runs of whitespace
// collapse, and text over max characters is cut with "…".
func Clean(s string, max int) string {
	var b strings.Builder
	n := 0
	pendingSpace := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		var out string
		switch {
		case r == utf8.RuneError && size <= 1:
			out = `\x` + strconv.FormatUint(uint64(s[i-size]), 16)
		case unicode.IsSpace(r):
			pendingSpace = n > 0
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			q := strconv.QuoteRuneToASCII(r)
			out = q[1 : len(q)-1]
		default:
			out = string(r)
		}
		if pendingSpace {
			if n >= max {
				return b.String() + "…"
			}
			b.WriteByte(' ')
			n++
			pendingSpace = false
		}
		if n >= max {
			return b.String() + "…"
		}
		b.WriteString(out)
		n++
	}
	return b.String()
}

// detailHeaders are the request headers Details shows: the ones that carry
// credentials (recorded redacted) and the ones that say what a body is.
var detailHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "Content-Type"}

// Details renders what a one-line summary leaves out, as extra lines to
// print under it: credential headers as recorded (so a reader sees they
// were redacted) and a preview of inline text bodies. Most kinds have none.
func Details(e *event.Event) []string {
	var out []string
	headers := func(h map[string][]string) {
		for _, name := range detailHeaders {
			for _, v := range h[name] {
				out = append(out, Clean(name, 32)+": "+Clean(v, MaxText))
			}
		}
	}
	body := func(b *event.Body) {
		switch {
		case b == nil || b.Size == 0:
		case b.Recorded == 0:
			out = append(out, "body: "+Bytes(b.Size)+", not recorded")
		case b.Text != "":
			s := Clean(b.Text, 2*MaxText)
			if b.Truncated {
				s += " … (truncated at " + Bytes(b.Recorded) + ")"
			}
			out = append(out, "body: "+s)
		case b.Ref != "":
			out = append(out, "body: "+Bytes(b.Recorded)+" stored as "+Clean(b.Ref, 80))
		default:
			out = append(out, "body: "+Bytes(b.Recorded)+" binary")
		}
	}
	switch {
	case e.HTTPRequest != nil:
		headers(e.HTTPRequest.Headers)
		body(e.HTTPRequest.Body)
	case e.HTTPResponse != nil:
		headers(e.HTTPResponse.Headers)
		body(e.HTTPResponse.Body)
	}
	return out
}
