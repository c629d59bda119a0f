package webhook

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		ann, ns map[string]string
		want    bool
	}{
		{nil, nil, false},
		{map[string]string{AnnotationInject: ValueEnabled}, nil, true},
		{nil, map[string]string{LabelInject: ValueEnabled}, true},
		{map[string]string{AnnotationInject: ValueDisabled}, map[string]string{LabelInject: ValueEnabled}, false},
		{map[string]string{AnnotationInject: "yes"}, nil, false},
		{nil, map[string]string{LabelInject: ValueDisabled}, false},
	} {
		if got := Selected(tc.ann, tc.ns); got != tc.want {
			t.Errorf("Selected(%v, %v) = %v, want %v", tc.ann, tc.ns, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no image": func(c *Config) { c.SidecarImage = "" },
		"no nats":  func(c *Config) { c.NATSURL = "" },
		"mode":     func(c *Config) { c.Mode = "sidecar" },
		"ports":    func(c *Config) { c.AdminPort = c.ProxyPort },
	} {
		c := testConfig()
		c.Validate()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestInjectDoesNotModifyInput: Inject works on a copy.
func TestInjectDoesNotModifyInput(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent"}}}}
	pod.Annotations = map[string]string{AnnotationInject: ValueEnabled}
	before := pod.DeepCopy()
	out, err := Inject(pod, testConfig(), Input{User: alice})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pod, before) {
		t.Fatal("input pod modified")
	}
	if !Injected(&out.Spec) {
		t.Fatal("output not injected")
	}
}

// FuzzInject feeds arbitrary pod JSON: Inject never panics, and a pod it
// injected is left unchanged by a second pass with the same user.
func FuzzInject(f *testing.F) {
	f.Add([]byte(`{"metadata":{"annotations":{"chaperone.dev/inject":"enabled"}},"spec":{"containers":[{"name":"a"}]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"chaperone.dev/inject":"enabled","traffic.chaperone.dev/exclude-outbound-ports":"1,2,,x"}},"spec":{"hostNetwork":true}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"chaperone.dev/inject":"enabled","traffic.chaperone.dev/exclude-outbound-cidrs":"10.0.0.0/8,::1"}},"spec":{"securityContext":{"runAsGroup":15137},"initContainers":[{"name":"chaperone-sidecar"}]}}`))
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","securityContext":{"capabilities":{"add":["cap_net_raw"]}}}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var pod corev1.Pod
		if json.Unmarshal(raw, &pod) != nil {
			return
		}
		in := Input{User: alice, NamespaceLabels: optedInNS}
		out, err := Inject(&pod, testConfig(), in)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("error not ErrRefused: %v", err)
			}
			return
		}
		again, err := Inject(out, testConfig(), in)
		if err != nil {
			t.Fatalf("second pass: %v", err)
		}
		if !reflect.DeepEqual(out, again) {
			t.Fatal("second pass changed the pod")
		}
	})
}
