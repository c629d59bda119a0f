package podrunner

import "testing"

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
