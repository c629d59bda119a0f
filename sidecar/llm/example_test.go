package llm_test

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/chaperone-dev/chaperone/sidecar/llm"
)

// This example shows how a proxy drives a decoder: detect the API from the
// request line, decode the request body, then feed the response body as it
// streams and finish it when the stream ends.
func ExampleDetect() {
	u, _ := url.Parse("/v1/messages")
	d, ok := llm.Detect(llm.Request{Method: http.MethodPost, Host: "api.anthropic.com", URL: u})
	if !ok {
		return
	}
	prompt, _ := d.Request([]byte(`{"model":"claude-sonnet-4-5","system":"Be terse.","messages":[{"role":"user","content":"Hi"}]}`))
	fmt.Println(prompt.Provider, prompt.Model, prompt.System, prompt.Messages[0].Content)

	start := time.Now()
	d.Response(http.StatusOK, "text/event-stream")
	for _, chunk := range []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":9}}}\n\n",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel",
		"lo\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
	} {
		_ = d.ResponseChunk([]byte(chunk))
	}
	c, _ := d.Finish()
	c.Latency = time.Since(start)
	fmt.Println(c.Text, c.FinishReason, c.InputTokens, c.OutputTokens)
	// Output:
	// anthropic claude-sonnet-4-5 Be terse. Hi
	// Hello end_turn 9 2
}
