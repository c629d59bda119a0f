package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
)

// Approvals lists approvals in state ("pending", "approved", "denied",
// "expired"; empty for all), oldest first.
func (c *Client) Approvals(ctx context.Context, state string) ([]*approvals.Approval, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	var out struct {
		Approvals []*approvals.Approval `json:"approvals"`
	}
	if err := c.getJSON(ctx, "/api/v1/approvals", q, &out); err != nil {
		return nil, err
	}
	return out.Approvals, nil
}

// Approve approves request id as the caller, with an optional reason.
func (c *Client) Approve(ctx context.Context, id, reason string) (*approvals.Approval, error) {
	return c.decide(ctx, id, "approve", reason)
}

// Deny denies request id as the caller, with an optional reason.
func (c *Client) Deny(ctx context.Context, id, reason string) (*approvals.Approval, error) {
	return c.decide(ctx, id, "deny", reason)
}

func (c *Client) decide(ctx context.Context, id, verb, reason string) (*approvals.Approval, error) {
	path := "/api/v1/approvals/" + url.PathEscape(id) + "/" + verb
	body, err := json.Marshal(struct {
		Reason string `json:"reason,omitempty"`
	}{reason})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", verb, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp)
	}
	var a approvals.Approval
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(&a); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &a, nil
}
