package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
)

const testPolicy = `apiVersion: chaperone.dev/v1alpha1
kind: SessionPolicy
metadata:
  name: agents
spec:
  rules:
  - name: no-secret-deletes
    match: request.k8s.resource == "secrets" && request.k8s.verb == "delete"
    action: Deny
    reason: agents may not delete secrets
  - name: hold-configmap-deletes
    match: request.k8s.resource == "configmaps" && request.k8s.verb == "delete"
    action: RequireApproval
    reason: deleting configuration needs a human
    approval:
      approverGroups: [sre]
      timeout: 30s
  - name: no-anthropic
    match: request.llm.provider == "anthropic"
    action: Deny
  - name: quiet
    match: request.http.path == "/quiet"
    action: Allow
    record: None
`

// answerAsker answers every approval request with its decision.
type answerAsker struct {
	mu       sync.Mutex
	decision string
	asked    []approvals.Request
}

func (a *answerAsker) Ask(_ context.Context, r approvals.Request) (approvals.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, r)
	return approvals.Decision{Request: r.ID, Session: r.Session, Decision: a.decision, Approvers: []string{"bob"}}, nil
}

// fakeJWT is a token shaped like a service-account JWT (unsigned: the
// sidecar only reads its subject for the record).
func fakeJWT(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"`+sub+`"}`)) + ".c2ln"
}

func TestGate(t *testing.T) {
	realToken := fakeJWT("system:serviceaccount:agents:coder")
	const placeholder = "chaperone-placeholder-token"
	var mu sync.Mutex
	var seenAuth []string
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"Status","status":"Success"}`)
	}))
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	api.Config.Protocols = &protos
	api.Start()
	t.Cleanup(api.Close)

	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(realToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := gate.NewCredentials(placeholder, tokFile, "")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(ps)
	if err != nil {
		t.Fatal(err)
	}
	asker := &answerAsker{decision: approvals.StateApproved}

	for _, proto := range []string{"http1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			mu.Lock()
			seenAuth = nil
			mu.Unlock()
			g := gate.New(gate.Options{Session: "s1", Identity: policy.Identity{Namespace: "agents"},
				Asker: asker, Credentials: creds, Requester: event.Identity{User: "alice"}})
			g.Load(set, gate.SourceServer)
			target := api.Listener.Addr().String()
			kt, err := k8s.ParseTarget(target)
			if err != nil {
				t.Fatal(err)
			}
			rec := newMemRecorder()
			_, addr := startProxy(t, rec, target, func(o *Options) { o.KubeAPI = kt; o.Gate = g })
			// A second connection target that is not the API server.
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Errorf("the non-API upstream got %s %s", r.Method, r.URL)
			}))
			t.Cleanup(other.Close)
			_, otherAddr := startProxy(t, rec, other.Listener.Addr().String(), func(o *Options) { o.KubeAPI = kt; o.Gate = g })
			c := proxiedClient(t, addr)
			if proto == "h2c" {
				c = h2Client(addr, nil)
			}
			do := func(method, path, host string) (int, []byte) {
				c := c
				if host == "example.com" {
					c = proxiedClient(t, otherAddr)
				}
				req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+host+path, nil)
				req.Header.Set("Authorization", "Bearer "+placeholder)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, b
			}
			kube := target
			if code, _ := do("GET", "/api/v1/namespaces/agents/pods", kube); code != 200 {
				t.Errorf("list pods: %d", code)
			}
			code, body := do("DELETE", "/api/v1/namespaces/agents/secrets/db", kube)
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil || code != 403 || st.Kind != "Status" || st.Reason != metav1.StatusReasonForbidden ||
				!strings.Contains(st.Message, "no-secret-deletes") || !strings.Contains(st.Message, "agents may not delete secrets") {
				t.Errorf("delete secret: %d %s", code, body)
			}
			asker.mu.Lock()
			asker.decision = approvals.StateApproved
			asker.mu.Unlock()
			if code, body := do("DELETE", "/api/v1/namespaces/agents/configmaps/cfg", kube); code != 200 {
				t.Errorf("approved delete: %d %s", code, body)
			}
			asker.mu.Lock()
			asker.decision = approvals.StateDenied
			asker.mu.Unlock()
			if code, body := do("DELETE", "/api/v1/namespaces/agents/configmaps/cfg2", kube); code != 403 || !strings.Contains(string(body), "denied by bob") {
				t.Errorf("denied delete: %d %s", code, body)
			}
			if code, body := do("POST", "/v1/messages", kube); code != 403 || !strings.Contains(string(body), "no-anthropic") {
				t.Errorf("LLM provider rule: %d %s", code, body)
			}
			if code, _ := do("GET", "/quiet", kube); code != 200 {
				t.Errorf("quiet: %d", code)
			}
			// The placeholder to any other host is refused, never forwarded.
			code, body = do("GET", "/steal", "example.com")
			if code != 403 || !strings.Contains(string(body), "placeholder") {
				t.Errorf("placeholder elsewhere: %d %s", code, body)
			}

			mu.Lock()
			want := []string{
				"GET /api/v1/namespaces/agents/pods Bearer " + realToken,
				"DELETE /api/v1/namespaces/agents/configmaps/cfg Bearer " + realToken,
				"GET /quiet Bearer " + realToken,
			}
			if strings.Join(seenAuth, "|") != strings.Join(want, "|") {
				t.Errorf("upstream saw\n%q\nwant\n%q", seenAuth, want)
			}
			mu.Unlock()

			evs := rec.waitFor(t, "k8s requests", func(evs []*event.Event) bool {
				return len(ofKind(evs, event.KindK8sRequest)) >= 4 && len(ofKind(evs, event.KindHTTPResponse)) >= 6
			})
			var decisions []string
			for _, e := range evs {
				raw, _ := event.Encode(e)
				if bytes.Contains(raw, []byte(realToken)) {
					t.Errorf("event %s carries the real token", e.Kind)
				}
				switch e.Kind {
				case event.KindPolicyDecision:
					decisions = append(decisions, e.PolicyDecision.Rule+"="+e.Verdict)
				case event.KindK8sRequest:
					if e.K8sRequest.As != "system:serviceaccount:agents:coder" {
						t.Errorf("k8s.request %s %s as %q", e.K8sRequest.Verb, e.K8sRequest.Resource, e.K8sRequest.As)
					}
				case event.KindHTTPRequest:
					if strings.Contains(e.HTTPRequest.URL, "/quiet") {
						t.Errorf("record None request recorded: %s", raw)
					}
				}
			}
			got := strings.Join(decisions, ",")
			for _, w := range []string{"no-secret-deletes=deny", "hold-configmap-deletes=held", gate.RuleCredential + "=deny", "quiet=allow"} {
				if !strings.Contains(got, w) {
					t.Errorf("decisions %s lack %s", got, w)
				}
			}
			// A decision cites the request it decided, recorded after it.
			for i, e := range evs {
				if e.Kind != event.KindPolicyDecision || e.PolicyDecision.Subject == "" || e.PolicyDecision.Rule == "quiet" {
					continue
				}
				found := false
				for _, r := range evs[i+1:] {
					if r.ID == e.PolicyDecision.Subject && r.Kind == event.KindHTTPRequest {
						found = true
					}
				}
				if !found {
					t.Errorf("decision %s cites %s, not a later http.request", e.PolicyDecision.Rule, e.PolicyDecision.Subject)
				}
			}
		})
	}
}
