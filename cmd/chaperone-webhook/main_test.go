package main

import (
	"io"
	"strings"
	"testing"

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
		{name: "no image", args: []string{"--nats-url=nats://n:4222"}, wantErr: "sidecar image"},
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
