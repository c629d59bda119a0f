package event

import (
	"fmt"
	"slices"
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
	if _, ok := payloadField[e.Kind]; !ok {
		return fmt.Errorf("%w: unknown kind %q", ErrInvalid, e.Kind)
	}
	var buf [4]Kind
	set := e.setPayloads(buf[:0])
	if !slices.Contains(set, e.Kind) {
		return fmt.Errorf("%w: %s event %s has no payload", ErrInvalid, e.Kind, e.ID)
	}
	for _, k := range set {
		if k != e.Kind {
			return fmt.Errorf("%w: %s event %s carries a %s payload", ErrInvalid, e.Kind, e.ID, payloadField[k])
		}
	}
	return nil
}

// setPayloads appends the kinds of the payload fields e has set. Validate
// runs on every ingested event, so this spells the fields out rather than
// walk them by reflection; TestSetPayloads keeps it in step with
// payloadField.
func (e *Event) setPayloads(out []Kind) []Kind {
	for _, p := range [...]struct {
		kind Kind
		set  bool
	}{
		{KindSessionStart, e.SessionStart != nil},
		{KindSessionEnd, e.SessionEnd != nil},
		{KindConnOpen, e.ConnOpen != nil},
		{KindConnClose, e.ConnClose != nil},
		{KindHTTPRequest, e.HTTPRequest != nil},
		{KindHTTPResponse, e.HTTPResponse != nil},
		{KindK8sRequest, e.K8sRequest != nil},
		{KindStreamData, e.StreamData != nil},
		{KindLLMPrompt, e.LLMPrompt != nil},
		{KindLLMCompletion, e.LLMCompletion != nil},
		{KindSQLQuery, e.SQLQuery != nil},
		{KindSQLResult, e.SQLResult != nil},
		{KindProcessExec, e.ProcessExec != nil},
		{KindProcessExit, e.ProcessExit != nil},
		{KindPolicyDecision, e.PolicyDecision != nil},
		{KindPolicyLoaded, e.PolicyLoaded != nil},
		{KindApprovalRequested, e.ApprovalRequested != nil},
		{KindApprovalDecided, e.ApprovalDecided != nil},
		{KindMCPToolList, e.MCPToolList != nil},
		{KindMCPToolCall, e.MCPToolCall != nil},
	} {
		if p.set {
			out = append(out, p.kind)
		}
	}
	return out
}
