package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/sse"
)

// geminiPath recognises …/models/{model}:{method} for the generateContent
// methods of the Gemini API and Vertex AI, and returns model and method.
func geminiPath(path string) (model, method string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", "", false
	}
	model, method, ok = strings.Cut(path[i+1:], ":")
	if !ok || model == "" || (method != "generateContent" && method != "streamGenerateContent") {
		return "", "", false
	}
	parent := path[:i]
	if !strings.HasSuffix(parent, "/models") && !strings.HasSuffix(parent, "/tunedModels") {
		return "", "", false
	}
	return model, method, true
}

// gemini decodes generateContent and streamGenerateContent. A stream comes
// as server-sent events with alt=sse, or else as one JSON array of
// responses, which is decoded at Finish.
type gemini struct {
	response
	c completion
}

func newGemini(provider, model string) *gemini {
	d := &gemini{c: completion{provider: provider, model: model}}
	d.onEvent = d.ResponseEvent
	return d
}

// Provider implements Decoder.
func (d *gemini) Provider() string { return d.c.provider }

type geminiPart struct {
	Text         string `json:"text"`
	Thought      bool   `json:"thought"`
	FunctionCall *struct {
		ID   string          `json:"id"`
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	} `json:"functionCall"`
	FunctionResponse *struct {
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse"`
	InlineData     json.RawMessage `json:"inlineData"`
	FileData       json.RawMessage `json:"fileData"`
	ExecutableCode *struct {
		Code string `json:"code"`
	} `json:"executableCode"`
}

type geminiContent struct {
	Role  string       `json:"role"`
	Parts []geminiPart `json:"parts"`
}

type geminiRequest struct {
	Model             string          `json:"model"`
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction"`
	Tools             []struct {
		FunctionDeclarations []struct {
			Name string `json:"name"`
		} `json:"functionDeclarations"`
		GoogleSearch          json.RawMessage `json:"googleSearch"`
		CodeExecution         json.RawMessage `json:"codeExecution"`
		URLContext            json.RawMessage `json:"urlContext"`
		GoogleSearchRetrieval json.RawMessage `json:"googleSearchRetrieval"`
	} `json:"tools"`
}

// Request implements Decoder.
func (d *gemini) Request(body []byte) (*event.LLMPrompt, error) {
	var req geminiRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: generateContent request: %w", ErrMalformed, err)
	}
	p := &event.LLMPrompt{Provider: d.c.provider, Model: d.c.model}
	if p.Model == "" {
		p.Model = strings.TrimPrefix(req.Model, "models/")
	}
	if req.SystemInstruction != nil {
		p.System = geminiText(req.SystemInstruction.Parts, true)
	}
	for _, c := range req.Contents {
		role := c.Role
		if role == "" {
			role = "user"
		}
		p.Messages = append(p.Messages, event.LLMMessage{Role: role, Content: geminiText(c.Parts, true)})
	}
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			p.Tools = append(p.Tools, f.Name)
		}
		builtin := []struct {
			name string
			raw  json.RawMessage
		}{{"googleSearch", t.GoogleSearch}, {"googleSearchRetrieval", t.GoogleSearchRetrieval},
			{"codeExecution", t.CodeExecution}, {"urlContext", t.URLContext}}
		for _, b := range builtin {
			if len(b.raw) > 0 {
				p.Tools = append(p.Tools, b.name)
			}
		}
	}
	return p, nil
}

// geminiText flattens parts. In prompts (history) function calls and
// responses are rendered as text; in completions they are tool calls.
func geminiText(parts []geminiPart, history bool) string {
	var out []string
	for _, p := range parts {
		switch {
		case p.Thought:
		case p.Text != "":
			out = append(out, p.Text)
		case p.FunctionCall != nil && history:
			out = append(out, toolUseText(p.FunctionCall.Name, jsonText(p.FunctionCall.Args)))
		case p.FunctionResponse != nil:
			out = append(out, jsonText(p.FunctionResponse.Response))
		case p.ExecutableCode != nil:
			out = append(out, "```\n"+strings.TrimSuffix(p.ExecutableCode.Code, "\n")+"\n```")
		case len(p.InlineData) > 0 || len(p.FileData) > 0:
			out = append(out, "[file]")
		}
	}
	return strings.Join(out, "\n")
}

type geminiResponse struct {
	Candidates []struct {
		Index        int           `json:"index"`
		Content      geminiContent `json:"content"`
		FinishReason string        `json:"finishReason"`
	} `json:"candidates"`
	UsageMetadata *struct {
		PromptTokenCount     int64 `json:"promptTokenCount"`
		CandidatesTokenCount int64 `json:"candidatesTokenCount"`
		ThoughtsTokenCount   int64 `json:"thoughtsTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
	Error        *struct {
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

// ResponseEvent implements Decoder.
func (d *gemini) ResponseEvent(ev sse.Event) error {
	var r geminiResponse
	ok, err := eventJSON(&d.response, &d.c, ev, "generateContent chunk", &r)
	if ok {
		d.apply(&r)
	}
	return err
}

// apply adds one response (a whole one, or a chunk of a stream: chunks
// carry text deltas, whole function calls and cumulative usage).
func (d *gemini) apply(r *geminiResponse) {
	c := &d.c
	c.decoded = true
	if r.ModelVersion != "" {
		c.model = r.ModelVersion
	}
	if u := r.UsageMetadata; u != nil {
		c.inputTokens = u.PromptTokenCount
		// Thinking tokens are billed as output.
		c.outputTokens = u.CandidatesTokenCount + u.ThoughtsTokenCount
	}
	if r.Error != nil {
		c.errText = "error: " + joinNonEmpty(": ", r.Error.Status, r.Error.Message)
	}
	for _, cand := range r.Candidates {
		if cand.Index != 0 {
			continue
		}
		if cand.FinishReason != "" {
			c.finishReason = cand.FinishReason
		}
		c.text.WriteString(geminiText(cand.Content.Parts, false))
		for _, p := range cand.Content.Parts {
			if fc := p.FunctionCall; fc != nil {
				call := c.call(strconv.Itoa(len(c.calls)))
				call.ID, call.Name, call.Arguments = fc.ID, fc.Name, jsonText(fc.Args)
			}
		}
	}
}

// Finish implements Decoder.
func (d *gemini) Finish() (*event.LLMCompletion, error) {
	body, err := d.finish()
	if len(body) > 0 {
		if d.failed() {
			d.c.errText = errorOr(string(bytes.Trim(body, "[]")))
		} else {
			var rs []geminiResponse
			var uerr error
			if body[0] == '[' {
				uerr = json.Unmarshal(body, &rs)
			} else {
				rs = make([]geminiResponse, 1)
				uerr = json.Unmarshal(body, &rs[0])
			}
			if uerr != nil {
				err = fmt.Errorf("%w: generateContent response: %w", ErrMalformed, uerr)
			} else {
				for i := range rs {
					d.apply(&rs[i])
				}
			}
		}
	}
	return d.c.done(&d.response, err)
}
