package server

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"defaults", Config{DataDir: "/d"}, nil},
		{"random ports", Config{DataDir: "/d", HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"}, nil},
		{"localhost", Config{DataDir: "/d", HTTPAddr: "localhost:9000"}, nil},
		{"ipv6 loopback", Config{DataDir: "/d", HTTPAddr: "[::1]:0"}, nil},
		{"nats url", Config{DataDir: "/d", NATSURL: "nats://127.0.0.1:4222", NATSAddr: "bogus"}, nil},
		{"json logs", Config{DataDir: "/d", LogFormat: "json", LogLevel: "debug"}, nil},
		{"no data dir", Config{}, ErrInvalidConfig},
		{"all interfaces in local mode", Config{DataDir: "/d", HTTPAddr: ":8080"}, ErrInvalidConfig},
		{"public address in local mode", Config{DataDir: "/d", HTTPAddr: "0.0.0.0:8080"}, ErrInvalidConfig},
		{"host name in local mode", Config{DataDir: "/d", HTTPAddr: "example.org:8080"}, ErrInvalidConfig},
		{"no port", Config{DataDir: "/d", HTTPAddr: "127.0.0.1"}, ErrInvalidConfig},
		{"bad port", Config{DataDir: "/d", HTTPAddr: "127.0.0.1:99999"}, ErrInvalidConfig},
		{"bad nats addr", Config{DataDir: "/d", NATSAddr: "nats"}, ErrInvalidConfig},
		{"bad nats url", Config{DataDir: "/d", NATSURL: "::"}, ErrInvalidConfig},
		{"bad level", Config{DataDir: "/d", LogLevel: "loud"}, ErrInvalidConfig},
		{"bad format", Config{DataDir: "/d", LogFormat: "xml"}, ErrInvalidConfig},
		{"oidc", Config{DataDir: "/d", OIDCIssuer: "https://issuer.example", OIDCClientID: "c", HTTPAddr: "0.0.0.0:8080"}, nil},
		{"oidc over loopback http", Config{DataDir: "/d", OIDCIssuer: "http://127.0.0.1:5556/dex", OIDCClientID: "c", HTTPAddr: ":8080", AdminGroups: []string{"ops"}, RolesFile: "r.yaml"}, nil},
		{"oidc without client id", Config{DataDir: "/d", OIDCIssuer: "https://issuer.example"}, ErrInvalidConfig},
		{"oidc over plain http", Config{DataDir: "/d", OIDCIssuer: "http://issuer.example", OIDCClientID: "c"}, ErrInvalidConfig},
		{"oidc not a url", Config{DataDir: "/d", OIDCIssuer: "issuer", OIDCClientID: "c"}, ErrInvalidConfig},
		{"client id without issuer", Config{DataDir: "/d", OIDCClientID: "c"}, ErrInvalidConfig},
		{"roles without issuer", Config{DataDir: "/d", AuditorGroups: []string{"a"}}, ErrInvalidConfig},
		{"ca file without issuer", Config{DataDir: "/d", OIDCCAFile: "ca.pem"}, ErrInvalidConfig},
		{"roles file without issuer", Config{DataDir: "/d", RolesFile: "r.yaml"}, ErrInvalidConfig},
		{"kube policies accepted", Config{DataDir: "/d", KubePolicies: true, Kubeconfig: "/k"}, nil},
		{"kube policies and a policy file refused", Config{DataDir: "/d", KubePolicies: true, PolicyFile: "p.yaml"}, ErrInvalidConfig},
		{"kubeconfig without kube policies refused", Config{DataDir: "/d", Kubeconfig: "/k"}, ErrInvalidConfig},
		{"policy and approvals accepted", Config{DataDir: "/d", PolicyFile: "p.yaml", ApprovalWebhookURL: "http://127.0.0.1:1/hook", SlackSigningSecretFile: "s"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.want == nil && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestValidateDefaults(t *testing.T) {
	c := Config{DataDir: "/d"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != DefaultHTTPAddr || c.NATSAddr != DefaultNATSAddr || c.LogLevel != "info" ||
		c.LogFormat != "text" || c.ShutdownTimeout != DefaultShutdownTimeout || !c.LocalMode() {
		t.Fatalf("defaults not applied: %+v", c)
	}
}
