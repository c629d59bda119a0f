package kubepolicy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/chaperone-dev/chaperone/e2e/kube"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// recorder is a Publisher that compiles like the server's Distributor
// and remembers the hash of every list it accepted ("" for none).
type recorder struct {
	mu     sync.Mutex
	hashes []string
	fail   bool
	failed int
}

func (r *recorder) Publish(_ context.Context, ps []v1alpha1.SessionPolicy, origin string) error {
	if origin != Origin {
		return errors.New("wrong origin " + origin)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		r.failed++
		return errors.New("nats away")
	}
	h := ""
	if len(ps) > 0 {
		s, err := policy.Compile(ps)
		if err != nil {
			return err
		}
		h = s.Hash()
	}
	r.hashes = append(r.hashes, h)
	return nil
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hashes)
}

func (r *recorder) failures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recorder) setFail(v bool) {
	r.mu.Lock()
	r.fail = v
	r.mu.Unlock()
}

// TestWatcherAgainstAPIServer runs the watcher in process against a real
// kube-apiserver with the chart's CRD: lists are published on change and
// only on change, statuses follow, a broken object keeps the last good set,
// a failed publish is retried, deletion withdraws.
func TestWatcherAgainstAPIServer(t *testing.T) {
	c := kube.StartTest(t)
	ctx := t.Context()
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w, err := New(Options{Client: dc, Publisher: rec, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Without the CRD the server would stop at start, saying why.
	if err := w.Check(ctx); !errors.Is(err, ErrNoResource) {
		t.Fatalf("Check without the CRD: %v", err)
	}
	installCRD(t, dc)
	api := dc.Resource(Resource)
	if err := w.Check(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// No objects: the first pass withdraws.
	waitFor(t, "the empty list published", func() bool { return slices.Equal(rec.get(), []string{""}) })

	create := func(name, match string) {
		t.Helper()
		if _, err := api.Create(ctx, object(name, match), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("a", "true")
	create("b", `request.k8s.verb == "delete"`)
	var hashAB string
	waitFor(t, "a and b published", func() bool {
		h := rec.get()
		if len(h) < 2 {
			return false
		}
		hashAB = h[len(h)-1]
		return statusOf(t, api, "a").SetHash == hashAB && statusOf(t, api, "b").SetHash == hashAB && hashAB != ""
	})

	// A broken object: no publish, CompileError on it, a and b stay Ready.
	create("c", "nope(")
	waitFor(t, "c marked CompileError", func() bool {
		c := meta.FindStatusCondition(statusOf(t, api, "c").Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonCompileError
	})
	if h := rec.get(); h[len(h)-1] != hashAB {
		t.Fatalf("published after a broken object: %v", h)
	}
	if st := statusOf(t, api, "a"); st.SetHash != hashAB || meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady).Status != metav1.ConditionTrue {
		t.Fatalf("a: %+v", st)
	}

	// NATS away while c is deleted: retried until it goes through.
	rec.setFail(true)
	if err := api.Delete(ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Edit b meanwhile: the next publish must carry it.
	u, err := api.Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	rules[0].(map[string]any)["match"] = `request.k8s.verb == "patch"`
	if err := unstructured.SetNestedSlice(u.Object, rules, "spec", "rules"); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a publish refused", func() bool { return rec.failures() > 0 })
	if st := statusOf(t, api, "b"); st.SetHash != hashAB {
		t.Fatalf("b's status moved on while nothing was published: %+v", st)
	}
	rec.setFail(false)
	var hashAB2 string
	waitFor(t, "the edit published after the retry", func() bool {
		h := rec.get()
		hashAB2 = h[len(h)-1]
		return hashAB2 != hashAB && statusOf(t, api, "b").SetHash == hashAB2 && statusOf(t, api, "a").SetHash == hashAB2
	})

	// Deleting everything withdraws.
	for _, n := range []string{"a", "b"} {
		if err := api.Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "withdrawn", func() bool { h := rec.get(); return h[len(h)-1] == "" })

	// Status writes and resyncs bring more passes, but never a publish of
	// an unchanged list.
	h := rec.get()
	for i := 1; i < len(h); i++ {
		if h[i] == h[i-1] {
			t.Errorf("the same list published twice in a row: %v", h)
		}
	}
}

func object(name, match string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.Kind,
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"rules": []any{
			map[string]any{"name": "r", "match": match, "action": "Deny"},
		}},
	}}
}

func statusOf(t *testing.T, api dynamic.NamespaceableResourceInterface, name string) v1alpha1.SessionPolicyStatus {
	t.Helper()
	u, err := api.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.SessionPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		t.Fatal(err)
	}
	return p.Status
}

// installCRD creates the chart's CRD and waits until it is served.
func installCRD(t *testing.T, dc dynamic.Interface) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "charts", "chaperone", "crds", "chaperone.dev_sessionpolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd unstructured.Unstructured
	if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(&crd.Object); err != nil {
		t.Fatal(err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dc.Resource(crds).Create(t.Context(), &crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the CRD served", func() bool {
		_, err := dc.Resource(Resource).List(t.Context(), metav1.ListOptions{})
		return err == nil || !apierrors.IsNotFound(err)
	})
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
