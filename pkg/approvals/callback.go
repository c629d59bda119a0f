package approvals

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/principal"
)

// Callback limits.
const (
	// MaxCallbackAge is how old a signed callback may be.
	MaxCallbackAge = 5 * time.Minute
	// callbackSkew is how far in the future a timestamp may be.
	callbackSkew = 30 * time.Second
	// maxCallbackBody caps a callback's body.
	maxCallbackBody = 64 << 10
)

// Headers of a signed Slack callback.
const (
	HeaderSignature = "X-Slack-Signature"
	HeaderTimestamp = "X-Slack-Request-Timestamp"
)

var defaultClient = &http.Client{Timeout: 10 * time.Second}

// SlackUser is what a Slack user id maps to.
type SlackUser struct {
	Email  string   `json:"email"`
	Groups []string `json:"groups,omitempty"`
}

// LoadSlackUsers reads a JSON file mapping Slack user ids to people:
// {"U024BE7LH": {"email": "ann@example.com", "groups": ["sre"]}}.
func LoadSlackUsers(path string) (map[string]SlackUser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("slack users: %w", err)
	}
	var m map[string]SlackUser
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("slack users %s: %w", path, err)
	}
	return m, nil
}

// ReadSecret reads a signing secret file, trimming surrounding space.
func ReadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("slack signing secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("slack signing secret %s is empty", path)
	}
	return []byte(s), nil
}

// Sign returns the X-Slack-Signature value of body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	_, _ = io.WriteString(mac, "v0:"+ts+":")
	_, _ = mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// CallbackOptions configures a callback handler.
type CallbackOptions struct {
	// Secret is the Slack signing secret. Without it every callback is
	// refused.
	Secret []byte
	// Users maps Slack user ids to people. A user not in it is known by the
	// e-mail address in the payload, without groups.
	Users map[string]SlackUser
	// Client posts the updated message to response_url; nil uses a client
	// with a 10s timeout.
	Client *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
}

// Callback answers Slack's interactivity callback (POST /callbacks/slack).
type Callback struct {
	svc    *Service
	secret []byte
	users  map[string]SlackUser
	hc     *http.Client
	log    *slog.Logger
}

// Callback returns the handler of Slack's signed callbacks for s.
func (s *Service) Callback(o CallbackOptions) *Callback {
	c := &Callback{svc: s, secret: o.Secret, users: o.Users, hc: o.Client, log: o.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.hc == nil {
		c.hc = defaultClient
	}
	return c
}

// slackPayload is the part of a block_actions payload that is used.
type slackPayload struct {
	Type string `json:"type"`
	User struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		Email    string `json:"email"`
	} `json:"user"`
	TriggerID   string `json:"trigger_id"`
	ResponseURL string `json:"response_url"`
	Actions     []struct {
		ActionID string `json:"action_id"`
		BlockID  string `json:"block_id"`
		Value    string `json:"value"`
		ActionTS string `json:"action_ts"`
	} `json:"actions"`
}

// callbackError is a refusal: its status and what to tell the caller.
type callbackError struct {
	status int
	msg    string
}

func (e *callbackError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) *callbackError {
	return &callbackError{status: status, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP verifies, decides and answers one callback.
func (c *Callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, err := c.handle(r)
	if err != nil {
		var ce *callbackError
		if !errors.As(err, &ce) {
			c.log.ErrorContext(r.Context(), "slack callback", slog.Any(logKeyError, err))
			ce = refuse(http.StatusInternalServerError, "internal error")
		} else {
			c.log.WarnContext(r.Context(), "slack callback refused", slog.Int(logKeyStatus, ce.status), slog.String(logKeyError, ce.msg))
		}
		c.svc.metrics.refusals.WithLabelValues(strconv.Itoa(ce.status)).Inc()
		writeJSONError(w, ce.status, ce.msg)
		return
	}
	c.log.InfoContext(r.Context(), "slack callback accepted", slog.String(logKeyRequest, a.ID), slog.String(logKeyState, a.State))
	w.WriteHeader(http.StatusOK)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (c *Callback) handle(r *http.Request) (*Approval, error) {
	ctx := r.Context()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCallbackBody+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "read body: %v", err)
	}
	if len(body) > maxCallbackBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, "body over %d bytes", maxCallbackBody)
	}
	sig, err := c.verify(r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body)
	if err != nil {
		return nil, err
	}
	p, err := parseCallback(body)
	if err != nil {
		return nil, err
	}
	act := p.Actions[0]
	who, err := c.person(p)
	if err != nil {
		return nil, err
	}
	// Known before the callback is spent, so a click on an unknown request
	// is answered as such.
	if _, err := c.svc.Get(ctx, act.Value); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, refuse(http.StatusNotFound, "unknown approval request %q", act.Value)
		}
		return nil, err
	}
	if err := c.spend(ctx, sig, p); err != nil {
		return nil, err
	}
	a, err := c.svc.Decide(ctx, act.Value, who, act.ActionID == ActionApprove, "via Slack by "+who.Name(), "slack")
	if err != nil {
		return nil, decideError(err)
	}
	if p.ResponseURL != "" {
		m := BuildMessage(a)
		m.ReplaceOriginal = true
		if err := postMessage(ctx, c.hc, p.ResponseURL, m); err != nil {
			// The decision stands; only the message stays stale.
			c.log.WarnContext(ctx, "slack response_url", slog.String(logKeyRequest, a.ID), slog.Any(logKeyError, err))
		}
	}
	return a, nil
}

// verify checks the timestamp window and the v0 signature.
func (c *Callback) verify(tsHeader, sigHeader string, body []byte) (string, error) {
	if len(c.secret) == 0 {
		return "", refuse(http.StatusUnauthorized, "slack callbacks are not configured (no signing secret)")
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return "", refuse(http.StatusUnauthorized, "missing or bad %s", HeaderTimestamp)
	}
	now := c.svc.now()
	at := time.Unix(ts, 0)
	if now.Sub(at) > MaxCallbackAge || at.Sub(now) > callbackSkew {
		return "", refuse(http.StatusUnauthorized, "stale timestamp: %s is outside the %s window", at.UTC().Format(time.RFC3339), MaxCallbackAge)
	}
	want := Sign(c.secret, tsHeader, body)
	if !hmac.Equal([]byte(want), []byte(sigHeader)) {
		return "", refuse(http.StatusUnauthorized, "bad signature")
	}
	return sigHeader, nil
}

// parseCallback decodes a block_actions payload with one button action.
func parseCallback(body []byte) (*slackPayload, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "malformed form body: %v", err)
	}
	raw := form.Get("payload")
	if raw == "" {
		return nil, refuse(http.StatusBadRequest, "no payload field")
	}
	var p slackPayload
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, refuse(http.StatusBadRequest, "malformed payload: %v", err)
	}
	if p.Type != "block_actions" {
		return nil, refuse(http.StatusBadRequest, "payload type %q: want block_actions", p.Type)
	}
	if len(p.Actions) != 1 {
		return nil, refuse(http.StatusBadRequest, "payload has %d actions: want 1", len(p.Actions))
	}
	if id := p.Actions[0].ActionID; id != ActionApprove && id != ActionDeny {
		return nil, refuse(http.StatusBadRequest, "unknown action %q", id)
	}
	if p.User.ID == "" {
		return nil, refuse(http.StatusBadRequest, "payload has no user")
	}
	if p.ResponseURL != "" {
		u, err := url.Parse(p.ResponseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, refuse(http.StatusBadRequest, "bad response_url")
		}
	}
	return &p, nil
}

// person maps the Slack user to a principal.
func (c *Callback) person(p *slackPayload) (principal.Principal, error) {
	if u, ok := c.users[p.User.ID]; ok {
		return principal.Principal{Subject: "slack:" + p.User.ID, Email: u.Email, Groups: u.Groups}, nil
	}
	if p.User.Email != "" {
		return principal.Principal{Subject: "slack:" + p.User.ID, Email: p.User.Email}, nil
	}
	return principal.Principal{}, refuse(http.StatusForbidden, "slack user %s is not mapped to a person", p.User.ID)
}

// spend marks the callback used, by signature and by click, refusing one
// already used. The marks live in a KV bucket so a replay is refused after
// a restart too.
func (c *Callback) spend(ctx context.Context, sig string, p *slackPayload) error {
	act := p.Actions[0]
	keys := []string{"sig." + hashKey(sig)}
	if act.ActionTS != "" || p.TriggerID != "" {
		keys = append(keys, "act."+hashKey(p.User.ID+"|"+act.Value+"|"+act.ActionTS+"|"+p.TriggerID))
	}
	for _, k := range keys {
		if _, err := c.svc.used.Create(ctx, k, []byte(c.svc.now().UTC().Format(time.RFC3339))); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return refuse(http.StatusConflict, "callback already used")
			}
			return fmt.Errorf("mark callback used: %w", err)
		}
	}
	return nil
}

func hashKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

// decideError maps Decide's refusals to statuses.
func decideError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return refuse(http.StatusNotFound, "%v", err)
	case errors.Is(err, ErrInvalid):
		return refuse(http.StatusBadRequest, "%v", err)
	case errors.Is(err, ErrNotApprover), errors.Is(err, ErrSelfApproval):
		return refuse(http.StatusForbidden, "%v", err)
	case errors.Is(err, ErrDecided), errors.Is(err, ErrAlreadyVoted):
		return refuse(http.StatusConflict, "%v", err)
	default:
		return err
	}
}

// StatusOf is the HTTP status for an error of Decide or Get.
func StatusOf(err error) int {
	var ce *callbackError
	if errors.As(decideError(err), &ce) {
		return ce.status
	}
	return http.StatusInternalServerError
}
