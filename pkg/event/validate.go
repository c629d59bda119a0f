package event

import (
	"fmt"
	"reflect"
)

// payloadField maps each kind to the name of its payload field in Event.
var payloadField = map[Kind]string{
	KindSessionStart:      "SessionStart",
	KindSessionEnd:        "SessionEnd",
	KindConnOpen:          "ConnOpen",
	KindConnClose:         "ConnClose",
	KindHTTPRequest:       "HTTPRequest",
	KindHTTPResponse:      "HTTPResponse",
	KindK8sRequest:        "K8sRequest",
	KindStreamData:        "StreamData",
	KindLLMPrompt:         "LLMPrompt",
	KindLLMCompletion:     "LLMCompletion",
	KindSQLQuery:          "SQLQuery",
	KindSQLResult:         "SQLResult",
	KindProcessExec:       "ProcessExec",
	KindProcessExit:       "ProcessExit",
	KindPolicyDecision:    "PolicyDecision",
	KindPolicyLoaded:      "PolicyLoaded",
	KindApprovalRequested: "ApprovalRequested",
	KindApprovalDecided:   "ApprovalDecided",
	KindMCPToolList:       "MCPToolList",
	KindMCPToolCall:       "MCPToolCall",
}

// payloadIndex maps each kind to the index of its payload field in Event,
// resolved once so Validate, which runs on every ingested event, does no
// name lookups.
var payloadIndex = func() map[Kind]int {
	t := reflect.TypeFor[Event]()
	m := make(map[Kind]int, len(payloadField))
	for k, name := range payloadField {
		f, ok := t.FieldByName(name)
		if !ok {
			panic("event: no payload field " + name)
		}
		m[k] = f.Index[0]
	}
	return m
}()

// Kinds returns every known kind.
func Kinds() []Kind {
	out := make([]Kind, 0, len(payloadField))
	for k := range payloadField {
		out = append(out, k)
	}
	return out
}

// Validate checks the envelope and that exactly the payload of the event's
// kind is set.
func (e *Event) Validate() error {
	if e.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, e.V)
	}
	if len(e.ID) != 26 {
		return fmt.Errorf("%w: id %q is not a ULID", ErrInvalid, e.ID)
	}
	if err := ValidSession(e.Session); err != nil {
		return err
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: event %s has no time", ErrInvalid, e.ID)
	}
	want, ok := payloadIndex[e.Kind]
	if !ok {
		return fmt.Errorf("%w: unknown kind %q", ErrInvalid, e.Kind)
	}
	v := reflect.ValueOf(e).Elem()
	for k, i := range payloadIndex {
		set := !v.Field(i).IsNil()
		if i == want && !set {
			return fmt.Errorf("%w: %s event %s has no payload", ErrInvalid, e.Kind, e.ID)
		}
		if i != want && set {
			return fmt.Errorf("%w: %s event %s carries a %s payload", ErrInvalid, e.Kind, e.ID, payloadField[k])
		}
	}
	return nil
}
