package event

import "time"

// SessionStart opens a session and states its identity and origin.
type SessionStart struct {
	// Origin is "pod" or "run".
	Origin string `json:"origin"`
	// Command is the command line of a `chaperonectl run`.
	Command []string `json:"command,omitempty"`
	// Labels are the pod's labels, for selectors and search.
	Labels map[string]string `json:"labels,omitempty"`
}

// SessionEnd closes a session.
type SessionEnd struct {
	// ExitCode is the exit status of a `chaperonectl run` command.
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// ConnOpen records a new intercepted connection.
type ConnOpen struct {
	// Client is the client's address as the sidecar saw it.
	Client string `json:"client,omitempty"`
	// Refused is set when the sidecar did not forward the connection, with
	// the reason (recording unavailable, policy, upstream unreachable…).
	Refused string `json:"refused,omitempty"`
	// TLS describes a TLS connection: what the client asked for and, once
	// the sidecar connected upstream, what was negotiated there.
	TLS *TLSInfo `json:"tls,omitempty"`
}

// ConnClose records the end of a connection.
type ConnClose struct {
	BytesUp   int64         `json:"bytes_up"`
	BytesDown int64         `json:"bytes_down"`
	Duration  time.Duration `json:"duration_ns"`
	// Error is why the connection ended abnormally, if it did.
	Error string `json:"error,omitempty"`
	// TLS holds the TLS metadata of the connection, intercepted or passed
	// through.
	TLS *TLSInfo `json:"tls,omitempty"`
}

// TLSInfo is what can be seen of a TLS connection without decrypting it,
// plus, for a connection the sidecar intercepted, what its own upstream
// handshake negotiated.
type TLSInfo struct {
	// SNI is the server name the client sent.
	SNI string `json:"sni,omitempty"`
	// ALPN lists the application protocols the client offered.
	ALPN []string `json:"alpn,omitempty"`
	// Intercepted is set when the sidecar terminated the client's TLS with
	// a leaf of its own CA and re-encrypted to the verified upstream.
	Intercepted bool `json:"intercepted,omitempty"`
	// Version, Cipher and Protocol are the upstream handshake's TLS version
	// ("TLS 1.3"), cipher suite and negotiated ALPN protocol; set only when
	// intercepted.
	Version  string `json:"version,omitempty"`
	Cipher   string `json:"cipher,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// HTTPRequest records one HTTP request.
type HTTPRequest struct {
	// Stream is the request's index on its connection (HTTP/1) or its
	// stream id (HTTP/2); it pairs the request with its response.
	Stream  uint64              `json:"stream"`
	Proto   string              `json:"proto"`
	Method  string              `json:"method"`
	URL     string              `json:"url"`
	Host    string              `json:"host,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    *Body               `json:"body,omitempty"`
	// GRPC names the called service and method of a gRPC request.
	GRPC *GRPCInfo `json:"grpc,omitempty"`
}

// HTTPResponse records the response to an HTTPRequest.
type HTTPResponse struct {
	Stream  uint64              `json:"stream"`
	Proto   string              `json:"proto"`
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    *Body               `json:"body,omitempty"`
	// Latency is from the end of the request to the response headers.
	Latency time.Duration `json:"latency_ns"`
	// Duration is from the start of the request to the end of the body.
	Duration time.Duration `json:"duration_ns"`
	// Error is set when the exchange did not complete.
	Error string `json:"error,omitempty"`
	// Trailers are the response's trailers, credential values redacted.
	Trailers map[string][]string `json:"trailers,omitempty"`
	// Streamed is set on a response recorded as it flowed (watches,
	// server-sent events, gRPC streams): a first record with Streamed
	// StreamedHeaders carries the headers and no body, the body follows as
	// stream.data events, and a last record with Streamed StreamedEnd
	// carries the trailers, timings and the body's totals (no content).
	Streamed string `json:"streamed,omitempty"`
	// GRPC holds the gRPC status and message sizes of a gRPC response.
	GRPC *GRPCInfo `json:"grpc,omitempty"`
}

// Values of HTTPResponse.Streamed.
const (
	StreamedHeaders = "headers"
	StreamedEnd     = "end"
)

// GRPCInfo is what is recorded of a gRPC call: names, status and message
// sizes, never the decoded messages.
type GRPCInfo struct {
	Service string `json:"service,omitempty"`
	Method  string `json:"method,omitempty"`
	// Status is grpc-status, when the response carried one.
	Status *int `json:"status,omitempty"`
	// Message is grpc-message, percent-decoded.
	Message string `json:"message,omitempty"`
	// Messages counts the length-prefixed messages of the body; Sizes
	// lists the lengths of the first ones.
	Messages int64   `json:"messages,omitempty"`
	Sizes    []int64 `json:"sizes,omitempty"`
}

// K8sRequest records a Kubernetes API request with audit.k8s.io/v1 fields.
type K8sRequest struct {
	Stream      uint64 `json:"stream"`
	Verb        string `json:"verb"`
	APIGroup    string `json:"api_group,omitempty"`
	APIVersion  string `json:"api_version,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	Status      int    `json:"status,omitempty"`
	// As is the identity the request was sent with, never the credential.
	As string `json:"as,omitempty"`
}

// StreamData records bytes of an exec/attach/port-forward stream.
type StreamData struct {
	// Stream names the stream inside the session (e.g. "exec-3").
	Stream string `json:"stream"`
	// Channel is "stdin", "stdout", "stderr", "resize", "exit" or "data".
	Channel string `json:"channel"`
	Data    *Body  `json:"data,omitempty"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Exit    *int   `json:"exit,omitempty"`
}

// LLMMessage is one message of a prompt or completion.
type LLMMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LLMToolCall is a tool call requested by a model or made over MCP.
type LLMToolCall struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"`
	Result    string `json:"result,omitempty"`
}

// LLMPrompt records a request to an LLM API.
type LLMPrompt struct {
	Stream   uint64       `json:"stream"`
	Provider string       `json:"provider"`
	Model    string       `json:"model,omitempty"`
	System   string       `json:"system,omitempty"`
	Messages []LLMMessage `json:"messages,omitempty"`
	Tools    []string     `json:"tools,omitempty"`
	// OmittedMessages counts the oldest messages left out to bound the
	// event's size; the whole request stays in the HTTP request's body.
	OmittedMessages int `json:"omitted_messages,omitempty"`
	// Truncated is set when text was cut to bound the event's size.
	Truncated bool `json:"truncated,omitempty"`
}

// LLMCompletion records an LLM API response.
type LLMCompletion struct {
	Stream       uint64        `json:"stream"`
	Provider     string        `json:"provider"`
	Model        string        `json:"model,omitempty"`
	Text         string        `json:"text,omitempty"`
	ToolCalls    []LLMToolCall `json:"tool_calls,omitempty"`
	CodeBlocks   []string      `json:"code_blocks,omitempty"`
	FinishReason string        `json:"finish_reason,omitempty"`
	InputTokens  int64         `json:"input_tokens,omitempty"`
	OutputTokens int64         `json:"output_tokens,omitempty"`
	Latency      time.Duration `json:"latency_ns,omitempty"`
	// Truncated is set when text was cut to bound the event's size.
	Truncated bool `json:"truncated,omitempty"`
}

// MCPTool is one tool an MCP server offers.
type MCPTool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// InputSchema is the tool's JSON Schema for its arguments, as sent.
	InputSchema string `json:"input_schema,omitempty"`
}

// MCPToolList records an MCP tools/list exchange: the tools a server
// offered to the agent.
type MCPToolList struct {
	Stream uint64 `json:"stream"`
	// Server is the MCP server's host (and path), from the request.
	Server string    `json:"server,omitempty"`
	Tools  []MCPTool `json:"tools,omitempty"`
	// Error is the JSON-RPC error message, if the call failed.
	Error string `json:"error,omitempty"`
}

// MCPToolCall records an MCP tools/call exchange: which tool the agent
// called, with which arguments, and what came back.
type MCPToolCall struct {
	Stream uint64 `json:"stream"`
	// Server is the MCP server's host (and path), from the request.
	Server string `json:"server,omitempty"`
	// ID is the JSON-RPC request id, as its JSON text.
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"`
	// Result is the text of the result's content blocks.
	Result string `json:"result,omitempty"`
	// IsError is the result's isError flag: the tool ran and failed.
	IsError bool `json:"is_error,omitempty"`
	// Error is the JSON-RPC error message, if the call itself failed.
	Error string `json:"error,omitempty"`
}

// SQLQuery records a statement sent to a database.
type SQLQuery struct {
	Stream    uint64 `json:"stream"`
	Database  string `json:"database,omitempty"`
	User      string `json:"user,omitempty"`
	Statement string `json:"statement"`
}

// SQLResult records the outcome of a SQLQuery.
type SQLResult struct {
	Stream   uint64        `json:"stream"`
	Tag      string        `json:"tag,omitempty"`
	Rows     int64         `json:"rows,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// ProcessExec records a process that started in the session.
type ProcessExec struct {
	ExecID       string   `json:"exec_id"`
	ParentExecID string   `json:"parent_exec_id,omitempty"`
	PID          int      `json:"pid"`
	Binary       string   `json:"binary"`
	Arguments    []string `json:"arguments,omitempty"`
	Cwd          string   `json:"cwd,omitempty"`
	UID          int      `json:"uid"`
}

// ProcessExit records a process that ended.
type ProcessExit struct {
	ExecID string `json:"exec_id"`
	PID    int    `json:"pid"`
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
}

// PolicyDecision records what policy decided for a request.
type PolicyDecision struct {
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Action is "Allow", "Deny" or "RequireApproval".
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Subject is the event id of the request decided on.
	Subject string `json:"subject,omitempty"`
}

// PolicyLoaded records the policy set a sidecar decides with from now on:
// at start (from its cache or the server) and on every change.
type PolicyLoaded struct {
	// Hash is the set's hash (policy.Set.Hash).
	Hash string `json:"hash"`
	// Policies names the policies that select this session, in order.
	Policies []string `json:"policies,omitempty"`
	// Source is where the set came from: "server" (the distribution
	// bucket), "session" (a set put for this session alone, as
	// `chaperonectl run --policy` does), "cache" (the copy kept next to the
	// spool, while the server is away) or "none" (no policy: allow all).
	Source string `json:"source"`
	// Error is set when a distributed set was refused (it did not decode
	// or compile); the previous set stays in force.
	Error string `json:"error,omitempty"`
}

// ApprovalRequested records a held operation waiting for people.
type ApprovalRequested struct {
	Request        string        `json:"request"`
	Rule           string        `json:"rule,omitempty"`
	Summary        string        `json:"summary"`
	ApproverGroups []string      `json:"approver_groups,omitempty"`
	MinApprovals   int           `json:"min_approvals,omitempty"`
	Timeout        time.Duration `json:"timeout_ns,omitempty"`
}

// ApprovalDecided records the answer to an ApprovalRequested.
type ApprovalDecided struct {
	Request string `json:"request"`
	// Decision is "approved", "denied" or "expired".
	Decision  string   `json:"decision"`
	Approvers []string `json:"approvers,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}
