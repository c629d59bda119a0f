package api

import (
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type oaParam struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type oaOp struct {
	Parameters []oaParam                  `json:"parameters"`
	Responses  map[string]json.RawMessage `json:"responses"`
}

type oaDoc struct {
	OpenAPI    string                     `json:"openapi"`
	Paths      map[string]map[string]oaOp `json:"paths"`
	Components struct {
		Parameters map[string]oaParam `json:"parameters"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T, raw []byte) oaDoc {
	t.Helper()
	var doc oaDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	return doc
}

func (d oaDoc) params(op oaOp) []oaParam {
	var out []oaParam
	for _, p := range op.Parameters {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			p = d.Components.Parameters[name]
		}
		out = append(out, p)
	}
	return out
}

var pathParamRE = regexp.MustCompile(`\{([a-z]+)\}`)

// TestOpenAPICoversRoutes checks the served document against the mux: every
// route is documented with its path parameters, and nothing else is.
func TestOpenAPICoversRoutes(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	resp := f.get(t, "/openapi.json")
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc := loadOpenAPI(t, raw)

	registered := map[string]bool{}
	for _, rt := range f.srv.routes() {
		key := strings.ToLower(rt.method) + " " + rt.path
		registered[key] = true
		op, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.method, rt.path)
			continue
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s %s documents no responses", rt.method, rt.path)
		}
		params := doc.params(op)
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.path, -1) {
			if !slices.ContainsFunc(params, func(p oaParam) bool { return p.In == "path" && p.Name == m[1] }) {
				t.Errorf("%s %s: path parameter %s undocumented", rt.method, rt.path, m[1])
			}
		}
		if strings.HasPrefix(rt.path, "/api/") && pathParamRE.MatchString(rt.path) {
			if _, ok := op.Responses["404"]; !ok {
				t.Errorf("%s %s: 404 undocumented", rt.method, rt.path)
			}
			if _, ok := op.Responses["400"]; !ok {
				t.Errorf("%s %s: 400 undocumented", rt.method, rt.path)
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !registered[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not registered", method, path)
			}
		}
	}

	// Query parameters the handlers accept are documented.
	listed := doc.params(doc.Paths["/api/v1/sessions"]["get"])
	for _, name := range sessionQueryParams {
		if !slices.ContainsFunc(listed, func(p oaParam) bool { return p.In == "query" && p.Name == name }) {
			t.Errorf("sessions query parameter %s undocumented", name)
		}
	}
	replay := doc.params(doc.Paths["/api/v1/sessions/{id}/replay"]["get"])
	for _, want := range []oaParam{{Name: "speed", In: "query"}, {Name: "Last-Event-ID", In: "header"}} {
		if !slices.Contains(replay, want) {
			t.Errorf("replay parameter %+v undocumented", want)
		}
	}
}

// TestOpenAPIRefsResolve checks every "$ref" points at a defined component.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "$ref" {
					ref, _ := c.(string)
					if !resolves(doc, ref) {
						t.Errorf("unresolved $ref %q", ref)
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
}

func resolves(doc map[string]any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
