package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// session builds a recorded session with a few API server requests.
func session() ([]*event.Event, map[string][]byte) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	id := &event.Identity{User: "alice@example.com", Groups: []string{"dev"}, ServiceAccount: "agent", Namespace: "team-a", Pod: "agent-0", PodUID: "pod-uid-1"}
	var evs []*event.Event
	seq := 0
	add := func(kind event.Kind, dt time.Duration, conn string, set func(*event.Event)) {
		seq++
		e := event.New("pod-uid-1", kind, t0.Add(dt))
		e.ID = fmt.Sprintf("01JDQ8ZR00000000000000%04d", seq) // fixed: golden output
		e.Seq = uint64(seq)
		e.Identity = id
		e.Conn = conn
		e.Dest = &event.Destination{Addr: "10.96.0.1:443", Host: "kubernetes.default.svc", Protocol: "h2"}
		set(e)
		evs = append(evs, e)
	}
	secretList := []byte(`{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"db"},"data":{"password":"[MASKED:k8s-secret]"}}]}`)
	blobs := map[string][]byte{"sha256:list": secretList}
	ua := map[string][]string{"User-Agent": {"kubectl/v1.37.2 (linux/amd64) kubernetes/abc"}, "Authorization": {"[REDACTED]"}}

	add(event.KindConnOpen, 0, "c1", func(e *event.Event) { e.ConnOpen = &event.ConnOpen{Client: "10.0.0.7:40000"} })
	// create a Secret (its values masked when recorded)
	add(event.KindHTTPRequest, time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 1, Proto: "HTTP/2.0", Method: "POST", URL: "https://kubernetes.default.svc/api/v1/namespaces/team-a/secrets?fieldManager=kubectl-create", Headers: ua,
			Body: &event.Body{Size: 90, Recorded: 90, Text: `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"stringData":{"password":"[MASKED:k8s-secret]"}}`}}
	})
	add(event.KindHTTPResponse, 5*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 1, Proto: "HTTP/2.0", Status: 201, Duration: 6 * time.Millisecond,
			Body: &event.Body{Size: 100, Recorded: 100, Text: `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"team-a"},"data":{"password":"[MASKED:k8s-secret]"}}`}}
	})
	add(event.KindK8sRequest, time.Millisecond, "c1", func(e *event.Event) {
		e.K8sRequest = &event.K8sRequest{Stream: 1, Verb: "create", APIVersion: "v1", Resource: "secrets", Namespace: "team-a", Status: 201}
	})
	// list, the response a blob
	add(event.KindHTTPRequest, 10*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 3, Proto: "HTTP/2.0", Method: "GET", URL: "https://kubernetes.default.svc/api/v1/namespaces/team-a/secrets?limit=500", Headers: ua}
	})
	add(event.KindHTTPResponse, 12*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 3, Proto: "HTTP/2.0", Status: 200, Duration: 3 * time.Millisecond,
			Body: &event.Body{Size: int64(len(secretList)), Recorded: int64(len(secretList)), Ref: "sha256:list"}}
	})
	add(event.KindK8sRequest, 10*time.Millisecond, "c1", func(e *event.Event) {
		e.K8sRequest = &event.K8sRequest{Stream: 3, Verb: "list", APIVersion: "v1", Resource: "secrets", Namespace: "team-a", Status: 200}
	})
	// a watch: streamed, no response object
	add(event.KindHTTPRequest, 20*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 5, Proto: "HTTP/2.0", Method: "GET", URL: "https://kubernetes.default.svc/apis/apps/v1/namespaces/team-a/deployments?watch=true", Headers: ua}
	})
	add(event.KindHTTPResponse, 21*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 5, Proto: "HTTP/2.0", Status: 200, Streamed: event.StreamedHeaders}
	})
	add(event.KindK8sRequest, 20*time.Millisecond, "c1", func(e *event.Event) {
		e.K8sRequest = &event.K8sRequest{Stream: 5, Verb: "watch", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Namespace: "team-a", Status: 200}
	})
	// exec, impersonating, refused
	add(event.KindHTTPRequest, 30*time.Millisecond, "c1", func(e *event.Event) {
		h := map[string][]string{"User-Agent": {"kubectl/v1.37.2"}, "Impersonate-User": {"bob"}, "Impersonate-Group": {"ops"}}
		e.HTTPRequest = &event.HTTPRequest{Stream: 7, Proto: "HTTP/2.0", Method: "POST", URL: "https://kubernetes.default.svc/api/v1/namespaces/team-a/pods/web-0/exec?command=sh&stdin=true", Headers: h}
	})
	add(event.KindHTTPResponse, 31*time.Millisecond, "c1", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 7, Proto: "HTTP/2.0", Status: 403, Duration: time.Millisecond,
			Body: &event.Body{Size: 120, Recorded: 120, Text: `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web-0\" is forbidden","reason":"Forbidden","code":403}`}}
	})
	add(event.KindK8sRequest, 30*time.Millisecond, "c1", func(e *event.Event) {
		e.Verdict = "allow"
		e.K8sRequest = &event.K8sRequest{Stream: 7, Verb: "create", APIVersion: "v1", Resource: "pods", Subresource: "exec", Namespace: "team-a", Name: "web-0", Status: 403}
	})
	// a non-resource request on a second, HTTP/1 connection
	add(event.KindConnOpen, 40*time.Millisecond, "c2", func(e *event.Event) { e.ConnOpen = &event.ConnOpen{Client: "[fd00::7]:40001"} })
	add(event.KindHTTPRequest, 41*time.Millisecond, "c2", func(e *event.Event) {
		e.HTTPRequest = &event.HTTPRequest{Stream: 1, Proto: "HTTP/1.1", Method: "GET", URL: "/version?timeout=32s", Headers: ua}
	})
	add(event.KindHTTPResponse, 42*time.Millisecond, "c2", func(e *event.Event) {
		e.HTTPResponse = &event.HTTPResponse{Stream: 1, Proto: "HTTP/1.1", Status: 200, Body: &event.Body{Size: 20, Recorded: 20, Text: `{"major":"1"}`}}
	})
	add(event.KindK8sRequest, 41*time.Millisecond, "c2", func(e *event.Event) {
		e.K8sRequest = &event.K8sRequest{Stream: 1, Verb: "get", Status: 200}
	})
	add(event.KindConnClose, 50*time.Millisecond, "c2", func(e *event.Event) { e.ConnClose = &event.ConnClose{} })
	return evs, blobs
}

func TestGolden(t *testing.T) {
	evs, blobs := session()
	c := New(func(_ context.Context, ref string) ([]byte, error) {
		b, ok := blobs[ref]
		if !ok {
			return nil, errors.New("no blob " + ref)
		}
		return b, nil
	})
	var out bytes.Buffer
	n := 0
	for _, e := range evs {
		a, err := c.Add(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		if a == nil {
			continue
		}
		n++
		if err := WriteLine(&out, a); err != nil {
			t.Fatal(err)
		}
	}
	if n != 5 {
		t.Fatalf("%d audit events, want 5", n)
	}
	golden := filepath.Join("testdata", "session.audit.jsonl")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("output differs from %s (go test -update to accept):\n%s", golden, out.Bytes())
	}
	// Every line is an audit Event that reads back.
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var a Event
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatal(err)
		}
		if a.Kind != Kind || a.APIVersion != APIVersion || a.Stage != StageResponseComplete || a.AuditID == "" || a.Annotations[AnnotationSession] != "pod-uid-1" {
			t.Errorf("event %s", line)
		}
	}
}

// TestWithoutBlobs converts offline: blob bodies are left out.
func TestWithoutBlobs(t *testing.T) {
	evs, _ := session()
	c := New(nil)
	for _, e := range evs {
		a, err := c.Add(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		if a != nil && a.Verb == "list" && (a.ResponseObject != nil || a.Level != LevelMetadata) {
			t.Errorf("list without blobs: %+v", a)
		}
	}
}
