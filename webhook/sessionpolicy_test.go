package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

func policyRequest(op admissionv1.Operation, raw string) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "req-1",
		Kind:      metav1.GroupVersionKind{Group: v1alpha1.Group, Version: v1alpha1.Version, Kind: v1alpha1.Kind},
		Resource:  metav1.GroupVersionResource{Group: v1alpha1.Group, Version: v1alpha1.Version, Resource: "sessionpolicies"},
		Name:      "guard",
		Operation: op,
		Object:    runtime.RawExtension{Raw: []byte(raw)},
		UserInfo:  alice,
	}}
}

func TestValidateSessionPolicy(t *testing.T) {
	const head = `{"apiVersion":"chaperone.dev/v1alpha1","kind":"SessionPolicy","metadata":{"name":"guard"},"spec":{"rules":[`
	cases := []struct {
		name    string
		op      admissionv1.Operation
		rules   string
		result  string
		allowed bool
		want    []string
	}{
		{name: "compiles", op: admissionv1.Create, rules: `{"name":"no-delete","match":"request.k8s.verb == 'delete'","action":"Deny"}`,
			result: "allowed", allowed: true},
		{name: "update compiles", op: admissionv1.Update, rules: `{"name":"any","match":"true","action":"Allow"}`,
			result: "allowed", allowed: true},
		{name: "syntax error", op: admissionv1.Create, rules: `{"name":"ok","match":"true","action":"Allow"},{"name":"broken","match":"request.k8s.verb ==","action":"Deny"}`,
			result: "denied", want: []string{`policy "guard" rule "broken"`, "spec.rules[1].match", "Syntax error"}},
		{name: "unknown field", op: admissionv1.Update, rules: `{"name":"typo","match":"request.k8s.verbb == 'get'","action":"Deny"}`,
			result: "denied", want: []string{`rule "typo"`, "verbb"}},
		{name: "not a bool", op: admissionv1.Create, rules: `{"name":"str","match":"request.k8s.verb","action":"Deny"}`,
			result: "denied", want: []string{`rule "str"`, "bool"}},
		{name: "delete skipped", op: admissionv1.Delete, rules: `{"name":"broken","match":"((","action":"Deny"}`,
			result: "skipped", allowed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, result := ValidateSessionPolicy(policyRequest(c.op, head+c.rules+`]}}`))
			if result != c.result || resp.Allowed != c.allowed {
				t.Fatalf("result %q allowed %v, want %q %v: %+v", result, resp.Allowed, c.result, c.allowed, resp.Result)
			}
			if c.allowed {
				return
			}
			if resp.Result.Code != http.StatusForbidden {
				t.Errorf("code %d, want 403", resp.Result.Code)
			}
			for _, w := range c.want {
				if !strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q lacks %q", resp.Result.Message, w)
				}
			}
		})
	}
}

func TestValidateSessionPolicyBadInput(t *testing.T) {
	resp, result := ValidateSessionPolicy(policyRequest(admissionv1.Create, `{"spec":`))
	if result != "error" || resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("truncated object: %q %+v", result, resp.Result)
	}
	// A thousand broken rules: refused with a bounded message.
	var b strings.Builder
	b.WriteString(`{"metadata":{"name":"big"},"spec":{"rules":[`)
	for i := range 1000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name":"r` + strings.Repeat("x", 20) + string(rune('a'+i%26)) + `-` + strconv.Itoa(i) + `","match":"nope(","action":"Deny"}`)
	}
	b.WriteString(`]}}`)
	resp, result = ValidateSessionPolicy(policyRequest(admissionv1.Create, b.String()))
	if result != "denied" || len(resp.Result.Message) > maxDenyMessage+32 || !strings.HasSuffix(resp.Result.Message, "(truncated)") {
		t.Fatalf("big policy: %q, message of %d bytes", result, len(resp.Result.Message))
	}
}
