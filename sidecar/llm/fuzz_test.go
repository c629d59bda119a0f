package llm

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// fuzzDecoder feeds arbitrary request and response bytes to the decoder
// for target and checks it neither panics nor yields an event that does
// not validate.
func fuzzDecoder(t *testing.T, target string, req, resp []byte, split uint8, sseMode bool) {
	d, ok := Detect(Request{Method: http.MethodPost, Host: "h", URL: &url.URL{Path: target}})
	if !ok {
		t.Fatalf("%s not detected", target)
	}
	if p, err := d.Request(req); err == nil && p == nil {
		t.Fatal("nil prompt without error")
	}
	ctype := "application/json"
	if sseMode {
		ctype = "text/event-stream"
	}
	d.Response(200, ctype)
	n := int(split)%16 + 1
	for len(resp) > 0 {
		k := min(n, len(resp))
		_ = d.ResponseChunk(resp[:k])
		resp = resp[k:]
	}
	c, _ := d.Finish()
	if c == nil {
		return
	}
	e := event.New("s1", event.KindLLMCompletion, time.Now())
	e.LLMCompletion = c
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
}

func FuzzOpenAI(f *testing.F) {
	f.Add(fixture(f, "openai_chat.request.json"), fixture(f, "openai_chat.response.json"), uint8(0), false, false)
	f.Add(fixture(f, "openai_chat_stream.request.json"), fixture(f, "openai_chat_stream.response.sse"), uint8(3), true, false)
	f.Add(fixture(f, "copilot.request.json"), fixture(f, "copilot.response.sse"), uint8(1), true, false)
	f.Add(fixture(f, "responses.request.json"), fixture(f, "responses.response.sse"), uint8(7), true, true)
	f.Add(fixture(f, "responses_plain.request.json"), fixture(f, "responses_plain.response.json"), uint8(2), false, true)
	f.Add([]byte(`{"messages":[{"content":[1]}]}`), []byte(`data: {"choices":[{"delta":{"tool_calls":[{"index":-1}]}}]}`+"\n\n"), uint8(0), true, false)
	f.Fuzz(func(t *testing.T, req, resp []byte, split uint8, sseMode, responsesAPI bool) {
		target := "/v1/chat/completions"
		if responsesAPI {
			target = "/v1/responses"
		}
		fuzzDecoder(t, target, req, resp, split, sseMode)
	})
}

func FuzzAnthropic(f *testing.F) {
	f.Add(fixture(f, "anthropic.request.json"), fixture(f, "anthropic.response.sse"), uint8(5), true)
	f.Add(fixture(f, "anthropic_plain.request.json"), fixture(f, "anthropic_plain.response.json"), uint8(0), false)
	f.Add([]byte(`{"system":7}`), []byte("event: content_block_delta\ndata: {\"index\":-5,\"delta\":{\"type\":\"input_json_delta\"}}\n\n"), uint8(2), true)
	f.Fuzz(func(t *testing.T, req, resp []byte, split uint8, sseMode bool) {
		fuzzDecoder(t, "/v1/messages", req, resp, split, sseMode)
	})
}

func FuzzGemini(f *testing.F) {
	f.Add(fixture(f, "gemini.request.json"), fixture(f, "gemini_stream.response.sse"), uint8(4), true)
	f.Add(fixture(f, "gemini.request.json"), fixture(f, "gemini.response.json"), uint8(0), false)
	f.Add(fixture(f, "gemini.request.json"), fixture(f, "gemini_array.response.json"), uint8(9), false)
	f.Fuzz(func(t *testing.T, req, resp []byte, split uint8, sseMode bool) {
		fuzzDecoder(t, "/v1beta/models/gemini-2.0-flash:streamGenerateContent", req, resp, split, sseMode)
	})
}

func FuzzMCP(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}`), uint8(0), false)
	f.Add([]byte(`[{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"n","arguments":{}}}]`),
		[]byte("data: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n\n"), uint8(3), true)
	f.Add([]byte(`{"jsonrpc":"2.0","id":{},"method":"tools/call","params":7}`), []byte(`[{"jsonrpc":"2.0","id":{},"error":{}}]`), uint8(1), false)
	f.Fuzz(func(t *testing.T, req, resp []byte, split uint8, sseMode bool) {
		m, ok := DetectMCP(Request{Method: http.MethodPost, Host: "h", URL: &url.URL{Path: "/mcp"}})
		if !ok {
			t.Fatal("not detected")
		}
		_, _ = m.Request(req)
		ctype := "application/json"
		if sseMode {
			ctype = "text/event-stream"
		}
		m.Response(200, ctype)
		n := int(split)%16 + 1
		for len(resp) > 0 {
			k := min(n, len(resp))
			_ = m.ResponseChunk(resp[:k])
			resp = resp[k:]
		}
		res, _ := m.Finish()
		if res == nil {
			t.Fatal("nil result")
		}
		for _, l := range res.ToolLists {
			e := event.New("s1", event.KindMCPToolList, time.Now())
			e.MCPToolList = l
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range res.ToolCalls {
			e := event.New("s1", event.KindMCPToolCall, time.Now())
			e.MCPToolCall = c
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
