package v1alpha1

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every validation error; check with errors.Is.
var ErrInvalid = errors.New("invalid session policy")

// FieldError is one problem in a policy, naming the policy, the rule (if
// any) and the field.
type FieldError struct {
	Policy string
	Rule   string
	Field  string
	Msg    string
}

// Error implements error.
func (e *FieldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %q", e.Policy)
	if e.Rule != "" {
		fmt.Fprintf(&b, " rule %q", e.Rule)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Default fills the fields the CRD schema defaults, so a policy read from a
// file behaves like one read from the API server.
func (p *SessionPolicy) Default() {
	if p.APIVersion == "" {
		p.APIVersion = APIVersion
	}
	if p.Kind == "" {
		p.Kind = Kind
	}
	s := &p.Spec
	if s.DefaultAction == "" {
		s.DefaultAction = DefaultAction
	}
	if s.DefaultRecord == "" {
		s.DefaultRecord = DefaultRecord
	}
	if s.OnRecorderFailure == "" {
		s.OnRecorderFailure = DefaultOnRecorderFailure
	}
	for i := range s.Rules {
		a := s.Rules[i].Approval
		if a == nil {
			continue
		}
		if a.MinApprovals == 0 {
			a.MinApprovals = DefaultMinApprovals
		}
		if a.Timeout == nil {
			t := DefaultApprovalTimeout
			a.Timeout = &t
		}
	}
}

// Validate checks everything about a defaulted policy except its CEL
// expressions (package policy compiles those). It returns every problem
// found, joined; each is a *FieldError.
func (p *SessionPolicy) Validate() error {
	var errs []error
	add := func(rule, field, format string, args ...any) {
		errs = append(errs, &FieldError{Policy: p.Name, Rule: rule, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if p.APIVersion != APIVersion {
		add("", "apiVersion", "must be %q, not %q", APIVersion, p.APIVersion)
	}
	if p.Kind != Kind {
		add("", "kind", "must be %q, not %q", Kind, p.Kind)
	}
	if p.Name == "" {
		add("", "metadata.name", "required")
	}
	s := &p.Spec
	if s.DefaultAction != ActionAllow && s.DefaultAction != ActionDeny {
		add("", "spec.defaultAction", "must be Allow or Deny, not %q", s.DefaultAction)
	}
	if !s.DefaultRecord.valid() {
		add("", "spec.defaultRecord", "must be Full, MetadataOnly or None, not %q", s.DefaultRecord)
	}
	if s.OnRecorderFailure != FailClosed && s.OnRecorderFailure != FailOpen {
		add("", "spec.onRecorderFailure", "must be FailClosed or FailOpen, not %q", s.OnRecorderFailure)
	}
	for i, sa := range s.Selector.ServiceAccounts {
		if sa == "" || strings.Count(sa, "/") > 1 || strings.HasPrefix(sa, "/") || strings.HasSuffix(sa, "/") {
			add("", fmt.Sprintf("spec.selector.serviceAccounts[%d]", i), "must be \"name\" or \"namespace/name\", not %q", sa)
		}
	}
	seen := make(map[string]int, len(s.Rules))
	for i := range s.Rules {
		r := &s.Rules[i]
		field := func(f string) string { return fmt.Sprintf("spec.rules[%d].%s", i, f) }
		if r.Name == "" {
			add("", field("name"), "required")
		} else if j, dup := seen[r.Name]; dup {
			add(r.Name, field("name"), "duplicate of spec.rules[%d]", j)
		} else {
			seen[r.Name] = i
		}
		if strings.TrimSpace(r.Match) == "" {
			add(r.Name, field("match"), "required")
		}
		switch r.Action {
		case ActionAllow, ActionDeny:
			if r.Approval != nil {
				add(r.Name, field("approval"), "applies only to action RequireApproval")
			}
		case ActionRequireApproval:
			switch {
			case r.Approval == nil || len(r.Approval.ApproverGroups) == 0:
				add(r.Name, field("approval.approverGroups"), "required for action RequireApproval")
			case r.Approval.MinApprovals < 1:
				add(r.Name, field("approval.minApprovals"), "must be at least 1, not %d", r.Approval.MinApprovals)
			case r.Approval.Timeout != nil && r.Approval.Timeout.Duration <= 0:
				add(r.Name, field("approval.timeout"), "must be positive, not %s", r.Approval.Timeout.Duration)
			}
		case "":
			add(r.Name, field("action"), "required")
		default:
			add(r.Name, field("action"), "must be Allow, Deny or RequireApproval, not %q", r.Action)
		}
		if r.Record != "" && !r.Record.valid() {
			add(r.Name, field("record"), "must be Full, MetadataOnly or None, not %q", r.Record)
		}
		for k, m := range r.MaskingRuleSets {
			if m == "" {
				add(r.Name, field(fmt.Sprintf("maskingRuleSets[%d]", k)), "empty name")
			}
		}
	}
	return errors.Join(errs...)
}

func (r RecordLevel) valid() bool {
	return r == RecordFull || r == RecordMetadataOnly || r == RecordNone
}
