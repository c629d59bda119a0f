package llm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// responses decodes the OpenAI Responses API (POST …/responses).
type responses struct {
	response
	c completion
	// final is set once a response.completed (or failed/incomplete) event,
	// or a whole JSON body, gave the full output.
	final bool
}

func newResponses(provider string) *responses {
	d := &responses{c: completion{provider: provider}}
	d.onEvent = d.ResponseEvent
	return d
}

// Provider implements Decoder.
func (d *responses) Provider() string { return d.c.provider }

type responsesItem struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	// function_call
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	// function_call_output
	Output json.RawMessage `json:"output"`
}

type responsesRequest struct {
	Model        string          `json:"model"`
	Instructions string          `json:"instructions"`
	Input        json.RawMessage `json:"input"`
	Tools        []struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tools"`
}

// Request implements Decoder.
func (d *responses) Request(body []byte) (*event.LLMPrompt, error) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: responses request: %w", ErrMalformed, err)
	}
	p := &event.LLMPrompt{Provider: d.c.provider, Model: req.Model}
	system := []string{req.Instructions}
	in := req.Input
	if len(in) > 0 && in[0] == '"' {
		p.Messages = append(p.Messages, event.LLMMessage{Role: "user", Content: jsonText(in)})
	} else if len(in) > 0 && in[0] == '[' {
		var items []responsesItem
		if err := json.Unmarshal(in, &items); err != nil {
			return nil, fmt.Errorf("%w: responses input: %w", ErrMalformed, err)
		}
		for _, it := range items {
			switch it.Type {
			case "", "message":
				text := responsesContent(it.Content)
				if it.Role == "system" || it.Role == "developer" {
					system = append(system, text)
					continue
				}
				p.Messages = append(p.Messages, event.LLMMessage{Role: it.Role, Content: text})
			case "function_call", "custom_tool_call":
				p.Messages = append(p.Messages, event.LLMMessage{Role: "assistant", Content: toolUseText(it.Name, it.Arguments)})
			case "function_call_output", "custom_tool_call_output":
				p.Messages = append(p.Messages, event.LLMMessage{Role: "tool", Content: responsesContent(it.Output)})
			default:
				// reasoning, web search calls, item references: named only.
				p.Messages = append(p.Messages, event.LLMMessage{Role: "assistant", Content: "[" + it.Type + "]"})
			}
		}
	}
	p.System = joinNonEmpty("\n\n", system...)
	for _, t := range req.Tools {
		name := t.Name
		if name == "" {
			name = t.Type // built-in tools: web_search, file_search, …
		}
		p.Tools = append(p.Tools, name)
	}
	return p, nil
}

// responsesContent flattens Responses content: a string or an array of
// input_text / output_text / refusal / input_image … parts.
func responsesContent(raw json.RawMessage) string {
	return openAIContent(raw)
}

type responsesBody struct {
	Model             string          `json:"model"`
	Status            string          `json:"status"`
	Output            []responsesItem `json:"output"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Usage *struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"usage"`
}

type responsesEvent struct {
	Type        string          `json:"type"`
	OutputIndex int             `json:"output_index"`
	ItemID      string          `json:"item_id"`
	Delta       string          `json:"delta"`
	Arguments   string          `json:"arguments"`
	Item        *responsesItem  `json:"item"`
	Response    *responsesBody  `json:"response"`
	Message     string          `json:"message"`
	Code        json.RawMessage `json:"code"`
}

// ResponseEvent decodes one typed streaming event. Deltas are assembled as
// they come; the full response in response.completed, when present,
// replaces them, since it is what the model produced.
func (d *responses) ResponseEvent(ev sse.Event) error {
	var e responsesEvent
	if ok, err := eventJSON(&d.response, &d.c, ev, "responses event", &e); !ok {
		return err
	}
	if e.Type == "" {
		e.Type = ev.Event
	}
	c := &d.c
	c.decoded = true
	key := strconv.Itoa(e.OutputIndex)
	switch e.Type {
	case "response.created", "response.in_progress":
		if e.Response != nil && e.Response.Model != "" {
			c.model = e.Response.Model
		}
	case "response.output_text.delta", "response.refusal.delta":
		if !d.final {
			c.text.WriteString(e.Delta)
		}
	case "response.output_item.added", "response.output_item.done":
		if it := e.Item; it != nil && !d.final && (it.Type == "function_call" || it.Type == "custom_tool_call") {
			call := c.call(key)
			call.ID, call.Name = it.CallID, it.Name
			if it.Arguments != "" {
				call.Arguments = it.Arguments
			}
		}
	case "response.function_call_arguments.delta", "response.custom_tool_call_input.delta":
		if !d.final {
			c.call(key).Arguments += e.Delta
		}
	case "response.function_call_arguments.done":
		if !d.final {
			c.call(key).Arguments = e.Arguments
		}
	case "response.completed", "response.incomplete", "response.failed":
		if e.Response != nil {
			d.applyBody(e.Response)
		}
	case "error":
		c.errText = joinNonEmpty("\n", c.errText, "error: "+joinNonEmpty(": ", jsonText(e.Code), e.Message))
	}
	return nil
}

// applyBody takes a whole response object as the final word.
func (d *responses) applyBody(r *responsesBody) {
	c := &d.c
	c.decoded = true
	if r.Model != "" {
		c.model = r.Model
	}
	if r.Usage != nil {
		c.inputTokens, c.outputTokens = r.Usage.InputTokens, r.Usage.OutputTokens
	}
	c.finishReason = r.Status
	if r.IncompleteDetails != nil && r.IncompleteDetails.Reason != "" {
		c.finishReason = r.IncompleteDetails.Reason
	}
	if r.Error != nil {
		c.errText = "error: " + joinNonEmpty(": ", r.Error.Code, r.Error.Message)
	}
	if len(r.Output) == 0 {
		return // keep what the deltas assembled
	}
	d.final = true
	c.text.Reset()
	c.calls, c.byKey = nil, nil
	var texts []string
	for i, it := range r.Output {
		switch it.Type {
		case "message":
			texts = append(texts, responsesContent(it.Content))
		case "function_call", "custom_tool_call":
			call := c.call(strconv.Itoa(i))
			call.ID, call.Name, call.Arguments = it.CallID, it.Name, it.Arguments
		}
	}
	c.text.WriteString(strings.Join(texts, "\n"))
}

// Finish implements Decoder.
func (d *responses) Finish() (*event.LLMCompletion, error) {
	var r responsesBody
	ok, err := bodyJSON(&d.response, &d.c, "responses body", &r)
	if ok {
		d.applyBody(&r)
	}
	return d.c.done(&d.response, err)
}
