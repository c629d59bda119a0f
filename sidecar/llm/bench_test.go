package llm

import (
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkStreams measures decoding a streamed response fed in 512-byte
// chunks, as the proxy would.
func BenchmarkStreams(b *testing.B) {
	for _, bc := range []struct{ name, target, file string }{
		{"openai", "/v1/chat/completions", "openai_chat_stream.response.sse"},
		{"responses", "/v1/responses", "responses.response.sse"},
		{"anthropic", "/v1/messages", "anthropic.response.sse"},
		{"gemini", "/v1beta/models/g:streamGenerateContent", "gemini_stream.response.sse"},
	} {
		body := fixture(b, bc.file)
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				d, _ := Detect(Request{Method: http.MethodPost, Host: "h", URL: &url.URL{Path: bc.target}})
				d.Response(200, "text/event-stream")
				for p := body; len(p) > 0; {
					k := min(512, len(p))
					if err := d.ResponseChunk(p[:k]); err != nil {
						b.Fatal(err)
					}
					p = p[k:]
				}
				if _, err := d.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
