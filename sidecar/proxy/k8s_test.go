package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/sidecar/k8s"
)

// Secret values the fake API server hands out; none may be recorded.
const (
	secretB64  = "aHVudGVyMg=="
	secretText = "s3cr3t-plain"
)

func secretJSON(name string) string {
	return fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":%q,"namespace":"x"},"data":{"password":%q},"type":"Opaque"}`, name, secretB64)
}

// fakeAPIServer answers a few Kubernetes API requests over HTTP/1.1 and
// h2c.
func fakeAPIServer(t *testing.T) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/v1/namespaces/x/secrets":
			_, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, secretJSON("db"))
		case r.URL.Path == "/api/v1/namespaces/x/secrets/db":
			_, _ = io.WriteString(w, secretJSON("db"))
		case r.URL.Path == "/api/v1/namespaces/x/secrets" && r.URL.Query().Get("watch") != "":
			for _, typ := range []string{"ADDED", "MODIFIED"} {
				_, _ = fmt.Fprintf(w, "{\"type\":%q,\"object\":%s}\n", typ, secretJSON("db"))
				http.NewResponseController(w).Flush()
			}
		case r.URL.Path == "/api/v1/namespaces/x/secrets":
			// Items carry no kind; big enough to be recorded as a blob.
			var items []string
			for i := range 60 {
				items = append(items, fmt.Sprintf(`{"metadata":{"name":"s%d"},"data":{"password":%q,"token":%q}}`, i, secretB64, secretText))
			}
			_, _ = io.WriteString(w, `{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[`+strings.Join(items, ",")+`]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	})
	up := httptest.NewUnstartedServer(h)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = &p
	up.Start()
	t.Cleanup(up.Close)
	return up
}

func TestK8sRequests(t *testing.T) {
	up := fakeAPIServer(t)
	for _, proto := range []string{"http1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			rec := newMemRecorder()
			target := up.Listener.Addr().String()
			_, addr := startProxy(t, rec, target, func(o *Options) {
				kt, err := k8s.ParseTarget(target)
				if err != nil {
					t.Fatal(err)
				}
				o.KubeAPI = kt
			})
			c := proxiedClient(t, addr)
			if proto == "h2c" {
				c = h2Client(addr, nil)
			}
			base := "http://kube.test"
			do := func(method, path, body string) int {
				req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), `"kind"`) {
					t.Fatalf("%s %s: %q", method, path, b)
				}
				if strings.Contains(path, "secrets") && !strings.Contains(string(b), secretB64) {
					t.Fatalf("%s %s: the client did not get the real Secret: %q", method, path, b)
				}
				return resp.StatusCode
			}
			create := `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"` + secretB64 + `"},"stringData":{"token":"` + secretText + `"}}`
			do("POST", "/api/v1/namespaces/x/secrets", create)
			do("GET", "/api/v1/namespaces/x/secrets/db", "")
			do("GET", "/api/v1/namespaces/x/secrets", "")
			do("GET", "/api/v1/namespaces/x/secrets?watch=1", "")
			if st := do("GET", "/api/v1/namespaces/x/pods/nope", ""); st != 404 {
				t.Fatalf("status %d", st)
			}
			evs := rec.waitFor(t, "k8s.request events", func(evs []*event.Event) bool {
				return len(ofKind(evs, event.KindK8sRequest)) == 5
			})
			want := []event.K8sRequest{
				{Verb: "create", APIVersion: "v1", Resource: "secrets", Namespace: "x", Status: 201},
				{Verb: "get", APIVersion: "v1", Resource: "secrets", Namespace: "x", Name: "db", Status: 200},
				{Verb: "list", APIVersion: "v1", Resource: "secrets", Namespace: "x", Status: 200},
				{Verb: "watch", APIVersion: "v1", Resource: "secrets", Namespace: "x", Status: 200},
				{Verb: "get", APIVersion: "v1", Resource: "pods", Namespace: "x", Name: "nope", Status: 404},
			}
			for i, e := range ofKind(evs, event.KindK8sRequest) {
				got := *e.K8sRequest
				got.Stream = 0
				if got != want[i] {
					t.Errorf("k8s.request %d: %+v, want %+v", i, got, want[i])
				}
			}
			// Nothing recorded holds a Secret value; the masks are there.
			rec.mu.Lock()
			defer rec.mu.Unlock()
			var all strings.Builder
			for _, e := range rec.events {
				b, _ := json.Marshal(e)
				all.Write(b)
			}
			masked := strings.Count(all.String(), k8s.Masked)
			for ref, b := range rec.blobs {
				all.Write(b)
				if !json.Valid(b) {
					t.Errorf("blob %s is no JSON", ref)
				}
				masked += strings.Count(string(b), k8s.Masked)
			}
			if len(rec.blobs) == 0 {
				t.Error("the list was not recorded as a blob")
			}
			for _, v := range []string{secretB64, secretText} {
				if strings.Contains(all.String(), v) {
					t.Errorf("recorded secret value %q", v)
				}
			}
			// create: 2 in the request, 1 in the response; get 1; list
			// 120; watch 2.
			if masked != 126 {
				t.Errorf("%d masked values, want 126", masked)
			}
		})
	}
}

// TestK8sNotTheAPIServer records no k8s.request for other destinations,
// yet masks what is a Secret by its kind.
func TestK8sNotTheAPIServer(t *testing.T) {
	up := fakeAPIServer(t)
	rec := newMemRecorder()
	_, addr := startProxy(t, rec, up.Listener.Addr().String(), nil)
	resp, err := proxiedClient(t, addr).Get("http://other.test/api/v1/namespaces/x/secrets/db")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	evs := rec.waitFor(t, "response", func(evs []*event.Event) bool { return len(ofKind(evs, event.KindHTTPResponse)) == 1 })
	if n := len(ofKind(evs, event.KindK8sRequest)); n != 0 {
		t.Errorf("%d k8s.request events", n)
	}
	body := ofKind(evs, event.KindHTTPResponse)[0].HTTPResponse.Body
	if body == nil || strings.Contains(body.Text, secretB64) || !strings.Contains(body.Text, k8s.Masked) {
		t.Errorf("response body %+v", body)
	}
}
