package gate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// Refusal is the answer a refused request gets instead of its response.
type Refusal struct {
	Status      int
	ContentType string
	Body        []byte
	// Message is the one-line reason, also in Body.
	Message string
}

// refusalBody is the JSON body of a refusal of a request that is not a
// Kubernetes API request.
type refusalBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Policy  string `json:"policy,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// refusalFor builds the 403 for a request refused by d, why being what
// happened ("denied by policy", "no approval before the timeout", …): a
// metav1.Status for the Kubernetes API, so that kubectl and client-go
// print it as they print the API server's own refusals; a JSON body for
// other HTTP.
func refusalFor(in *Input, d *policy.Decision, why string) *Refusal {
	msg := message(d, why)
	if in.Kube {
		st := metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure,
			Message:  msg,
			Reason:   metav1.StatusReasonForbidden,
			Code:     http.StatusForbidden,
		}
		if k := in.Request.K8s; k.Resource != "" {
			st.Details = &metav1.StatusDetails{Name: k.Name, Group: k.APIGroup, Kind: k.Resource}
		}
		b, _ := json.Marshal(st) //nolint:errchkjson // a plain struct always encodes
		return &Refusal{Status: http.StatusForbidden, ContentType: "application/json", Body: b, Message: msg}
	}
	b, _ := json.Marshal(refusalBody{ //nolint:errchkjson // a plain struct always encodes
		Error: "forbidden", Message: msg, Policy: d.Policy, Rule: d.Rule, Reason: d.Reason,
	})
	return &Refusal{Status: http.StatusForbidden, ContentType: "application/json", Body: append(b, '\n'), Message: msg}
}

// message is the one line a refused client reads: who refused, which
// rule, and why.
func message(d *policy.Decision, why string) string {
	var b strings.Builder
	b.WriteString("chaperone: ")
	b.WriteString(why)
	if d.Rule != "" {
		rule := d.Rule
		if d.Policy != "" {
			rule = d.Policy + "/" + d.Rule
		}
		fmt.Fprintf(&b, " (rule %q)", rule)
	}
	if d.Reason != "" && !strings.Contains(why, d.Reason) {
		b.WriteString(": ")
		b.WriteString(d.Reason)
	}
	return b.String()
}
