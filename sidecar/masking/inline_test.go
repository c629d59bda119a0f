package masking

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/mask"
	"github.com/chaperone-dev/chaperone/sidecar/llm"
)

const openAIKey = "sk-proj-Zq8vN3xT5bW7cY9dF2gH4jK6mL8pR0sT1uV3wX5yA7bC9dE1fG3hJ5kL7mN9pQ2r"

func newInline(t testing.TB) (*Inline, *mask.Masker) {
	t.Helper()
	m, err := mask.New(mask.Options{Key: []byte("inline")})
	if err != nil {
		t.Fatal(err)
	}
	return NewInline(m), m
}

// feed writes body to b in pieces of random sizes and returns the output.
func feed(b *Body, body string, rng *rand.Rand) string {
	var out []byte
	for len(body) > 0 {
		n := min(len(body), 1+rng.IntN(40))
		out = append(out, b.Write([]byte(body[:n]))...)
		body = body[n:]
	}
	return string(append(out, b.Close()...))
}

func chatStream(text string, step int) string {
	var b strings.Builder
	for i := 0; i < len(text); i += step {
		d, _ := json.Marshal(map[string]any{"id": "c1", "choices": []any{map[string]any{"index": 0,
			"delta": map[string]any{"content": text[i:min(i+step, len(text))]}}}})
		fmt.Fprintf(&b, "data: %s\n\n", d)
	}
	b.WriteString("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	return b.String()
}

func anthropicStream(text string, step int) string {
	var b strings.Builder
	b.WriteString("event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\"}}\r\n\r\n")
	for i := 0; i < len(text); i += step {
		d, _ := json.Marshal(map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": text[i:min(i+step, len(text))]}})
		fmt.Fprintf(&b, "event: content_block_delta\r\ndata: %s\r\n\r\n", d)
	}
	b.WriteString("event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n")
	return b.String()
}

// decodeText reassembles a stream's completion text with the recorder's
// own decoders, as a client SDK would.
func decodeText(t *testing.T, path, body string) string {
	t.Helper()
	u, _ := url.Parse(path)
	d, ok := llm.Detect(llm.Request{Method: http.MethodPost, Host: "x", URL: u})
	if !ok {
		t.Fatal("no decoder")
	}
	d.Response(200, "text/event-stream")
	if err := d.ResponseChunk([]byte(body)); err != nil {
		t.Fatalf("decode masked stream: %v", err)
	}
	c, err := d.Finish()
	if err != nil || c == nil {
		t.Fatalf("finish: %v", err)
	}
	return c.Text
}

func TestInlineMasksKeySplitAcrossEvents(t *testing.T) {
	in, m := newInline(t)
	text := "Sure. Set it like this:\n```sh\nexport OPENAI_API_KEY=" + openAIKey + "\n```\nThen run the tool again; " +
		strings.Repeat("more words follow here. ", 30)
	want, fs := m.Mask(text)
	if len(fs) != 1 {
		t.Fatalf("masker found %d secrets in the plain text", len(fs))
	}
	for _, tc := range []struct {
		name, path string
		stream     func(string, int) string
	}{
		{"openai", "/v1/chat/completions", chatStream},
		{"anthropic", "/v1/messages", anthropicStream},
	} {
		for _, step := range []int{1, 3, 7, 40, 500} {
			t.Run(fmt.Sprintf("%s/step%d", tc.name, step), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(step), 7))
				b := in.Body("text/event-stream; charset=utf-8")
				out := feed(b, tc.stream(text, step), rng)
				if strings.Contains(out, openAIKey[8:20]) {
					t.Fatalf("key fragment in output")
				}
				if got := decodeText(t, tc.path, out); got != want {
					t.Errorf("client text\n got %q\nwant %q", got, want)
				}
				if b.Found == 0 {
					t.Error("nothing counted")
				}
			})
		}
	}
}

func TestInlineCleanStreamUnchanged(t *testing.T) {
	in, _ := newInline(t)
	body := chatStream(strings.Repeat("nothing secret in here at all. ", 40), 4)
	b := in.Body("text/event-stream")
	if out := feed(b, body, rand.New(rand.NewPCG(1, 2))); out != body {
		t.Errorf("clean stream changed:\n%s", out)
	}
}

func TestInlineTextAndJSON(t *testing.T) {
	in, m := newInline(t)
	text := strings.Repeat("log line without secrets\n", 50) + "aws AKIAIOSFODNN7EXAMPLF and " + openAIKey + "\n" + strings.Repeat("tail\n", 80)
	want, _ := m.Mask(text)
	b := in.Body("text/plain")
	if got := feed(b, text, rand.New(rand.NewPCG(3, 4))); got != want || b.Stream() {
		t.Errorf("text masked\n got %q\nwant %q", got, want)
	}
	// Past the whole-body bound, text streams with a hold-back.
	in.maxWhole = 64
	b = in.Body("text/plain")
	if got := feed(b, text, rand.New(rand.NewPCG(5, 6))); got != want || !b.Stream() {
		t.Errorf("streamed text masked\n got %q\nwant %q", got, want)
	}
	in.maxWhole = DefaultMaxWhole
	js := `{"choices":[{"message":{"content":"key ` + openAIKey + `"}}],"password":"hunter2hunter2"}`
	b = in.Body("application/json")
	got := feed(b, js, rand.New(rand.NewPCG(7, 8)))
	if strings.Contains(got, openAIKey) || strings.Contains(got, "hunter2hunter2") || !json.Valid([]byte(got)) {
		t.Errorf("json masked: %s", got)
	}
	if in.Body("image/png") != nil || in.Body("application/grpc") != nil {
		t.Error("binary types are masked")
	}
}

func TestEventEnd(t *testing.T) {
	for in, want := range map[string]int{
		"data: a\n\n":        9,
		"data: a\r\n\r\nx":   11,
		"data: a\r\rx":       9,
		"data: a\n":          -1,
		"data: a\r\n\r":      -1,
		"data: a\nid: 1\n\n": 15,
	} {
		if got := eventEnd([]byte(in)); got != want {
			t.Errorf("eventEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

// FuzzInlineSSE feeds arbitrary streams: masking must not lose or invent
// bytes of clean input and must not panic.
func FuzzInlineSSE(f *testing.F) {
	f.Add(chatStream("hello "+openAIKey, 3), 5)
	f.Add(anthropicStream("x", 1), 1)
	f.Add("data: not json\n\nevent: e\r\ndata: {\"a\":1}\r\n\r\n:comment\n\n", 2)
	in, _ := newInline(f)
	f.Fuzz(func(t *testing.T, body string, step int) {
		b := in.Body("text/event-stream")
		step = max(1, step%64)
		var out []byte
		for i := 0; i < len(body); i += step {
			out = append(out, b.Write([]byte(body[i:min(i+step, len(body))]))...)
		}
		out = append(out, b.Close()...)
		if b.Found == 0 && !strings.Contains(body, "[MASKED:") && len(out) == 0 && len(body) > 0 {
			t.Errorf("output lost: %q", body)
		}
	})
}
