package main

import (
	"io"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"-h"}, 0},
		{"unknown flag", []string{"--bogus"}, 2},
		{"no data dir", nil, 2},
		{"public address without oidc", []string{"--data-dir", t.TempDir(), "--http-addr", "0.0.0.0:8080"}, 2},
		{"oidc without client id", []string{"--data-dir", t.TempDir(), "--oidc-issuer", "https://issuer.example"}, 2},
		{"oidc issuer over plain http elsewhere", []string{"--data-dir", t.TempDir(), "--oidc-issuer", "http://issuer.example", "--oidc-client-id", "c"}, 2},
		{"role flags without oidc", []string{"--data-dir", t.TempDir(), "--admin-groups", "ops"}, 2},
		{"stray argument", []string{"--data-dir", t.TempDir(), "extra"}, 2},
		{"bad log format", []string{"--data-dir", t.TempDir(), "--log-format", "xml"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(c.args, io.Discard); got != c.want {
				t.Fatalf("exit %d, want %d", got, c.want)
			}
		})
	}
}
