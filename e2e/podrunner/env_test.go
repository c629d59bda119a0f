package podrunner

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"plain":          "plain",
		"$(A)":           "1",
		"x$(A)y$(B)z":    "x1ytwoz",
		"$$(A)":          "$(A)",
		"$(UNKNOWN)":     "$(UNKNOWN)",
		"$(A":            "$(A",
		"cost $5":        "cost $5",
		"trailing $":     "trailing $",
		"$(A)$(A)$$$(B)": "11$two",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountPaths(t *testing.T) {
	ms := mounts{{path: "/var/run/chaperone/trust", host: "/h/trust"}, {path: "/var/run", host: "/h/run"}}
	for in, want := range map[string]string{
		"/var/run/chaperone/trust":                "/h/trust",
		"/var/run/chaperone/trust/bundle.pem":     "/h/trust/bundle.pem",
		"--trust-dir=/var/run/chaperone/trust":    "--trust-dir=/h/trust",
		"/var/run/chaperone/spool":                "/h/run/chaperone/spool",
		"/var/running":                            "/var/running",
		"x/var/run":                               "x/var/run",
		"a:/var/run/chaperone/trust,/var/run/x y": "a:/h/trust,/h/run/x y",
		"--admin-addr=127.0.0.1:15020":            "--admin-addr=127.0.0.1:15020",
	} {
		if got := ms.path(in); got != want {
			t.Errorf("path(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"curl":                      "curl",
		"curlimages/curl:8.10":      "curlimages/curl",
		"reg.test:5000/a/b:1":       "reg.test:5000/a/b",
		"reg.test:5000/a/b":         "reg.test:5000/a/b",
		"ghcr.io/x/y@sha256:0123":   "ghcr.io/x/y",
		"ghcr.io/x/y:1@sha256:0123": "ghcr.io/x/y",
	} {
		if got := repository(in); got != want {
			t.Errorf("repository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrivArgs(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name string
		sc   *corev1.SecurityContext
		root bool
		want string
	}{
		{"default root", nil, true, "--bounding-set=-net_admin,-net_raw --inh-caps=-net_admin,-net_raw"},
		{"non-root", nil, false, ""},
		{"confined agent", &corev1.SecurityContext{AllowPrivilegeEscalation: &f, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"SETUID", "SETGID"}}}, true,
			"--no-new-privs --bounding-set=-net_admin,-net_raw,-setuid,-setgid --inh-caps=-net_admin,-net_raw,-setuid,-setgid"},
		{"init", &corev1.SecurityContext{AllowPrivilegeEscalation: &f, Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}}}, true,
			"--no-new-privs --bounding-set=-all,+net_admin,+net_raw --inh-caps=-all,+net_admin,+net_raw"},
		{"non-root no escalation", &corev1.SecurityContext{AllowPrivilegeEscalation: &f}, false, "--no-new-privs"},
	} {
		c := &corev1.Container{SecurityContext: tc.sc}
		if got := strings.Join(privArgs(c, tc.root), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
