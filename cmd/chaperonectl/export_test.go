package main

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/api"
	"github.com/chaperone-dev/chaperone/pkg/audit"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/store/sqlite"
)

func TestSessionsExportK8sAudit(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id := &event.Identity{User: "alice", ServiceAccount: "agent", Namespace: "team-a", Pod: "agent-1"}
	kube := &event.Destination{Addr: "10.96.0.1:443", Host: "kubernetes.default.svc", Protocol: "h2"}
	var evs []*event.Event
	for i, set := range []func(*event.Event){
		func(e *event.Event) {
			e.Kind, e.SessionStart = event.KindSessionStart, &event.SessionStart{Origin: "pod"}
		},
		func(e *event.Event) {
			e.Kind, e.ConnOpen = event.KindConnOpen, &event.ConnOpen{Client: "10.0.0.7:41000"}
		},
		func(e *event.Event) {
			e.Kind = event.KindHTTPRequest
			e.HTTPRequest = &event.HTTPRequest{Stream: 1, Proto: "HTTP/2.0", Method: "GET", URL: "https://kubernetes.default.svc/api/v1/namespaces/team-a/secrets/db",
				Headers: map[string][]string{"User-Agent": {"kubectl/v1.37.2"}}}
		},
		func(e *event.Event) {
			e.Kind = event.KindHTTPResponse
			e.HTTPResponse = &event.HTTPResponse{Stream: 1, Proto: "HTTP/2.0", Status: 200,
				Body: &event.Body{Size: 70, Recorded: 70, Text: `{"kind":"Secret","apiVersion":"v1","data":{"password":"[MASKED:k8s-secret]"}}`}}
		},
		func(e *event.Event) {
			e.Kind = event.KindK8sRequest
			e.K8sRequest = &event.K8sRequest{Stream: 1, Verb: "get", APIVersion: "v1", Resource: "secrets", Namespace: "team-a", Name: "db", Status: 200}
		},
	} {
		e := event.New("s-k8s", "", t0.Add(time.Duration(i)*time.Millisecond))
		e.Seq, e.Identity, e.Conn = uint64(i+1), id, "c1"
		if i > 0 {
			e.Dest = kube
		}
		set(e)
		evs = append(evs, e)
	}
	if _, err := st.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.New(api.Options{Store: st, Version: "test"}))
	t.Cleanup(hs.Close)

	code, out, errs := run(t, &testServer{url: hs.URL}, nil, "sessions", "export", "s-k8s", "--format", "k8s-audit")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	var a audit.Event
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil {
		t.Fatal(err)
	}
	if a.Kind != "Event" || a.APIVersion != "audit.k8s.io/v1" || a.Verb != "get" || a.AuditID != evs[4].ID ||
		a.RequestURI != "/api/v1/namespaces/team-a/secrets/db" || a.User.Username != "system:serviceaccount:team-a:agent" ||
		a.ObjectRef == nil || a.ObjectRef.Name != "db" || a.ResponseStatus == nil || a.ResponseStatus.Code != 200 ||
		a.Level != "RequestResponse" || !strings.Contains(string(a.ResponseObject), "[MASKED:k8s-secret]") ||
		strings.Join(a.SourceIPs, ",") != "10.0.0.7" || a.Annotations["chaperone.dev/session"] != "s-k8s" {
		t.Errorf("audit event %s", lines[0])
	}
}
