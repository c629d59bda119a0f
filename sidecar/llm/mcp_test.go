package llm

import (
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

func mcpRequest(t *testing.T) Request {
	t.Helper()
	h := http.Header{}
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Mcp-Session-Id", "1868a90c")
	h.Set("Mcp-Protocol-Version", "2025-06-18")
	return Request{Method: http.MethodPost, Host: "mcp.github.internal:443", URL: mustURL(t, "/mcp/"), Header: h}
}

func TestMCP(t *testing.T) {
	tests := []struct {
		name      string
		request   string
		status    int
		ctype     string
		response  string
		wantCalls []*event.MCPToolCall // returned by Request
		want      *MCPResult
	}{
		{
			name:    "tools/list json",
			request: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`,
			status:  200, ctype: "application/json",
			response: `{"jsonrpc":"2.0","id":1,"result":{"tools":[
				{"name":"create_issue","title":"Create issue","description":"Open a GitHub issue","inputSchema":{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}},
				{"name":"search_code","description":"Search code","inputSchema":{"type":"object"}}],"nextCursor":"c2"}}`,
			want: &MCPResult{ToolLists: []*event.MCPToolList{{Server: "mcp.github.internal/mcp/", Tools: []event.MCPTool{
				{Name: "create_issue", Description: "Create issue: Open a GitHub issue",
					InputSchema: `{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}`},
				{Name: "search_code", Description: "Search code", InputSchema: `{"type":"object"}`},
			}}}},
		},
		{
			name:    "tools/call sse with progress",
			request: `{"jsonrpc":"2.0","id":"req-7","method":"tools/call","params":{"name":"run_query","arguments":{"sql":"select 1"},"_meta":{"progressToken":"p1"}}}`,
			status:  200, ctype: "text/event-stream",
			response: "id: e1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p1\",\"progress\":50,\"total\":100}}\n\n" +
				"id: e2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"req-7\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"1 row\"},{\"type\":\"resource_link\",\"uri\":\"file:///tmp/out.csv\",\"name\":\"out\"}],\"isError\":false}}\n\n",
			wantCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: `"req-7"`, Name: "run_query", Arguments: `{"sql":"select 1"}`}},
			want: &MCPResult{ToolCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: `"req-7"`, Name: "run_query",
				Arguments: `{"sql":"select 1"}`, Result: "1 row\n[resource_link file:///tmp/out.csv]"}}},
		},
		{
			name: "batch with tool error and rpc error",
			request: `[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{"env":"prod"}}},
				{"jsonrpc":"2.0","method":"notifications/initialized"},
				{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}},
				{"jsonrpc":"2.0","id":4,"method":"resources/list"}]`,
			status: 200, ctype: "application/json",
			response: `[{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool: nope"}},
				{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"permission denied"}],"isError":true}},
				{"jsonrpc":"2.0","id":4,"result":{"resources":[]}}]`,
			wantCalls: []*event.MCPToolCall{
				{Server: "mcp.github.internal/mcp/", ID: "2", Name: "deploy", Arguments: `{"env":"prod"}`},
				{Server: "mcp.github.internal/mcp/", ID: "3", Name: "nope"},
			},
			want: &MCPResult{ToolCalls: []*event.MCPToolCall{
				{Server: "mcp.github.internal/mcp/", ID: "2", Name: "deploy", Arguments: `{"env":"prod"}`, Result: "permission denied", IsError: true},
				{Server: "mcp.github.internal/mcp/", ID: "3", Name: "nope", Error: "-32602: Unknown tool: nope"},
			}},
		},
		{
			name:    "structured content only",
			request: `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"weather","arguments":{"city":"Oslo"}}}`,
			status:  200, ctype: "application/json",
			response:  `{"jsonrpc":"2.0","id":5,"result":{"content":[],"structuredContent":{"temp":3}}}`,
			wantCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: "5", Name: "weather", Arguments: `{"city":"Oslo"}`}},
			want: &MCPResult{ToolCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: "5", Name: "weather",
				Arguments: `{"city":"Oslo"}`, Result: `{"temp":3}`}}},
		},
		{
			name:    "http error",
			request: `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"x"}}`,
			status:  404, ctype: "application/json", response: `{"error":"session not found"}`,
			wantCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: "6", Name: "x"}},
			want:      &MCPResult{ToolCalls: []*event.MCPToolCall{{Server: "mcp.github.internal/mcp/", ID: "6", Name: "x", Error: "http status 404"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 9} {
				m, ok := DetectMCP(mcpRequest(t))
				if !ok {
					t.Fatal("not detected")
				}
				calls, err := m.Request([]byte(tt.request))
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				if !reflect.DeepEqual(calls, tt.wantCalls) {
					t.Errorf("request calls:\n got %s\nwant %s", asJSON(calls), asJSON(tt.wantCalls))
				}
				m.Response(tt.status, tt.ctype)
				body := []byte(tt.response)
				if n <= 0 {
					n = len(body)
				}
				for len(body) > 0 {
					k := min(n, len(body))
					if err := m.ResponseChunk(body[:k]); err != nil {
						t.Fatalf("chunk: %v", err)
					}
					body = body[k:]
				}
				got, err := m.Finish()
				if err != nil {
					t.Fatalf("finish: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%d: result:\n got %s\nwant %s", n, asJSON(got), asJSON(tt.want))
				}
			}
		})
	}
}

func TestDetectMCP(t *testing.T) {
	accept := http.Header{"Accept": {"application/json, text/event-stream"}}
	tests := []struct {
		method, target string
		header         http.Header
		want           bool
	}{
		{"POST", "/anything", accept, true},
		{"POST", "/mcp", nil, true},
		{"POST", "/rpc", http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}, true},
		{"GET", "/mcp", accept, false},
		{"POST", "/v1/items", http.Header{"Accept": {"application/json"}}, false},
	}
	for _, tt := range tests {
		_, ok := DetectMCP(Request{Method: tt.method, Host: "h", URL: mustURL(t, tt.target), Header: tt.header})
		if ok != tt.want {
			t.Errorf("%s %s %v: %v, want %v", tt.method, tt.target, tt.header, ok, tt.want)
		}
	}
}

func TestMCPNotJSONRPC(t *testing.T) {
	m, _ := DetectMCP(mcpRequest(t))
	for _, body := range []string{`{"id":1,"method":"tools/list"}`, `not json`, `[{"jsonrpc":"1.0"}]`} {
		if _, err := m.Request([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func TestMCPNoResponse(t *testing.T) {
	m, _ := DetectMCP(mcpRequest(t))
	if _, err := m.Request([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); err != nil {
		t.Fatal(err)
	}
	m.Response(200, "text/event-stream")
	got, err := m.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ToolLists) != 1 || got.ToolLists[0].Error != "no response" {
		t.Fatalf("got %s", asJSON(got))
	}
}
