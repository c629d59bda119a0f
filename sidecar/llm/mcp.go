package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// MCP decodes one exchange of the Model Context Protocol's streamable HTTP
// transport: a POST of JSON-RPC 2.0 messages (one, or a batch) answered
// with JSON or with a stream of server-sent events. It records tools/list
// and tools/call; other methods pass unrecorded. Feed it like a Decoder.
// An MCP is not safe for concurrent use.
type MCP struct {
	response
	server  string
	pending []*mcpPending
	byID    map[string]*mcpPending
}

type mcpPending struct {
	list     *event.MCPToolList
	call     *event.MCPToolCall
	answered bool
}

// MCPResult is what an MCP exchange recorded, in request order.
type MCPResult struct {
	ToolLists []*event.MCPToolList
	ToolCalls []*event.MCPToolCall
}

// DetectMCP recognises a streamable-HTTP MCP request: a POST that carries
// an MCP session or protocol-version header, or that accepts both JSON and
// server-sent events as the transport requires, or whose path ends in /mcp.
// Request confirms it: a body that is not JSON-RPC 2.0 returns ErrMalformed.
// Check Detect first; LLM APIs are recognised by path.
func DetectMCP(r Request) (*MCP, bool) {
	if r.Method != http.MethodPost || r.URL == nil {
		return nil, false
	}
	h := r.Header
	accept := strings.ToLower(strings.Join(h.Values("Accept"), ","))
	ok := h.Get("Mcp-Session-Id") != "" || h.Get("Mcp-Protocol-Version") != "" ||
		(strings.Contains(accept, "application/json") && strings.Contains(accept, "text/event-stream")) ||
		strings.HasSuffix(strings.TrimRight(r.URL.Path, "/"), "/mcp")
	if !ok {
		return nil, false
	}
	m := &MCP{server: hostname(r.Host) + r.URL.Path, byID: map[string]*mcpPending{}}
	m.onEvent = m.ResponseEvent
	return m, true
}

type rpcMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpcMessages decodes one JSON-RPC message or a batch of them.
func rpcMessages(b []byte) ([]rpcMessage, error) {
	b = bytes.TrimSpace(b)
	var msgs []rpcMessage
	var err error
	if len(b) > 0 && b[0] == '[' {
		err = json.Unmarshal(b, &msgs)
	} else {
		msgs = make([]rpcMessage, 1)
		err = json.Unmarshal(b, &msgs[0])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: json-rpc: %w", ErrMalformed, err)
	}
	for _, m := range msgs {
		if m.JSONRPC != "2.0" {
			return nil, fmt.Errorf("%w: json-rpc version %q", ErrMalformed, m.JSONRPC)
		}
	}
	return msgs, nil
}

// rpcID returns a JSON-RPC id as a map key: its compact JSON text.
func rpcID(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// Request decodes the POST body and returns the tool calls it makes, with
// their arguments and no result yet, so policy can look at them before
// the call is forwarded.
func (m *MCP) Request(body []byte) ([]*event.MCPToolCall, error) {
	msgs, err := rpcMessages(body)
	if err != nil {
		return nil, err
	}
	var calls []*event.MCPToolCall
	for _, msg := range msgs {
		if len(msg.ID) == 0 || msg.Method == "" {
			continue // a notification or a response to the server
		}
		id := rpcID(msg.ID)
		p := &mcpPending{}
		switch msg.Method {
		case "tools/list":
			p.list = &event.MCPToolList{Server: m.server}
		case "tools/call":
			var params struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			}
			if err := json.Unmarshal(msg.Params, &params); err != nil && len(msg.Params) > 0 {
				return calls, fmt.Errorf("%w: tools/call params: %w", ErrMalformed, err)
			}
			p.call = &event.MCPToolCall{Server: m.server, ID: id, Name: params.Name, Arguments: jsonText(params.Arguments)}
			calls = append(calls, p.call)
		default:
			continue
		}
		if _, dup := m.byID[id]; dup {
			continue
		}
		m.byID[id] = p
		m.pending = append(m.pending, p)
	}
	return calls, nil
}

// ResponseEvent decodes one server-sent event: a JSON-RPC message from the
// server, which may answer a request or be the server's own request or
// notification.
func (m *MCP) ResponseEvent(ev sse.Event) error {
	if strings.TrimSpace(ev.Data) == "" {
		return nil
	}
	return m.answer([]byte(ev.Data))
}

func (m *MCP) answer(b []byte) error {
	msgs, err := rpcMessages(b)
	if err != nil {
		return err
	}
	for _, msg := range msgs {
		if msg.Method != "" || len(msg.ID) == 0 {
			continue
		}
		p, ok := m.byID[rpcID(msg.ID)]
		if !ok || p.answered {
			continue
		}
		p.answered = true
		errText := ""
		if msg.Error != nil {
			errText = fmt.Sprintf("%d: %s", msg.Error.Code, msg.Error.Message)
		}
		switch {
		case p.list != nil:
			p.list.Error = errText
			if errText == "" {
				p.list.Tools = mcpTools(msg.Result)
			}
		case p.call != nil:
			p.call.Error = errText
			if errText == "" {
				p.call.Result, p.call.IsError = mcpCallResult(msg.Result)
			}
		}
	}
	return nil
}

func mcpTools(raw json.RawMessage) []event.MCPTool {
	var r struct {
		Tools []struct {
			Name        string          `json:"name"`
			Title       string          `json:"title"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return nil
	}
	out := make([]event.MCPTool, 0, len(r.Tools))
	for _, t := range r.Tools {
		out = append(out, event.MCPTool{Name: t.Name, Description: joinNonEmpty(": ", t.Title, t.Description),
			InputSchema: jsonText(t.InputSchema)})
	}
	return out
}

// mcpCallResult flattens a tools/call result's content blocks to text.
func mcpCallResult(raw json.RawMessage) (string, bool) {
	var r struct {
		Content []struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			URI      string `json:"uri"`
			Resource *struct {
				URI  string `json:"uri"`
				Text string `json:"text"`
			} `json:"resource"`
		} `json:"content"`
		StructuredContent json.RawMessage `json:"structuredContent"`
		IsError           bool            `json:"isError"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return jsonText(raw), false
	}
	var out []string
	for _, c := range r.Content {
		switch {
		case c.Type == "text":
			out = append(out, c.Text)
		case c.Resource != nil && c.Resource.Text != "":
			out = append(out, c.Resource.Text)
		case c.Resource != nil:
			out = append(out, "["+c.Type+" "+c.Resource.URI+"]")
		default:
			out = append(out, strings.TrimSpace("["+c.Type+" "+c.URI)+"]")
		}
	}
	if len(out) == 0 {
		out = append(out, jsonText(r.StructuredContent))
	}
	return strings.Join(out, "\n"), r.IsError
}

// Finish ends the response and returns the recorded exchanges. A request
// left without an answer carries an error saying so.
func (m *MCP) Finish() (*MCPResult, error) {
	body, err := m.finish()
	if len(body) > 0 && !m.failed() {
		if aerr := m.answer(body); aerr != nil {
			err = aerr
		}
	}
	res := &MCPResult{}
	for _, p := range m.pending {
		missing := ""
		if !p.answered {
			missing = "no response"
			if m.failed() {
				missing = fmt.Sprintf("http status %d", m.status)
			}
		}
		if p.list != nil {
			if p.list.Error == "" {
				p.list.Error = missing
			}
			res.ToolLists = append(res.ToolLists, p.list)
		}
		if p.call != nil {
			if p.call.Error == "" {
				p.call.Error = missing
			}
			res.ToolCalls = append(res.ToolCalls, p.call)
		}
	}
	return res, err
}
