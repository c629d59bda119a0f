package k8s

import (
	"net/netip"
	"testing"
)

func TestDecode(t *testing.T) {
	// Cases mirror k8s.io/apiserver/pkg/endpoints/request's
	// TestGetAPIRequestInfo.
	tests := []struct {
		method, url string
		want        Request
	}{
		{"GET", "/api/v1/namespaces", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Resource: "namespaces"}},
		{"GET", "/api/v1/namespaces/other", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "namespaces", Name: "other"}},
		{"GET", "/api/v1/namespaces/other/pods", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods/foo", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"HEAD", "/api/v1/namespaces/other/pods/foo", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/pods", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods/foo/status", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "status"}},
		{"GET", "/api/v1/namespaces/other/pods?watch=true", Request{Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods?watch=1", Request{Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods?watch=false", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods?watch=0", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods?watch=true&fieldSelector=metadata.name%3Dfoo", Request{Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3D%3Dfoo", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/namespaces/other/pods?fieldSelector=metadata.name!%3Dfoo", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/other/pods?fieldSelector=spec.nodeName%3Dn1,metadata.name%3Dfoo", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3Da%2Fb", Request{Verb: "list", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"GET", "/api/v1/watch/pods", Request{Verb: "watch", APIPrefix: "api", APIVersion: "v1", Resource: "pods"}},
		{"GET", "/api/v1/watch/namespaces/other/pods/foo", Request{Verb: "watch", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/proxy/namespaces/other/pods/foo/some/path", Request{Verb: "proxy", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"GET", "/api/v1/namespaces/other/pods/foo/proxy/some/path", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "proxy"}},
		{"GET", "/api/v1/namespaces/other/pods/foo/log?follow=true", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "log"}},
		{"POST", "/api/v1/namespaces/other/pods/foo/exec?command=ls", Request{Verb: "create", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "exec"}},
		{"GET", "/api/v1/namespaces/other/pods/foo/exec?command=ls", Request{Verb: "get", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "exec"}},
		{"POST", "/api/v1/namespaces/other/pods/foo/attach", Request{Verb: "create", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "attach"}},
		{"POST", "/api/v1/namespaces/other/pods/foo/portforward", Request{Verb: "create", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo", Subresource: "portforward"}},
		{"POST", "/api/v1/namespaces/other/pods", Request{Verb: "create", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"PUT", "/api/v1/namespaces/other/pods/foo", Request{Verb: "update", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"PATCH", "/api/v1/namespaces/other/pods/foo", Request{Verb: "patch", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"DELETE", "/api/v1/namespaces/other/pods/foo", Request{Verb: "delete", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods", Name: "foo"}},
		{"DELETE", "/api/v1/namespaces/other/pods", Request{Verb: "deletecollection", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
		{"PUT", "/api/v1/namespaces/other/finalize", Request{Verb: "update", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "namespaces", Name: "other", Subresource: "finalize"}},
		{"PUT", "/api/v1/namespaces/other/status", Request{Verb: "update", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "namespaces", Name: "other", Subresource: "status"}},
		{"GET", "/apis/apps/v1/namespaces/other/deployments/web/scale", Request{Verb: "get", APIPrefix: "apis", APIGroup: "apps", APIVersion: "v1", Namespace: "other", Resource: "deployments", Name: "web", Subresource: "scale"}},
		{"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", Request{Verb: "list", APIPrefix: "apis", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1", Resource: "clusterroles"}},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Request{Verb: "create", APIPrefix: "apis", APIGroup: "authorization.k8s.io", APIVersion: "v1", Resource: "selfsubjectaccessreviews"}},
		{"MKCOL", "/api/v1/namespaces/other/pods", Request{Verb: "", APIPrefix: "api", APIVersion: "v1", Namespace: "other", Resource: "pods"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.url, func(t *testing.T) {
			got, ok := Decode(tt.method, tt.url)
			if !ok {
				t.Fatal("not decoded")
			}
			want := tt.want
			want.IsResource = true
			want.Path = got.Path
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeNonResource(t *testing.T) {
	for _, tt := range []struct{ method, url, verb string }{
		{"GET", "/healthz", "get"},
		{"GET", "/version", "get"},
		{"GET", "/api", "get"},
		{"GET", "/api/v1", "get"},
		{"GET", "/apis", "get"},
		{"GET", "/apis/apps/v1", "get"},
		{"GET", "/openapi/v3", "get"},
		{"POST", "/foo/bar/baz", "post"},
		{"GET", "https://10.96.0.1/version?timeout=32s", "get"},
	} {
		got, ok := Decode(tt.method, tt.url)
		if !ok || got.IsResource || got.Verb != tt.verb || got.Resource != "" {
			t.Errorf("Decode(%s %s) = %+v, %v; want non-resource %q", tt.method, tt.url, got, ok, tt.verb)
		}
	}
	if _, ok := Decode("GET", "::"); ok {
		t.Error("Decode of an invalid target: ok")
	}
}

func TestRequestSecret(t *testing.T) {
	for _, tt := range []struct {
		method, url string
		want        bool
	}{
		{"GET", "/api/v1/namespaces/x/secrets", true},
		{"GET", "/api/v1/secrets?watch=1", true},
		{"GET", "/api/v1/watch/namespaces/x/secrets/s", true},
		{"POST", "/api/v1/namespaces/x/secrets", true},
		{"GET", "/api/v1/namespaces/x/configmaps", false},
		{"GET", "/apis/example.com/v1/namespaces/x/secrets", false},
		{"GET", "/api/v1/namespaces/secrets", false},
	} {
		r, _ := Decode(tt.method, tt.url)
		if got := r.Secret(); got != tt.want {
			t.Errorf("%s %s: Secret() = %v, want %v", tt.method, tt.url, got, tt.want)
		}
	}
}

func TestTarget(t *testing.T) {
	tg, err := ParseTarget("10.96.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	local, err := ParseTarget("127.0.0.1:6443")
	if err != nil {
		t.Fatal(err)
	}
	named, err := ParseTarget("api.example.com:6443")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	tests := []struct {
		t    Target
		dst  string
		name string
		want bool
	}{
		{tg, "10.96.0.1:443", "", true},
		{tg, "[::ffff:10.96.0.1]:443", "", true},
		{tg, "10.96.0.1:80", "", false},
		{tg, "10.0.0.5:443", "", false},
		{tg, "10.0.0.5:443", "kubernetes.default.svc", true},
		{tg, "10.0.0.5:443", "kubernetes.default.svc.cluster.local", true},
		{tg, "10.0.0.5:443", "KUBERNETES.default.", true},
		{tg, "10.0.0.5:443", "kubernetes.default.svc:443", true},
		{tg, "10.0.0.5:8443", "kubernetes.default.svc", false},
		{tg, "10.0.0.5:443", "example.com", false},
		{local, "127.0.0.1:6443", "", true},
		{local, "127.0.0.1:6444", "", false},
		{named, "192.0.2.1:6443", "api.example.com", true},
		{named, "192.0.2.1:6443", "api.example.com:6443", true},
		{named, "192.0.2.1:443", "api.example.com", false},
		{Target{}, "10.96.0.1:443", "kubernetes.default.svc", false},
	}
	for _, tt := range tests {
		if got := tt.t.Matches(ap(tt.dst), tt.name); got != tt.want {
			t.Errorf("%v.Matches(%s, %q) = %v, want %v", tt.t, tt.dst, tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"10.96.0.1", ":443", "host:"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q): no error", bad)
		}
	}
	env := map[string]string{EnvServiceHost: "fd00::1", EnvServicePort: "443"}
	if got := TargetFromEnv(func(k string) string { return env[k] }); got != "[fd00::1]:443" {
		t.Errorf("TargetFromEnv = %q", got)
	}
	if got := TargetFromEnv(func(string) string { return "" }); got != "" {
		t.Errorf("TargetFromEnv without env = %q", got)
	}
}
