package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Action ids of the message's buttons; the button value is the request id.
const (
	ActionApprove = "approve"
	ActionDeny    = "deny"
)

// Message is a Slack-style message with Block Kit blocks.
type Message struct {
	Text            string  `json:"text"`
	Blocks          []Block `json:"blocks"`
	ReplaceOriginal bool    `json:"replace_original,omitempty"`
}

// Block is one Block Kit block (section, actions or context).
type Block struct {
	Type     string    `json:"type"`
	BlockID  string    `json:"block_id,omitempty"`
	Text     *Text     `json:"text,omitempty"`
	Fields   []Text    `json:"fields,omitempty"`
	Elements []Element `json:"elements,omitempty"`
}

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Element is a button, or a text element of a context block.
type Element struct {
	Type     string `json:"type"`
	ActionID string `json:"action_id,omitempty"`
	Text     any    `json:"text,omitempty"`
	Value    string `json:"value,omitempty"`
	Style    string `json:"style,omitempty"`
}

// BuildMessage returns the message for a: what, who, where and the rule,
// with Approve and Deny buttons while it is pending and the outcome after.
func BuildMessage(a *Approval) Message {
	fields := []Text{
		mrkdwn("*What:*\n" + orDash(a.What)),
		mrkdwn("*Who:*\n" + orDash(a.Who)),
		mrkdwn("*Where:*\n" + orDash(a.Where)),
		mrkdwn("*Rule:*\n" + orDash(a.Rule)),
	}
	head := fmt.Sprintf("*Approval needed:* %s\nSession `%s`, requested for %s", escape(a.Summary), a.Session, orDash(a.Requester.User))
	m := Message{
		Text:   "Approval needed: " + a.Summary,
		Blocks: []Block{{Type: "section", BlockID: "approval-" + a.ID, Text: ptr(mrkdwn(head)), Fields: fields}},
	}
	var status string
	if a.State == StatePending {
		status = fmt.Sprintf("%d of %d approvals; approver groups: %s", len(a.Approvers()), a.needed(), orDash(strings.Join(a.ApproverGroups, ", ")))
		m.Blocks = append(m.Blocks, Block{Type: "actions", BlockID: "actions-" + a.ID, Elements: []Element{
			{Type: "button", ActionID: ActionApprove, Text: Text{Type: "plain_text", Text: "Approve"}, Value: a.ID, Style: "primary"},
			{Type: "button", ActionID: ActionDeny, Text: Text{Type: "plain_text", Text: "Deny"}, Value: a.ID, Style: "danger"},
		}})
	} else {
		status = "*" + strings.ToUpper(a.State[:1]) + a.State[1:] + "*"
		if ap := a.Approvers(); len(ap) > 0 {
			status += " — approved by " + strings.Join(ap, ", ")
		}
		if n := len(a.Votes); n > 0 && !a.Votes[n-1].Approve {
			status += " — denied by " + a.Votes[n-1].Approver
		}
		if a.Decision != nil && a.Decision.Reason != "" {
			status += ": " + escape(a.Decision.Reason)
		}
		m.Text = strings.ToUpper(a.State[:1]) + a.State[1:] + ": " + a.Summary
	}
	m.Blocks = append(m.Blocks, Block{Type: "context", Elements: []Element{{Type: "mrkdwn", Text: status}}})
	return m
}

func mrkdwn(s string) Text { return Text{Type: "mrkdwn", Text: s} }

func ptr[T any](v T) *T { return &v }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return escape(s)
}

// escape neutralises Slack's control characters in text from the request.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Webhook posts approval messages to a Slack-style incoming webhook URL.
type Webhook struct {
	// URL is the incoming webhook.
	URL string
	// Client sends the posts; nil uses a client with a 10s timeout.
	Client *http.Client
}

// Notify posts the message of a to the webhook.
func (w *Webhook) Notify(ctx context.Context, a *Approval) error {
	return postMessage(ctx, w.Client, w.URL, BuildMessage(a))
}

func postMessage(ctx context.Context, hc *http.Client, url string, m Message) error {
	if hc == nil {
		hc = defaultClient
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("post message: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("post message: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post message: %s answered %s", req.URL.Host, resp.Status)
	}
	return nil
}
