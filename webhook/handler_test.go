package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	gomodjsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden testdata/*.patch.json files")

func testConfig() Config {
	return Config{
		SidecarImage:  "ghcr.io/chaperone-dev/chaperone-sidecar:test",
		NATSURL:       "nats://chaperone-nats.chaperone.svc:4222",
		TokenAudience: "chaperone",
	}
}

var (
	alice      = authenticationv1.UserInfo{Username: "alice", UID: "u-1", Groups: []string{"dev", "system:authenticated"}}
	rsCtl      = authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", Groups: []string{"system:serviceaccounts"}}
	depCtl     = authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:deployment-controller", Groups: []string{"system:serviceaccounts"}}
	optedInNS  = map[string]string{LabelInject: ValueEnabled}
	plainNS    = map[string]string{"kubernetes.io/metadata.name": "agents"}
	goldenCase = []struct {
		name    string
		ns      map[string]string
		user    authenticationv1.UserInfo
		mode    SidecarMode
		allowed bool
	}{
		{name: "annotation", ns: plainNS, user: alice, allowed: true},
		{name: "namespace-label", ns: optedInNS, user: alice, allowed: true},
		{name: "opt-out", ns: optedInNS, user: alice, allowed: true},
		{name: "not-selected", ns: plainNS, user: alice, allowed: true},
		{name: "already-injected", ns: plainNS, user: alice, allowed: true},
		{name: "host-network", ns: plainNS, user: alice},
		{name: "uid-clash", ns: plainNS, user: alice},
		{name: "net-admin", ns: plainNS, user: alice},
		{name: "setuid", ns: plainNS, user: alice},
		{name: "privilege-escalation", ns: plainNS, user: alice},
		{name: "confined", ns: plainNS, user: alice, allowed: true},
		{name: "bad-exclusion", ns: plainNS, user: alice},
		{name: "classic", ns: plainNS, user: alice, mode: ModeClassic, allowed: true},
		{name: "exclusions", ns: plainNS, user: alice, allowed: true},
		{name: "requested-by-overwrite", ns: plainNS, user: alice, allowed: true},
		{name: "controller-pod", ns: plainNS, user: rsCtl, allowed: true},
		{name: "deployment", ns: plainNS, user: alice, allowed: true},
		{name: "controller-update", ns: plainNS, user: depCtl, allowed: true},
		{name: "cronjob", ns: plainNS, user: alice, allowed: true},
	}
)

// golden is what a <case>.patch.json holds: the verdict and the patch, its
// operations sorted by path (the patch generator's order follows map
// iteration).
type golden struct {
	Allowed bool              `json:"allowed"`
	Message string            `json:"message,omitempty"`
	Patch   []json.RawMessage `json:"patch"`
}

// request builds the raw admission request for the object in a YAML file.
func request(t testing.TB, file string, user authenticationv1.UserInfo, op admissionv1.Operation) admission.Request {
	t.Helper()
	y, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return rawRequest(t, normalize(t, raw), user, op)
}

// normalize round-trips raw through its typed object, as the API server
// serializes it (resources: {}, status: {}), so that the golden patches hold
// only the webhook's changes.
func normalize(t testing.TB, raw []byte) []byte {
	t.Helper()
	var tm metav1.TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		t.Fatal(err)
	}
	obj, err := scheme.Scheme.New(tm.GroupVersionKind())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rawRequest(t testing.TB, raw []byte, user authenticationv1.UserInfo, op admissionv1.Operation) admission.Request {
	t.Helper()
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	gv, err := runtimeGroupVersion(obj.APIVersion)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("req-" + obj.Name),
		Kind:      metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: obj.Kind},
		Resource:  metav1.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: strings.ToLower(obj.Kind) + "s"},
		Name:      obj.Name,
		Namespace: obj.Namespace,
		Operation: op,
		UserInfo:  user,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func runtimeGroupVersion(apiVersion string) (schema.GroupVersion, error) {
	return schema.ParseGroupVersion(apiVersion)
}

func newTestHandler(t testing.TB, mode SidecarMode, ns map[string]string) *Handler {
	t.Helper()
	cfg := testConfig()
	cfg.Mode = mode
	h, err := NewHandler(cfg, HandlerOptions{
		Namespaces: NamespaceLabelerFunc(func(context.Context, string) (map[string]string, error) { return ns, nil }),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sortedPatch(t testing.TB, resp admission.Response) []json.RawMessage {
	t.Helper()
	ops := slices.Clone(resp.Patches)
	slices.SortStableFunc(ops, func(a, b jsonpatchOp) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Operation, b.Operation))
	})
	out := []json.RawMessage{}
	for _, op := range ops {
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCase {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.mode, tc.ns)
			req := request(t, filepath.Join("testdata", tc.name+".pod.yaml"), tc.user, admissionv1.Create)
			resp := h.Handle(t.Context(), req)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tc.allowed, resp.Result)
			}
			got := golden{Allowed: resp.Allowed, Patch: sortedPatch(t, resp)}
			if !resp.Allowed {
				got.Message = resp.Result.Message
			}
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			file := filepath.Join("testdata", tc.name+".patch.json")
			if *update {
				if err := os.WriteFile(file, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./webhook -update)", err)
			}
			if !bytes.Equal(gotJSON, want) {
				t.Errorf("patch differs from %s (go test ./webhook -update):\n got: %s\nwant: %s", file, gotJSON, want)
			}
			if len(resp.Patches) == 0 {
				return
			}
			// The unsorted patch applies, and admitting the result again
			// (the API server's reinvocation, or an update) changes nothing.
			mutated := applyPatch(t, req.Object.Raw, resp)
			again := h.Handle(t.Context(), rawRequest(t, mutated, tc.user, admissionv1.Update))
			if !again.Allowed || len(again.Patches) != 0 {
				t.Errorf("second admission: allowed=%v patches=%v", again.Allowed, again.Patches)
			}
		})
	}
}

func applyPatch(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	return out
}

type jsonpatchOp = gomodjsonpatch.Operation

// FuzzHandle feeds arbitrary objects of each handled kind to the handler:
// it never panics, and any patch it returns applies to the object.
func FuzzHandle(f *testing.F) {
	f.Add("Pod", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"chaperone.dev/inject":"enabled"}},"spec":{"containers":[{"name":"a"}]}}`))
	f.Add("Deployment", []byte(`{"spec":{"template":{"metadata":{"annotations":{"chaperone.dev/inject":"enabled"}}}}}`))
	f.Add("CronJob", []byte(`{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"annotations":{"chaperone.dev/inject":"enabled","chaperone.dev/requested-by":"x"}}}}}}}`))
	f.Add("Pod", []byte(`{"spec":{"volumes":[{"name":"kube-api-access-1"}],"containers":[{"name":"a","volumeMounts":[{"name":"kube-api-access-1","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount/"}]}]}}`))
	f.Add("Pod", []byte(`not json`))
	groups := map[string]string{"Pod": "", "Deployment": "apps", "StatefulSet": "apps", "ReplicaSet": "apps", "DaemonSet": "apps", "Job": "batch", "CronJob": "batch"}
	h := newTestHandler(f, ModeNative, optedInNS)
	f.Fuzz(func(t *testing.T, kind string, raw []byte) {
		group, ok := groups[kind]
		if !ok {
			return
		}
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "fuzz", Kind: metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
			Namespace: "agents", Operation: admissionv1.Create, UserInfo: alice,
			Object: runtime.RawExtension{Raw: raw},
		}}
		resp := h.Handle(t.Context(), req)
		if resp.Allowed && len(resp.Patches) > 0 {
			applyPatch(t, raw, resp)
		}
	})
}
