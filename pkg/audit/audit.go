package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Fixed values of the audit.k8s.io/v1 Event shape.
const (
	Kind                  = "Event"
	APIVersion            = "audit.k8s.io/v1"
	LevelMetadata         = "Metadata"
	LevelRequestResponse  = "RequestResponse"
	StageResponseComplete = "ResponseComplete"
)

// Annotation keys set on every Event.
const (
	AnnotationSession = "chaperone.dev/session"
	AnnotationPod     = "chaperone.dev/pod"
	AnnotationUser    = "chaperone.dev/user"
	AnnotationVerdict = "chaperone.dev/verdict"
)

// MicroTime is a timestamp written as Kubernetes writes metav1.MicroTime.
type MicroTime time.Time

// MarshalJSON writes RFC 3339 with microseconds, in UTC.
func (t MicroTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
}

// UnmarshalJSON reads an RFC 3339 timestamp.
func (t *MicroTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	*t = MicroTime(v)
	return err
}

// UserInfo is authentication.k8s.io/v1 UserInfo.
type UserInfo struct {
	Username string   `json:"username,omitempty"`
	UID      string   `json:"uid,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// ObjectReference is audit.k8s.io/v1 ObjectReference.
type ObjectReference struct {
	Resource    string `json:"resource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	APIVersion  string `json:"apiVersion,omitempty"`
	Subresource string `json:"subresource,omitempty"`
}

// Status is the part of metav1.Status the audit log keeps.
type Status struct {
	Metadata struct{} `json:"metadata"`
	Status   string   `json:"status,omitempty"`
	Message  string   `json:"message,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Code     int      `json:"code,omitempty"`
}

// Event is an audit.k8s.io/v1 Event; its fields are in the order the API
// server writes them.
type Event struct {
	Kind                     string            `json:"kind"`
	APIVersion               string            `json:"apiVersion"`
	Level                    string            `json:"level"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb"`
	User                     UserInfo          `json:"user"`
	ImpersonatedUser         *UserInfo         `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *ObjectReference  `json:"objectRef,omitempty"`
	ResponseStatus           *Status           `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty"`
	RequestReceivedTimestamp MicroTime         `json:"requestReceivedTimestamp"`
	StageTimestamp           MicroTime         `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

// BlobFunc returns a recorded body by its ref; *client.Client's Blob is
// one.
type BlobFunc func(ctx context.Context, ref string) ([]byte, error)

// Converter turns one session's events, fed in order, into audit Events.
type Converter struct {
	blob    BlobFunc
	clients map[string]string // conn -> client IP
	reqs    map[exchangeKey]*event.Event
	resps   map[exchangeKey]*event.Event
}

type exchangeKey struct {
	conn   string
	stream uint64
}

// New returns a Converter; blob, if not nil, fetches bodies recorded as
// blobs so that they become request and response objects.
func New(blob BlobFunc) *Converter {
	return &Converter{
		blob:    blob,
		clients: map[string]string{},
		reqs:    map[exchangeKey]*event.Event{},
		resps:   map[exchangeKey]*event.Event{},
	}
}

// Add takes the session's next event and returns the audit Event it
// completes, if any.
func (c *Converter) Add(ctx context.Context, e *event.Event) (*Event, error) {
	switch {
	case e.ConnOpen != nil:
		if host, _, err := net.SplitHostPort(e.ConnOpen.Client); err == nil {
			c.clients[e.Conn] = host
		}
	case e.ConnClose != nil:
		delete(c.clients, e.Conn)
		for k := range c.reqs {
			if k.conn == e.Conn {
				delete(c.reqs, k)
				delete(c.resps, k)
			}
		}
	case e.HTTPRequest != nil:
		c.reqs[exchangeKey{e.Conn, e.HTTPRequest.Stream}] = e
	case e.HTTPResponse != nil:
		k := exchangeKey{e.Conn, e.HTTPResponse.Stream}
		if _, ok := c.resps[k]; !ok || e.HTTPResponse.Streamed != event.StreamedEnd {
			c.resps[k] = e
		}
	case e.K8sRequest != nil:
		k := exchangeKey{e.Conn, e.K8sRequest.Stream}
		req, resp := c.reqs[k], c.resps[k]
		delete(c.reqs, k)
		delete(c.resps, k)
		return c.convert(ctx, e, req, resp)
	}
	return nil, nil
}

// convert builds the audit Event of k (a k8s.request) from its exchange's
// request and response records, either of which may be missing.
func (c *Converter) convert(ctx context.Context, k, req, resp *event.Event) (*Event, error) {
	kr := k.K8sRequest
	a := &Event{
		Kind:                     Kind,
		APIVersion:               APIVersion,
		Level:                    LevelMetadata,
		AuditID:                  k.ID,
		Stage:                    StageResponseComplete,
		Verb:                     kr.Verb,
		User:                     user(k.Identity, kr.As),
		RequestReceivedTimestamp: MicroTime(k.Time),
		StageTimestamp:           MicroTime(k.Time),
		Annotations:              annotations(k),
	}
	if ip := c.clients[k.Conn]; ip != "" {
		a.SourceIPs = []string{ip}
	}
	if kr.Resource != "" {
		a.ObjectRef = &ObjectReference{
			Resource:    kr.Resource,
			Namespace:   kr.Namespace,
			Name:        kr.Name,
			APIGroup:    kr.APIGroup,
			APIVersion:  kr.APIVersion,
			Subresource: kr.Subresource,
		}
	}
	if kr.Status != 0 {
		a.ResponseStatus = &Status{Code: kr.Status}
	}
	if req != nil {
		r := req.HTTPRequest
		a.RequestURI = requestURI(r.URL)
		a.UserAgent = header(r.Headers, "User-Agent")
		a.ImpersonatedUser = impersonated(r.Headers)
		a.RequestReceivedTimestamp = MicroTime(req.Time)
		a.StageTimestamp = MicroTime(req.Time)
		obj, err := c.object(ctx, r.Body)
		if err != nil {
			return nil, fmt.Errorf("audit %s: request body: %w", k.ID, err)
		}
		a.RequestObject = obj
	}
	if resp != nil {
		r := resp.HTTPResponse
		end := resp.Time
		if req != nil && r.Duration > 0 && r.Streamed != event.StreamedHeaders {
			end = req.Time.Add(r.Duration)
		}
		a.StageTimestamp = MicroTime(end)
		if r.Streamed == "" {
			obj, err := c.object(ctx, r.Body)
			if err != nil {
				return nil, fmt.Errorf("audit %s: response body: %w", k.ID, err)
			}
			a.ResponseObject = obj
			if a.ResponseStatus != nil {
				statusDetails(a.ResponseStatus, obj)
			}
		}
	}
	if a.RequestObject != nil || a.ResponseObject != nil {
		a.Level = LevelRequestResponse
	}
	return a, nil
}

// object returns a recorded body as a JSON object, nil when it is none
// (empty, cut short, not JSON, or a blob that cannot be fetched offline).
func (c *Converter) object(ctx context.Context, b *event.Body) (json.RawMessage, error) {
	if b == nil || b.Truncated {
		return nil, nil
	}
	var data []byte
	switch {
	case b.Text != "":
		data = []byte(b.Text)
	case b.Ref != "" && c.blob != nil:
		d, err := c.blob(ctx, b.Ref)
		if err != nil {
			return nil, err
		}
		data = d
	default:
		return nil, nil
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || !json.Valid(data) {
		return nil, nil
	}
	var out bytes.Buffer
	if err := json.Compact(&out, data); err != nil {
		return nil, nil
	}
	return out.Bytes(), nil
}

// statusDetails copies a failure's status, reason and message from a
// response that is a metav1.Status.
func statusDetails(s *Status, obj json.RawMessage) {
	if obj == nil || s.Code < 300 {
		return
	}
	var st struct {
		Kind    string `json:"kind"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	if json.Unmarshal(obj, &st) != nil || st.Kind != "Status" {
		return
	}
	s.Status, s.Message, s.Reason = st.Status, st.Message, st.Reason
}

// user is who the API server saw: the identity the request was sent as,
// else the pod's service account, else the person behind the session.
func user(id *event.Identity, as string) UserInfo {
	if as != "" {
		return UserInfo{Username: as}
	}
	if id == nil {
		return UserInfo{}
	}
	if id.ServiceAccount != "" && id.Namespace != "" {
		return UserInfo{
			Username: "system:serviceaccount:" + id.Namespace + ":" + id.ServiceAccount,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + id.Namespace, "system:authenticated"},
		}
	}
	return UserInfo{Username: id.User, Groups: id.Groups}
}

func impersonated(h map[string][]string) *UserInfo {
	name := header(h, "Impersonate-User")
	if name == "" {
		return nil
	}
	u := &UserInfo{Username: name, UID: header(h, "Impersonate-Uid")}
	for k, vs := range h {
		if strings.EqualFold(k, "Impersonate-Group") {
			u.Groups = append(u.Groups, vs...)
		}
	}
	return u
}

func annotations(k *event.Event) map[string]string {
	a := map[string]string{AnnotationSession: k.Session}
	if id := k.Identity; id != nil {
		if id.Pod != "" {
			pod := id.Pod
			if id.Namespace != "" {
				pod = id.Namespace + "/" + id.Pod
			}
			a[AnnotationPod] = pod
		}
		if id.User != "" {
			a[AnnotationUser] = id.User
		}
	}
	if k.Verdict != "" {
		a[AnnotationVerdict] = k.Verdict
	}
	return a
}

// requestURI turns a recorded URL (origin form, or absolute for HTTP/2)
// into the request URI the API server logs.
func requestURI(raw string) string {
	u, err := url.ParseRequestURI(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.RequestURI()
}

func header(h map[string][]string, name string) string {
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// WriteLine writes a as one line of JSON, as the API server's log
// backend does.
func WriteLine(w io.Writer, a *Event) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("audit event: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
