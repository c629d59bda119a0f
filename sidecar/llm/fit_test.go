package llm

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

func TestFitPrompt(t *testing.T) {
	big := strings.Repeat("é", 300) // 600 bytes
	tests := []struct {
		name      string
		p         event.LLMPrompt
		max       int
		omitted   int
		kept      int
		truncated bool
	}{
		{"fits", event.LLMPrompt{System: "s", Messages: []event.LLMMessage{{Role: "user", Content: "hi"}}}, 100, 0, 1, false},
		{"drops oldest", event.LLMPrompt{Messages: []event.LLMMessage{
			{Role: "user", Content: big}, {Role: "assistant", Content: big}, {Role: "user", Content: "now"}}}, 700, 1, 2, false},
		{"cuts newest", event.LLMPrompt{Messages: []event.LLMMessage{{Role: "user", Content: big}, {Role: "user", Content: big}}}, 100, 1, 1, true},
		{"cuts system", event.LLMPrompt{System: big, Messages: []event.LLMMessage{{Role: "user", Content: "x"}}}, 400, 0, 1, true},
	}
	for _, tt := range tests {
		p := tt.p
		FitPrompt(&p, tt.max)
		if p.OmittedMessages != tt.omitted || len(p.Messages) != tt.kept || p.Truncated != tt.truncated {
			t.Errorf("%s: omitted %d kept %d truncated %v", tt.name, p.OmittedMessages, len(p.Messages), p.Truncated)
		}
		if promptSize(&p) > tt.max {
			t.Errorf("%s: size %d > %d", tt.name, promptSize(&p), tt.max)
		}
		for _, m := range p.Messages {
			if !utf8.ValidString(m.Content) {
				t.Errorf("%s: split a rune", tt.name)
			}
		}
	}
}

func TestFitCompletionEncodes(t *testing.T) {
	text := "```\n" + strings.Repeat("x", 3<<20) + "\n```\n"
	c := &event.LLMCompletion{Provider: "openai", Text: text, CodeBlocks: CodeBlocks(text),
		ToolCalls: []event.LLMToolCall{{Name: "w", Arguments: strings.Repeat("a", 2<<20)}}}
	FitCompletion(c, event.MaxSize/2)
	if !c.Truncated {
		t.Fatal("not marked truncated")
	}
	e := event.New("s1", event.KindLLMCompletion, time.Now())
	e.LLMCompletion = c
	if _, err := event.Encode(e); err != nil {
		t.Fatalf("encode after fit: %v", err)
	}
}
