package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runWait is `chaperone-sidecar wait`: it returns once the proxy's
// /readyz answers 200. In classic (non-native) sidecar mode the webhook
// runs it as the sidecar's postStart hook, so the agent containers start
// only once their traffic can be recorded.
func runWait(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("chaperone-sidecar wait", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("admin-addr", "127.0.0.1:15020", "the proxy's admin address")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("wait: unexpected arguments %q", fs.Args())
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	url := "http://" + *addr + "/readyz"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: %s not ready within %s", url, *timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
