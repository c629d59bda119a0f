package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/chaperone-dev/chaperone/pkg/api"
)

// WorkloadToken asks the server for the NATS token of session: what a
// sidecar outside Kubernetes authenticates with (POST
// /api/v1/workload-tokens, admins only; anyone in local mode).
func (c *Client) WorkloadToken(ctx context.Context, session string) (string, error) {
	const path = "/api/v1/workload-tokens"
	body, err := json.Marshal(api.WorkloadTokenRequest{Session: session})
	if err != nil {
		return "", fmt.Errorf("encode token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("request %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", apiError(resp)
	}
	var tok api.WorkloadToken
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&tok); err != nil {
		return "", fmt.Errorf("decode %s: %w", path, err)
	}
	if tok.Token == "" {
		return "", fmt.Errorf("%s: empty token", path)
	}
	return tok.Token, nil
}
