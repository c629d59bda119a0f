package event

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Version is the schema version this package writes and accepts.
const Version = 1

// MaxSize is the largest encoded event accepted anywhere. Bodies larger
// than the inline limit travel as blobs (see Body), so real events stay far
// below it.
const MaxSize = 1 << 20

// Kind names what an event records.
type Kind string

// The kinds of event. Each kind has exactly one payload field in Event.
const (
	KindSessionStart      Kind = "session.start"
	KindSessionEnd        Kind = "session.end"
	KindConnOpen          Kind = "conn.open"
	KindConnClose         Kind = "conn.close"
	KindHTTPRequest       Kind = "http.request"
	KindHTTPResponse      Kind = "http.response"
	KindK8sRequest        Kind = "k8s.request"
	KindStreamData        Kind = "stream.data"
	KindLLMPrompt         Kind = "llm.prompt"
	KindLLMCompletion     Kind = "llm.completion"
	KindSQLQuery          Kind = "sql.query"
	KindSQLResult         Kind = "sql.result"
	KindProcessExec       Kind = "process.exec"
	KindProcessExit       Kind = "process.exit"
	KindPolicyDecision    Kind = "policy.decision"
	KindPolicyLoaded      Kind = "policy.loaded"
	KindApprovalRequested Kind = "approval.requested"
	KindApprovalDecided   Kind = "approval.decided"
	KindMCPToolList       Kind = "mcp.tool_list"
	KindMCPToolCall       Kind = "mcp.tool_call"
)

// Source names the component that produced an event.
type Source string

// Producers of events.
const (
	SourceSidecar Source = "sidecar"
	SourceNode    Source = "node"
	SourceServer  Source = "server"
)

// Errors returned by Decode and Validate. They are wrapped with detail;
// check them with errors.Is.
var (
	ErrTooLarge       = errors.New("event too large")
	ErrVersion        = errors.New("unsupported event version")
	ErrInvalid        = errors.New("invalid event")
	ErrInvalidSession = errors.New("invalid session id")
)

// Event is one recorded fact of a session.
type Event struct {
	// V is the schema version (Version).
	V int `json:"v"`
	// ID is a ULID: unique, and sortable by creation time. It is also the
	// Nats-Msg-Id header, so JetStream drops a re-sent copy.
	ID string `json:"id"`
	// Session is the session the event belongs to: a pod UID or the id of a
	// `chaperonectl run`.
	Session string `json:"session"`
	// Seq is the producer's per-session sequence, starting at 1.
	Seq uint64 `json:"seq"`
	// Time is when the recorded fact happened.
	Time time.Time `json:"time"`
	// Kind says which payload field is set.
	Kind Kind `json:"kind"`
	// Source is the producing component.
	Source Source `json:"source,omitempty"`
	// Identity is who acted.
	Identity *Identity `json:"identity,omitempty"`
	// Dest is where the traffic went, for traffic events.
	Dest *Destination `json:"dest,omitempty"`
	// Conn identifies the connection inside the session, for traffic events.
	Conn string `json:"conn,omitempty"`
	// Masked lists the masking rules that fired on this event's content.
	Masked []string `json:"masked,omitempty"`
	// Verdict is the policy outcome that applied to this event, if any:
	// "allow", "deny", "held", "approved", "denied".
	Verdict string `json:"verdict,omitempty"`

	SessionStart      *SessionStart      `json:"session_start,omitempty"`
	SessionEnd        *SessionEnd        `json:"session_end,omitempty"`
	ConnOpen          *ConnOpen          `json:"conn_open,omitempty"`
	ConnClose         *ConnClose         `json:"conn_close,omitempty"`
	HTTPRequest       *HTTPRequest       `json:"http_request,omitempty"`
	HTTPResponse      *HTTPResponse      `json:"http_response,omitempty"`
	K8sRequest        *K8sRequest        `json:"k8s_request,omitempty"`
	StreamData        *StreamData        `json:"stream_data,omitempty"`
	LLMPrompt         *LLMPrompt         `json:"llm_prompt,omitempty"`
	LLMCompletion     *LLMCompletion     `json:"llm_completion,omitempty"`
	SQLQuery          *SQLQuery          `json:"sql_query,omitempty"`
	SQLResult         *SQLResult         `json:"sql_result,omitempty"`
	ProcessExec       *ProcessExec       `json:"process_exec,omitempty"`
	ProcessExit       *ProcessExit       `json:"process_exit,omitempty"`
	PolicyDecision    *PolicyDecision    `json:"policy_decision,omitempty"`
	PolicyLoaded      *PolicyLoaded      `json:"policy_loaded,omitempty"`
	ApprovalRequested *ApprovalRequested `json:"approval_requested,omitempty"`
	ApprovalDecided   *ApprovalDecided   `json:"approval_decided,omitempty"`
	MCPToolList       *MCPToolList       `json:"mcp_tool_list,omitempty"`
	MCPToolCall       *MCPToolCall       `json:"mcp_tool_call,omitempty"`

	// Chain is the event's link in its session's hash chain. The server sets
	// it when the event is stored; producers leave it empty.
	Chain *Chain `json:"chain,omitempty"`

	// raw holds the bytes Decode read, when they carried no chain link: they
	// are then the event's canonical bytes as its producer wrote them, and
	// the server stores and hashes them without encoding the event again.
	raw []byte
}

// Identity says who is behind an action.
type Identity struct {
	// User is the human who created or last changed the workload (stamped by
	// the webhook from admission user info), or who ran `chaperonectl run`.
	User           string   `json:"user,omitempty"`
	Groups         []string `json:"groups,omitempty"`
	ServiceAccount string   `json:"service_account,omitempty"`
	Namespace      string   `json:"namespace,omitempty"`
	Pod            string   `json:"pod,omitempty"`
	PodUID         string   `json:"pod_uid,omitempty"`
	Node           string   `json:"node,omitempty"`
}

// Destination is the far end of a connection.
type Destination struct {
	// Addr is the original destination IP and port, "ip:port".
	Addr string `json:"addr"`
	// Host is the name the client asked for (TLS SNI or HTTP Host), if any.
	Host string `json:"host,omitempty"`
	// Protocol is what the sidecar recognised: "http1", "http2", "tls",
	// "postgres", "tcp".
	Protocol string `json:"protocol,omitempty"`
}

// Chain is an event's link in its session's hash chain:
// Hash = sha256(Prev || canonical bytes of the event without Chain).
type Chain struct {
	// Index is the event's position in its session, from 1, in store order.
	Index uint64 `json:"index"`
	// Prev is the previous event's Hash, hex; empty for the first event.
	Prev string `json:"prev,omitempty"`
	// Hash is this event's hash, hex.
	Hash string `json:"hash"`
}

// Body is a recorded message body. Small bodies are inline; larger ones are
// stored once as a blob named by Ref and fetched from the server.
type Body struct {
	// Size is how many bytes the body had on the wire, recorded or not.
	Size int64 `json:"size"`
	// Text is the inline body when it is valid UTF-8.
	Text string `json:"text,omitempty"`
	// B64 is the inline body when it is not text.
	B64 []byte `json:"b64,omitempty"`
	// Ref names the blob ("sha256:<hex>") holding the recorded bytes when
	// they were too large to inline.
	Ref string `json:"ref,omitempty"`
	// Recorded is how many bytes were kept (inline or in the blob).
	Recorded int64 `json:"recorded"`
	// Truncated is set when Recorded < Size because of the body cap.
	Truncated bool `json:"truncated,omitempty"`
}

// ValidSession reports whether id can name a session. Session ids become
// NATS subject tokens, so they are restricted to letters, digits, '-' and '_'.
func ValidSession(id string) error {
	ok := len(id) >= 1 && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("%w: %q (want 1-128 of [A-Za-z0-9_-])", ErrInvalidSession, id)
	}
	return nil
}

// NewID returns a new ULID string for an event.
func NewID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), rand.Reader).String()
}

// New returns an event of the given kind with version, id and time set.
// The caller sets the payload field that matches kind.
func New(session string, kind Kind, t time.Time) *Event {
	return &Event{V: Version, ID: NewID(t), Session: session, Time: t.UTC(), Kind: kind}
}

// Decode parses and validates one event. It refuses data over MaxSize, any
// schema version but Version, and events that fail Validate.
func Decode(data []byte) (*Event, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(data), MaxSize)
	}
	// One pass: a document of another version is decoded as far as this
	// model goes and then refused on its version, before anything trusts it.
	var e Event
	// The events of the data path, as AppendEncode writes them, take the
	// fast decoder; anything it does not take goes to encoding/json.
	if !fastDecode(data, &e) {
		e = Event{}
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if e.V != Version {
		if e.V == 0 {
			return nil, fmt.Errorf("%w: no version field", ErrVersion)
		}
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrVersion, e.V, Version)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Chain == nil {
		e.raw = data
	}
	return &e, nil
}

// Canonical returns the bytes the hash chain covers: the event's JSON
// without its Chain field. For an event that Decode read without a chain
// link, those are the bytes it read (the store keeps what the producer sent,
// byte for byte); otherwise the event is encoded, and encoding/json writes
// struct fields in declaration order and map keys sorted, so the bytes are
// stable for a given event. Callers must not change a decoded event before
// asking for its canonical bytes.
func Canonical(e *Event) ([]byte, error) {
	if e.raw != nil {
		return e.raw, nil
	}
	c := *e
	c.Chain = nil
	return Encode(&c)
}
