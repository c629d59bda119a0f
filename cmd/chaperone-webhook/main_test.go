package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/chaperone-dev/chaperone/webhook"
)

func TestParseFlags(t *testing.T) {
	base := []string{"--sidecar-image=img", "--nats-url=nats://n:4222"}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		mode    webhook.SidecarMode
	}{
		{name: "defaults", args: base},
		{name: "native", args: append([]string{"--native-sidecar=true"}, base...), mode: webhook.ModeNative},
		{name: "classic", args: append([]string{"--native-sidecar=false"}, base...), mode: webhook.ModeClassic},
		{name: "bad mode", args: append([]string{"--native-sidecar=maybe"}, base...), wantErr: "--native-sidecar"},
		{name: "empty image", args: []string{"--sidecar-image=", "--nats-url=nats://n:4222"}, wantErr: "sidecar image"},
		{name: "no nats", args: []string{"--sidecar-image=img"}, wantErr: "NATS URL"},
		{name: "bad ip", args: append([]string{"--ips=localhost"}, base...), wantErr: "--ips"},
		{name: "no names", args: append([]string{"--dns-names="}, base...), wantErr: "--dns-names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, io.Discard, func(string) string { return "" })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Inject.Mode != tc.mode {
				t.Errorf("mode %q, want %q", cfg.Inject.Mode, tc.mode)
			}
			if cfg.Listen != ":9443" || cfg.WebhookConfigName == "" {
				t.Errorf("defaults: %+v", cfg)
			}
		})
	}
}

// TestSidecarConfig: the file the chart renders sets the sidecar, flags
// given on the command line override it, and without either the built-in
// defaults (equal to values.yaml) apply.
func TestSidecarConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sidecar.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(string) string { return "" }
	write(`image: {repository: reg.test/sidecar, tag: v9, pullPolicy: Always}
mode: classic
natsURL: nats://chaperone-server.chaperone.svc:4222
resources: {requests: {cpu: 10m}}
tokenAudience: aud
placeholderToken: ph
extraArgs: [--mask-pii]
`)
	cfg, err := parseFlags([]string{"--sidecar-config=" + file}, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	inj := cfg.Inject
	if inj.SidecarImage != "reg.test/sidecar:v9" || inj.ImagePullPolicy != corev1.PullAlways || inj.Mode != webhook.ModeClassic ||
		inj.NATSURL != "nats://chaperone-server.chaperone.svc:4222" || inj.TokenAudience != "aud" || inj.PlaceholderToken != "ph" ||
		len(inj.ExtraArgs) != 1 || inj.TokenExpiration != webhook.DefaultTokenExpiration {
		t.Errorf("from file: %+v", inj)
	}
	if _, ok := inj.Resources.Requests[corev1.ResourceMemory]; ok || inj.Resources.Limits != nil {
		t.Errorf("resources block not replaced whole: %+v", inj.Resources)
	}

	cfg, err = parseFlags([]string{"--sidecar-config=" + file, "--sidecar-image=other:1", "--native-sidecar=true", "--nats-url=nats://x:1"}, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Inject.SidecarImage != "other:1" || cfg.Inject.Mode != webhook.ModeNative || cfg.Inject.NATSURL != "nats://x:1" {
		t.Errorf("flags do not override the file: %+v", cfg.Inject)
	}

	cfg, err = parseFlags([]string{"--nats-url=nats://x:1"}, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	def := webhook.DefaultSidecarValues()
	if cfg.Inject.SidecarImage != def.Image.Ref() || cfg.NativeSidecar != "auto" || cfg.Inject.Mode != "" || cfg.Inject.Resources.Requests.Cpu().String() != "50m" {
		t.Errorf("defaults: %+v", cfg.Inject)
	}

	for _, bad := range []string{"mode: sometimes\n", "imag: {}\n", "image: {pullPolicy: Sometimes}\n", ": :\n"} {
		write(bad)
		if _, err := parseFlags([]string{"--sidecar-config=" + file, "--nats-url=nats://x:1"}, io.Discard, getenv); err == nil {
			t.Errorf("file %q accepted", bad)
		}
	}
}
