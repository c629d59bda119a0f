package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Action is what happens to a request a rule matches.
type Action string

// The actions a rule may take.
const (
	// ActionAllow lets the request through.
	ActionAllow Action = "Allow"
	// ActionDeny refuses the request with the rule's reason.
	ActionDeny Action = "Deny"
	// ActionRequireApproval holds the request until enough approvers agree,
	// and refuses it when the timeout passes first.
	ActionRequireApproval Action = "RequireApproval"
)

// RecordLevel is how much of a request the sidecar records.
type RecordLevel string

// The record levels.
const (
	// RecordFull records metadata and bodies (after masking).
	RecordFull RecordLevel = "Full"
	// RecordMetadataOnly records who, where and what (method, path, verb,
	// statement kind) but no bodies.
	RecordMetadataOnly RecordLevel = "MetadataOnly"
	// RecordNone records nothing beyond the policy decision itself.
	RecordNone RecordLevel = "None"
)

// FailureMode says what the sidecar does when it cannot guarantee that a
// session is recorded (the spool is full, or the recorder is broken).
type FailureMode string

// The failure modes.
const (
	// FailClosed refuses traffic that cannot be recorded.
	FailClosed FailureMode = "FailClosed"
	// FailOpen lets traffic through unrecorded and says so in the log.
	FailOpen FailureMode = "FailOpen"
)

// Defaults applied by Default (and by the API server, from the CRD schema).
const (
	DefaultAction            = ActionAllow
	DefaultRecord            = RecordFull
	DefaultOnRecorderFailure = FailClosed
	DefaultMinApprovals      = int32(1)
)

// DefaultApprovalTimeout is how long a held request waits for approvers
// when the rule names no timeout.
var DefaultApprovalTimeout = metav1.Duration{Duration: 5 * 60 * 1e9}

// SessionPolicy decides, for the agent pods its selector chooses, which
// requests are allowed, denied or held for approval, and how much of them is
// recorded.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=sespol,categories=chaperone
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Default",type=string,JSONPath=`.spec.defaultAction`
// +kubebuilder:printcolumn:name="Recorder failure",type=string,JSONPath=`.spec.onRecorderFailure`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SessionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy itself.
	Spec SessionPolicySpec `json:"spec"`

	// Status is written by chaperone-server in a cluster: whether the
	// policy compiled and is distributed. Files and bundles leave it empty.
	// +optional
	Status SessionPolicyStatus `json:"status,omitempty"`
}

// The condition chaperone-server keeps on each SessionPolicy, and its
// reasons.
const (
	// ConditionReady is True when the policy is part of the distributed
	// set, False when it is not (see the reason).
	ConditionReady = "Ready"
	// ReasonDistributed: the policy compiled and is in the set sidecars
	// decide with (Status.SetHash).
	ReasonDistributed = "Distributed"
	// ReasonCompileError: the policy does not compile; the message names
	// the rule and the CEL error. The last good set stays distributed.
	ReasonCompileError = "CompileError"
	// ReasonNotDistributed: the policy compiles, but another policy does
	// not, so this version of it is not distributed yet.
	ReasonNotDistributed = "NotDistributed"
)

// SessionPolicyStatus is the observed state of a SessionPolicy.
type SessionPolicyStatus struct {
	// Conditions hold the Ready condition (reasons Distributed,
	// CompileError, NotDistributed).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// SetHash is the hash of the distributed policy set that holds this
	// version of the policy (what decisions cite), when Ready is True.
	// +optional
	SetHash string `json:"setHash,omitempty"`
}

// SessionPolicyList is a list of SessionPolicy objects.
//
// +kubebuilder:object:root=true
type SessionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the policies.
	Items []SessionPolicy `json:"items"`
}

// SessionPolicySpec is the body of a SessionPolicy.
type SessionPolicySpec struct {
	// Selector chooses the agent sessions the policy applies to. An empty
	// selector chooses every session.
	// +optional
	Selector Selector `json:"selector,omitempty"`

	// Rules are tried in order; the first whose match is true decides. When
	// several policies select a session, their rules are tried in policy name
	// order, then rule order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Rules []Rule `json:"rules,omitempty"`

	// DefaultAction applies when no rule matches.
	// +optional
	// +kubebuilder:default=Allow
	// +kubebuilder:validation:Enum=Allow;Deny
	DefaultAction Action `json:"defaultAction,omitempty"`

	// DefaultRecord is the record level when no rule matches, and for
	// matching rules that name none.
	// +optional
	// +kubebuilder:default=Full
	// +kubebuilder:validation:Enum=Full;MetadataOnly;None
	DefaultRecord RecordLevel `json:"defaultRecord,omitempty"`

	// MaskResponses masks secrets in text responses on their way to the
	// agent too, not only in what is recorded: a completion that carries
	// a key is delivered masked. Server-sent events are masked as they
	// stream.
	// +optional
	MaskResponses bool `json:"maskResponses,omitempty"`

	// OnRecorderFailure says whether traffic that cannot be recorded is
	// refused (FailClosed) or let through (FailOpen).
	// +optional
	// +kubebuilder:default=FailClosed
	// +kubebuilder:validation:Enum=FailClosed;FailOpen
	OnRecorderFailure FailureMode `json:"onRecorderFailure,omitempty"`
}

// Selector chooses sessions by the agent's identity. Every non-empty part
// must match; within a list, any entry may match.
type Selector struct {
	// Namespaces the agent pod must run in.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// MatchLabels the agent pod must carry, all of them.
	// +optional
	MatchLabels map[string]string `json:"matchLabels,omitempty"`

	// ServiceAccounts the agent pod must run as: "name" (in any selected
	// namespace) or "namespace/name".
	// +optional
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// Rule is one ordered entry of a policy.
//
// +kubebuilder:validation:XValidation:rule="self.action == 'RequireApproval' || !has(self.approval)",message="approval applies only to action RequireApproval"
// +kubebuilder:validation:XValidation:rule="self.action != 'RequireApproval' || (has(self.approval) && has(self.approval.approverGroups) && size(self.approval.approverGroups) > 0)",message="action RequireApproval needs approval.approverGroups"
type Rule struct {
	// Name identifies the rule in decisions and audit records; unique
	// within the policy.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Match is a CEL expression over `request` and `identity` that yields a
	// bool, for example `request.k8s.verb == "delete"`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Match string `json:"match"`

	// Action is what happens to a matching request.
	// +kubebuilder:validation:Enum=Allow;Deny;RequireApproval
	Action Action `json:"action"`

	// Reason is shown to the agent when it is refused or held, and recorded.
	// +optional
	Reason string `json:"reason,omitempty"`

	// Approval says who may approve a held request, for RequireApproval.
	// +optional
	Approval *Approval `json:"approval,omitempty"`

	// Record overrides the policy's defaultRecord for matching requests.
	// +optional
	// +kubebuilder:validation:Enum=Full;MetadataOnly;None
	Record RecordLevel `json:"record,omitempty"`

	// MaskingRuleSets name the masking rule sets applied to matching
	// requests before they are recorded.
	// +optional
	MaskingRuleSets []string `json:"maskingRuleSets,omitempty"`
}

// Approval configures how a held request is approved.
type Approval struct {
	// ApproverGroups are the groups whose members may approve. The
	// requester cannot approve its own request. Required for
	// RequireApproval.
	// +optional
	ApproverGroups []string `json:"approverGroups,omitempty"`

	// MinApprovals is how many distinct approvers must approve.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	MinApprovals int32 `json:"minApprovals,omitempty"`

	// Timeout is how long the request is held; no answer in time is a deny.
	// +optional
	// +kubebuilder:default="5m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}
