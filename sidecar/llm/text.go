package llm

import (
	"bytes"
	"encoding/json"
	"strings"
)

// CodeBlocks returns the contents of the ``` and ~~~ fenced code blocks of a
// Markdown text, in order. Empty blocks are left out. A fence left open at the end of the text (a cut
// stream) still yields its block.
func CodeBlocks(text string) []string {
	var out []string
	var cur strings.Builder
	var fence string // the opening fence while inside a block
	for line := range strings.Lines(text) {
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if fence == "" {
			if indent > 3 {
				continue
			}
			if f := fenceOf(trimmed); f != "" {
				fence = f
				cur.Reset()
			}
			continue
		}
		if indent <= 3 {
			if f := fenceOf(trimmed); f != "" && f[0] == fence[0] && len(f) >= len(fence) &&
				strings.TrimSpace(trimmed[len(f):]) == "" {
				if cur.Len() > 0 {
					out = append(out, cur.String())
				}
				fence = ""
				continue
			}
		}
		cur.WriteString(line)
	}
	if fence != "" && cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// fenceOf returns the run of three or more backticks or tildes that starts
// line, or "".
func fenceOf(line string) string {
	if len(line) < 3 || (line[0] != '`' && line[0] != '~') {
		return ""
	}
	n := 0
	for n < len(line) && line[n] == line[0] {
		n++
	}
	if n < 3 {
		return ""
	}
	if line[0] == '`' && strings.Contains(line[n:], "`") {
		return "" // a backtick fence's info string may not hold backticks
	}
	return line[:n]
}

// jsonText returns raw as text for a record: the string itself when raw is
// a JSON string, otherwise the compact JSON.
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}

// joinNonEmpty joins the non-empty parts with sep.
func joinNonEmpty(sep string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p)
	}
	return b.String()
}

// toolUseText renders a tool call found in a prompt's history, so it is
// kept (and masked) as message content.
func toolUseText(name, args string) string {
	return "[tool call " + name + " " + args + "]"
}
