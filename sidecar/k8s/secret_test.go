package k8s

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestMaskSecrets(t *testing.T) {
	const m = `"` + Masked + `"`
	tests := []struct {
		name   string
		secret bool
		in     string
		want   string
	}{
		{
			name:   "create with data and stringData",
			secret: true,
			in:     `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"x"},"data":{"password":"aHVudGVyMg=="},"stringData":{"token":"s3cr3t"},"type":"Opaque"}`,
			want:   `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"x"},"data":{"password":` + m + `},"stringData":{"token":` + m + `},"type":"Opaque"}`,
		},
		{
			name: "get response, kind found without the URL",
			in:   `{"apiVersion":"v1","data":{"a":"YQ==","b":"Yg=="},"kind":"Secret","metadata":{"name":"db"},"type":"Opaque"}`,
			want: `{"apiVersion":"v1","data":{"a":` + m + `,"b":` + m + `},"kind":"Secret","metadata":{"name":"db"},"type":"Opaque"}`,
		},
		{
			name:   "list: items carry no kind",
			secret: true,
			in:     `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a"},"data":{"k":"dg=="}},{"metadata":{"name":"b"},"data":null}]}`,
			want:   `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a"},"data":{"k":` + m + `}},{"metadata":{"name":"b"},"data":null}]}`,
		},
		{
			name:   "watch events, one per line",
			secret: true,
			in:     "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"dg==\"}}}\n{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":\"dzI=\"}}}\n",
			want:   "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":" + m + "}}}\n{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"},\"data\":{\"k\":" + m + "}}}\n",
		},
		{
			name:   "watch event cut short",
			secret: true,
			in:     "{\"type\":\"ADDED\",\"object\":{\"data\":{\"k\":\"dg==\"}}}\n{\"type\":\"MODIFIED\",\"object\":{\"data\":{\"k\":\"dz",
			want:   "{\"type\":\"ADDED\",\"object\":{\"data\":{\"k\":" + m + "}}}\n" + Masked,
		},
		{
			name: "secret inside a generic list",
			in:   `{"kind":"List","items":[{"kind":"ConfigMap","data":{"k":"visible"}},{"kind":"Secret","data":{"k":"aGlkZGVu"}}]}`,
			want: `{"kind":"List","items":[{"kind":"ConfigMap","data":{"k":"visible"}},{"kind":"Secret","data":{"k":` + m + `}}]}`,
		},
		{
			name: "config map untouched",
			in:   `{"kind":"ConfigMap","data":{"k":"visible"}}`,
			want: `{"kind":"ConfigMap","data":{"k":"visible"}}`,
		},
		{
			name:   "merge patch",
			secret: true,
			in:     `{"data":{"k":"bmV3"}}`,
			want:   `{"data":{"k":` + m + `}}`,
		},
		{
			name:   "json patch",
			secret: true,
			in:     `[{"op":"replace","path":"/data/k","value":"bmV3"},{"op":"add","path":"/metadata/labels/a","value":"b"},{"op":"remove","path":"/data/old"}]`,
			want:   `[{"op":"replace","path":"/data/k","value":` + m + `},{"op":"add","path":"/metadata/labels/a","value":"b"},{"op":"remove","path":"/data/old"}]`,
		},
		{
			name:   "last applied configuration",
			secret: true,
			in:     `{"kind":"Secret","metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"k\":\"dg==\"},\"kind\":\"Secret\"}\n","team":"x"}},"data":{"k":"dg=="}}`,
			want:   `{"kind":"Secret","metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"k\":\"[MASKED:k8s-secret]\"},\"kind\":\"Secret\"}\n","team":"x"}},"data":{"k":` + m + `}}`,
		},
		{
			name:   "protobuf body of a secret request",
			secret: true,
			in:     "k8s\x00\n\x0c\n\x02v1\x12\x06Secret",
			want:   Masked,
		},
		{
			name:   "yaml apply patch",
			secret: true,
			in:     "apiVersion: v1\nkind: Secret\ndata:\n  k: dg==\n",
			want:   Masked,
		},
		{
			name:   "status of a failed request",
			secret: true,
			in:     `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`,
			want:   `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`,
		},
		{
			name: "not json, not a secret request",
			in:   "hello Secret world",
			want: "hello Secret world",
		},
		{
			name: "list cut short, not a secret request",
			in:   `{"kind":"List","items":[{"kind":"Secret","data":{"k":"dg`,
			want: Masked,
		},
		{
			name: "plain text",
			in:   "hello world",
			want: "hello world",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := MaskSecrets([]byte(tt.in), tt.secret)
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if changed != (tt.in != tt.want) {
				t.Errorf("changed = %v", changed)
			}
		})
	}
}

// TestMaskSecretsIndented keeps the layout of what it does not rewrite
// and yields valid JSON for pretty-printed input.
func TestMaskSecretsIndented(t *testing.T) {
	in := "{\n  \"kind\": \"Secret\",\n  \"data\": {\n    \"k\": \"dg==\"\n  }\n}\n"
	got, changed := MaskSecrets([]byte(in), false)
	if !changed || !json.Valid(bytes.TrimSpace(got)) || strings.Contains(string(got), "dg==") {
		t.Fatalf("got %q", got)
	}
	var v struct{ Data map[string]string }
	if err := json.Unmarshal(got, &v); err != nil || v.Data["k"] != Masked {
		t.Fatalf("got %q: %v", got, err)
	}
}

func FuzzMaskSecrets(f *testing.F) {
	f.Add([]byte(`{"kind":"Secret","data":{"k":"dg=="},"stringData":{"s":"x"}}`), true)
	f.Add([]byte(`{"kind":"SecretList","items":[{"data":{"k":"dg=="}}]}`), true)
	f.Add([]byte("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"dg==\"}}}\n{\"type\":"), false)
	f.Add([]byte(`[{"op":"add","path":"/data/k","value":"x"}]`), true)
	f.Add([]byte(`{"kind":"List","items":[{"kind":"Secret","data":[1,2]}]}`), false)
	f.Add([]byte(`{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"k\":1}}"}}}`), true)
	f.Fuzz(func(t *testing.T, body []byte, secret bool) {
		out, changed := MaskSecrets(body, secret)
		if !changed && !bytes.Equal(out, body) {
			t.Fatal("unchanged but different")
		}
		// Valid JSON stays valid JSON.
		if json.Valid(body) && !json.Valid(out) {
			t.Fatalf("valid input %q gave invalid output %q", body, out)
		}
		// Masking is idempotent.
		again, _ := MaskSecrets(out, secret)
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", body, out, again)
		}
		// In a Secret request no data value survives.
		if secret && json.Valid(body) {
			checkNoData(t, out)
		}
	})
}

// checkNoData fails if a string value under a data or stringData object
// of out is anything but Masked.
func checkNoData(t *testing.T, out []byte) {
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "data" || k == "stringData" {
					if m, ok := c.(map[string]any); ok {
						for _, x := range m {
							if x != Masked {
								t.Fatalf("unmasked %s value %v in %s", k, x, out)
							}
						}
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		walk(v)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"/api/v1/namespaces/x/pods/p/exec?command=sh",
		"/api/v1/watch/namespaces/x/secrets",
		"/apis/apps/v1/deployments?fieldSelector=metadata.name%3Dweb,a%3D%5C%2Cb",
		"/api/v1/namespaces/x/status",
		"/api/v1/proxy/nodes/n/x/y",
		"https://kubernetes.default.svc/api/v1/pods?watch=true",
	} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, target string) {
		r, ok := Decode(method, target)
		if !ok {
			return
		}
		if !r.IsResource && (r.Resource != "" || r.Name != "") {
			t.Fatalf("non-resource request with a resource: %+v", r)
		}
		if r.Subresource != "" && r.Name == "" {
			t.Fatalf("subresource without a name: %+v", r)
		}
		if r.Verb == VerbList && r.Name != "" && strings.Contains(r.Name, "/") {
			t.Fatalf("name from a field selector holds a slash: %+v", r)
		}
	})
}
