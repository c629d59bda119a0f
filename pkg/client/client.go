package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// maxJSONBody bounds a JSON (non-stream) response.
const maxJSONBody = 64 << 20

// Client talks to one chaperone-server. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[/prefix], no trailing slash
	token string
	hc    *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as a bearer token on every request.
func WithToken(token string) Option {
	return func(c *Client) { c.token = token }
}

// WithHTTPClient uses hc instead of http.DefaultClient. Streams (events,
// replay) run as long as the server sends, so hc should not set a Timeout;
// bound calls with their context instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// New returns a client of the server at baseURL, e.g. "http://127.0.0.1:8080".
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("server url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server url %q: want http(s)://host[:port]", baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: strings.TrimSuffix(u.String(), "/"), hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// APIError is an error answered by the server.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the server's error text.
	Message string
	// Param names the parameter at fault, for 400 answers.
	Param string
	// RequestID is the server's id for the request, for its logs.
	RequestID string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Param != "" && !strings.HasPrefix(msg, e.Param+":") {
		msg = e.Param + ": " + msg
	}
	return fmt.Sprintf("server: %s (HTTP %d)", msg, e.Status)
}

// IsNotFound reports whether err is the server's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// SessionQuery filters and pages Sessions. Zero values do not filter.
type SessionQuery struct {
	User      string
	Namespace string
	Pod       string
	// Since and Until bound the session start: an RFC 3339 time or a
	// duration meaning that long ago ("1h", "7d"), as the server reads them.
	Since    string
	Until    string
	Resource string
	Verdict  string
	// Limit is the page size, 1 to 1000; 0 leaves the server's default.
	Limit int
	// Cursor continues from a previous page's Next.
	Cursor string
}

func (q SessionQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("user", q.User)
	set("namespace", q.Namespace)
	set("pod", q.Pod)
	set("since", q.Since)
	set("until", q.Until)
	set("resource", q.Resource)
	set("verdict", q.Verdict)
	set("cursor", q.Cursor)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Info is the server's self-description.
type Info struct {
	Version   string `json:"version"`
	NATS      string `json:"nats"`
	LocalMode bool   `json:"local_mode"`
}

// Info returns the server's version, NATS URL and mode.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.getJSON(ctx, "/api/v1/info", nil, &out)
}

// Sessions returns one page of sessions, newest first.
func (c *Client) Sessions(ctx context.Context, q SessionQuery) (store.SessionPage, error) {
	var out store.SessionPage
	return out, c.getJSON(ctx, "/api/v1/sessions", q.values(), &out)
}

// AllSessions yields every session matching q, following the pages from
// q.Cursor on. It stops at the first error, yielding it.
func (c *Client) AllSessions(ctx context.Context, q SessionQuery) iter.Seq2[store.Session, error] {
	return func(yield func(store.Session, error) bool) {
		for {
			page, err := c.Sessions(ctx, q)
			if err != nil {
				yield(store.Session{}, err)
				return
			}
			for _, s := range page.Sessions {
				if !yield(s, nil) {
					return
				}
			}
			if page.Next == "" || page.Next == q.Cursor {
				return
			}
			q.Cursor = page.Next
		}
	}
}

// Session returns one session's summary.
func (c *Client) Session(ctx context.Context, id string) (store.Session, error) {
	var out store.Session
	return out, c.getJSON(ctx, sessionPath(id, ""), nil, &out)
}

// Verify asks the server to recompute the session's hash chain. A broken
// chain is not an error: check VerifyResult.OK.
func (c *Client) Verify(ctx context.Context, id string) (store.VerifyResult, error) {
	var out store.VerifyResult
	return out, c.getJSON(ctx, sessionPath(id, "/verify"), nil, &out)
}

// Blob returns the bytes of a stored body by its ref ("sha256:<hex>").
// Readers limited to namespaces use SessionBlob.
func (c *Client) Blob(ctx context.Context, ref string) ([]byte, error) {
	return c.SessionBlob(ctx, "", ref)
}

// SessionBlob returns the bytes of a body that an event of session names;
// the server refuses a ref that session does not name. An empty session
// asks for the blob by its ref alone.
func (c *Client) SessionBlob(ctx context.Context, session, ref string) ([]byte, error) {
	var q url.Values
	if session != "" {
		q = url.Values{"session": {session}}
	}
	resp, err := c.get(ctx, "/api/v1/blobs/"+url.PathEscape(ref), q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", ref, err)
	}
	return b, nil
}

func sessionPath(id, suffix string) string {
	return "/api/v1/sessions/" + url.PathEscape(id) + suffix
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.get(ctx, path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// get sends a GET and returns the response when its status is 200; any
// other status becomes an *APIError.
func (c *Client) get(ctx context.Context, path string, q url.Values, hdr http.Header) (*http.Response, error) {
	// path is already escaped segment by segment.
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func apiError(resp *http.Response) error {
	ae := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e struct {
		Error string `json:"error"`
		Param string `json:"param"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		ae.Message, ae.Param = e.Error, e.Param
	} else {
		ae.Message = strings.TrimSpace(string(body))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "…"
		}
	}
	return ae
}
