package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/chaperone-dev/chaperone/pkg/api"
)

// PutSessionPolicy makes the SessionPolicy YAML doc the policy of one
// session alone and returns the compiled set's hash. The server compiles it
// first and refuses, with the rule and error, one that does not compile.
func (c *Client) PutSessionPolicy(ctx context.Context, session string, doc []byte) (string, error) {
	resp, err := c.sendPolicy(ctx, http.MethodPut, session, "application/yaml", doc)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", apiError(resp)
	}
	var out api.SessionPolicyResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&out); err != nil {
		return "", fmt.Errorf("decode session policy result: %w", err)
	}
	return out.Hash, nil
}

// DeleteSessionPolicy withdraws a session's own policy.
func (c *Client) DeleteSessionPolicy(ctx context.Context, session string) error {
	resp, err := c.sendPolicy(ctx, http.MethodDelete, session, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return apiError(resp)
	}
	return nil
}

func (c *Client) sendPolicy(ctx context.Context, method, session, contentType string, body []byte) (*http.Response, error) {
	path := "/api/v1/session-policies/" + url.PathEscape(session)
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}
