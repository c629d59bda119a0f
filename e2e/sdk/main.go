// Command sdk drives the official OpenAI, Anthropic and MCP Go SDKs
// through a scripted exchange for the end-to-end tests, which run it
// behind a recording sidecar. It lives in a module of its own so that the
// main module does not take the SDKs as dependencies.
//
// Usage:
//
//	sdk openai BASE_URL PROMPT      chat completion, whole then streamed
//	sdk anthropic BASE_URL PROMPT   message, whole then streamed
//	sdk mcp URL                     tools/list, then tools/call read_file
//	sdk mcp-server ADDR             serve an MCP server over streamable HTTP
//
// The clients print one JSON line per call: what they sent and what the
// SDK made of the answer, for the test to compare with the recording.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// Report is one call as the client saw it.
type Report struct {
	API          string     `json:"api"`
	Stream       bool       `json:"stream"`
	Model        string     `json:"model"`
	System       string     `json:"system,omitempty"`
	User         string     `json:"user,omitempty"`
	Tools        []string   `json:"tools,omitempty"`
	Text         string     `json:"text,omitempty"`
	ToolCalls    []ToolCall `json:"tool_calls,omitempty"`
	InputTokens  int64      `json:"input_tokens,omitempty"`
	OutputTokens int64      `json:"output_tokens,omitempty"`
	Finish       string     `json:"finish,omitempty"`
}

// ToolCall is a tool call the model made, or an MCP call and its result.
type ToolCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Result    string `json:"result,omitempty"`
}

const (
	system = "You are a terse coding assistant."
	model  = "gpt-test"
	claude = "claude-sonnet-4-5"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdk:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return errors.New("usage: sdk openai|anthropic BASE_URL PROMPT | sdk mcp URL | sdk mcp-server ADDR")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	switch {
	case args[0] == "openai" && len(args) == 3:
		return runOpenAI(ctx, args[1], args[2])
	case args[0] == "anthropic" && len(args) == 3:
		return runAnthropic(ctx, args[1], args[2])
	case args[0] == "mcp":
		return runMCP(ctx, args[1])
	case args[0] == "mcp-server":
		return serveMCP(ctx, args[1])
	}
	return fmt.Errorf("unknown command %q", args)
}

func emit(r Report) error {
	return json.NewEncoder(os.Stdout).Encode(r)
}

func runOpenAI(ctx context.Context, base, prompt string) error {
	client := openai.NewClient(ooption.WithBaseURL(base), ooption.WithAPIKey("sk-test-not-a-real-key"), ooption.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{
		Model:    shared.ChatModel(model),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(prompt)},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("Weather of a city"),
			Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
	}
	base0 := Report{API: "openai", Model: model, System: system, User: prompt, Tools: []string{"get_weather"}}

	cc, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		return fmt.Errorf("openai: %w", err)
	}
	if err := emit(openAIReport(base0, false, cc)); err != nil {
		return err
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("openai stream: %w", err)
	}
	_ = stream.Close()
	return emit(openAIReport(base0, true, &acc.ChatCompletion))
}

func openAIReport(r Report, stream bool, cc *openai.ChatCompletion) Report {
	r.Stream = stream
	if len(cc.Choices) > 0 {
		c := cc.Choices[0]
		r.Text = c.Message.Content
		r.Finish = string(c.FinishReason)
		for _, tc := range c.Message.ToolCalls {
			r.ToolCalls = append(r.ToolCalls, ToolCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
	}
	r.InputTokens, r.OutputTokens = cc.Usage.PromptTokens, cc.Usage.CompletionTokens
	return r
}

func runAnthropic(ctx context.Context, base, prompt string) error {
	client := anthropic.NewClient(aoption.WithBaseURL(base), aoption.WithAPIKey("not-a-real-key"), aoption.WithMaxRetries(0))
	params := anthropic.MessageNewParams{
		Model:     anthropic.Model(claude),
		MaxTokens: 1024,
		System:    []anthropic.TextBlockParam{{Text: system}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
		Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        "get_weather",
			Description: anthropic.String("Weather of a city"),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}},
		}}},
	}
	base0 := Report{API: "anthropic", Model: claude, System: system, User: prompt, Tools: []string{"get_weather"}}
	msg, err := client.Messages.New(ctx, params)
	if err != nil {
		return fmt.Errorf("anthropic: %w", err)
	}
	if err := emit(anthropicReport(base0, false, msg)); err != nil {
		return err
	}
	stream := client.Messages.NewStreaming(ctx, params)
	var acc anthropic.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			return fmt.Errorf("anthropic accumulate: %w", err)
		}
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("anthropic stream: %w", err)
	}
	_ = stream.Close()
	return emit(anthropicReport(base0, true, &acc))
}

func anthropicReport(r Report, stream bool, m *anthropic.Message) Report {
	r.Stream = stream
	var text []string
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			text = append(text, b.Text)
		case "tool_use":
			r.ToolCalls = append(r.ToolCalls, ToolCall{Name: b.Name, Arguments: string(b.Input)})
		}
	}
	r.Text = strings.Join(text, "")
	r.Finish = string(m.StopReason)
	r.InputTokens, r.OutputTokens = m.Usage.InputTokens, m.Usage.OutputTokens
	return r
}

func runMCP(ctx context.Context, url string) error {
	client := mcp.NewClient(&mcp.Implementation{Name: "chaperone-e2e", Version: "v1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return fmt.Errorf("mcp connect: %w", err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("mcp list tools: %w", err)
	}
	r := Report{API: "mcp"}
	for _, t := range tools.Tools {
		r.Tools = append(r.Tools, t.Name)
	}
	args := map[string]any{"path": "/etc/app.env"}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: args})
	if err != nil {
		return fmt.Errorf("mcp call: %w", err)
	}
	var out []string
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			out = append(out, t.Text)
		}
	}
	a, _ := json.Marshal(args)
	r.ToolCalls = []ToolCall{{Name: "read_file", Arguments: string(a), Result: strings.Join(out, "\n")}}
	return emit(r)
}

// FileArgs are read_file's arguments.
type FileArgs struct {
	Path string `json:"path" jsonschema:"the file to read"`
}

// FileContent is the content the MCP server's read_file returns.
const FileContent = "LOG_LEVEL=debug\nREGION=eu-north-1"

func serveMCP(ctx context.Context, addr string) error {
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "v1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "read_file", Description: "read a file"}, func(_ context.Context, _ *mcp.CallToolRequest, in FileArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: FileContent}}}, nil, nil
	})
	mcp.AddTool(server, &mcp.Tool{Name: "list_dir", Description: "list a directory"}, func(_ context.Context, _ *mcp.CallToolRequest, in FileArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "app.env"}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr().String())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
