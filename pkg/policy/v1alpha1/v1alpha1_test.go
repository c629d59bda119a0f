package v1alpha1

import (
	"errors"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestDefaultAndValidate(t *testing.T) {
	p := &SessionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: SessionPolicySpec{Rules: []Rule{
			{Name: "a", Match: "true", Action: ActionRequireApproval, Approval: &Approval{ApproverGroups: []string{"g"}}},
		}},
	}
	p.Default()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != APIVersion || p.Kind != Kind || p.Spec.DefaultAction != ActionAllow ||
		p.Spec.DefaultRecord != RecordFull || p.Spec.OnRecorderFailure != FailClosed ||
		p.Spec.Rules[0].Approval.MinApprovals != 1 || p.Spec.Rules[0].Approval.Timeout.Minutes() != 5 {
		t.Fatalf("defaults: %+v %+v", p, p.Spec.Rules[0].Approval)
	}

	c := p.DeepCopy()
	c.Spec.Rules[0].Approval.ApproverGroups[0] = "changed"
	c.Spec.Rules = append(c.Spec.Rules, Rule{Name: "a", Action: "Nope"})
	if p.Spec.Rules[0].Approval.ApproverGroups[0] != "g" {
		t.Fatal("DeepCopy shares approver groups")
	}
	err := c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v", err)
	}
	for _, want := range []string{
		`policy "p" rule "a": spec.rules[1].name: duplicate of spec.rules[0]`,
		`policy "p" rule "a": spec.rules[1].match: required`,
		`policy "p" rule "a": spec.rules[1].action: must be Allow, Deny or RequireApproval, not "Nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	gvk := GroupVersion.WithKind(Kind)
	if !s.Recognizes(gvk) {
		t.Fatalf("scheme does not recognise %v", gvk)
	}
	obj, err := s.New(gvk)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.(*SessionPolicy); !ok {
		t.Fatalf("scheme made %T", obj)
	}
}

// TestCRD checks the generated CRD against what the API promises.
func TestCRD(t *testing.T) {
	b, err := os.ReadFile("../../../charts/chaperone/crds/chaperone.dev_sessionpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Scope string `json:"scope"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name string `json:"name"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	if crd.Spec.Group != Group || crd.Spec.Names.Kind != Kind || len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != Version {
		t.Fatalf("crd = %+v", crd.Spec)
	}
	for _, want := range []string{"- RequireApproval", "- MetadataOnly", "- FailOpen", "default: 5m", "approval applies only to action RequireApproval"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("crd lacks %q", want)
		}
	}
}
