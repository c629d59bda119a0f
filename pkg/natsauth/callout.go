package natsauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chaperone-dev/chaperone/pkg/auth"
)

// CalloutSubject is where a NATS server asks who a connecting client is.
const CalloutSubject = "$SYS.REQ.USER.AUTH"

// GlobalAccount is the account workloads are placed in by default: the
// one the embedded server keeps its streams in.
const GlobalAccount = "$G"

// Log keys.
const (
	logKeyReason   = "reason"
	logKeyClient   = "client"
	logKeyHost     = "host"
	logKeyWorkload = "workload"
	logKeySession  = "session"
	logKeyKind     = "kind"
	logKeyIssuer   = "issuer"
	logKeyExpires  = "expires"
)

// ErrUnknownIssuer refuses a token whose iss is none of the trusted ones.
var ErrUnknownIssuer = errors.New("token from an untrusted issuer")

// TokenVerifier checks a token's signature, audience and expiry;
// *auth.Verifier is one.
type TokenVerifier interface {
	Token(ctx context.Context, raw string) (*oidc.IDToken, error)
}

// Trusted is an issuer whose tokens the callout accepts.
type Trusted struct {
	// Issuer is the iss the tokens carry.
	Issuer   string
	Verifier TokenVerifier
}

// Options configure a Service.
type Options struct {
	// Conn is a connection as one of the callout's auth users: it receives
	// the callout requests. Required.
	Conn *nats.Conn
	// Signer is the account key whose public key the NATS server trusts as
	// the callout issuer. Required.
	Signer nkeys.KeyPair
	// Account is the account workloads are placed in; empty means
	// GlobalAccount.
	Account string
	// Trusted are the issuers accepted. Required.
	Trusted []Trusted
	// NodeAgents are the service accounts of node agents.
	NodeAgents []ServiceAccountRef
	// Logger receives one line per refusal and per grant (debug). Nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the callout's counter; nil leaves it unregistered.
	Registerer prometheus.Registerer
}

// verifyTimeout bounds one token check; it must stay below the server's
// auth timeout (natsbus: 10s) so the client hears the reason.
const verifyTimeout = 8 * time.Second

// maxConcurrent bounds callouts answered at once; more wait in NATS.
const maxConcurrent = 16

// Service answers the NATS auth callout for workloads.
type Service struct {
	opts    Options
	log     *slog.Logger
	signer  nkeys.KeyPair
	trusted map[string]TokenVerifier
	sub     *nats.Subscription
	total   *prometheus.CounterVec
	sem     chan struct{}
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// Start subscribes to CalloutSubject and answers until Stop.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Conn == nil || o.Signer == nil || len(o.Trusted) == 0 {
		return nil, errors.New("nats auth callout: connection, signer and trusted issuers are required")
	}
	if pub, err := o.Signer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("nats auth callout: signer is not an account key")
	}
	if o.Account == "" {
		o.Account = GlobalAccount
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		opts:    o,
		log:     o.Logger,
		signer:  o.Signer,
		trusted: make(map[string]TokenVerifier, len(o.Trusted)),
		sem:     make(chan struct{}, maxConcurrent),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chaperone_nats_auth_total",
			Help: "NATS connections the auth callout answered, by result (granted, refused) and workload kind.",
		}, []string{"result", "kind"}),
	}
	for _, t := range o.Trusted {
		if t.Issuer == "" || t.Verifier == nil {
			return nil, errors.New("nats auth callout: a trusted issuer without name or verifier")
		}
		s.trusted[t.Issuer] = t.Verifier
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.total); err != nil {
			return nil, fmt.Errorf("nats auth callout: metrics: %w", err)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	sub, err := o.Conn.Subscribe(CalloutSubject, s.receive)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("nats auth callout: subscribe: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := o.Conn.FlushWithContext(fctx); err != nil {
		_ = sub.Unsubscribe()
		s.cancel()
		return nil, fmt.Errorf("nats auth callout: subscribe: %w", err)
	}
	s.sub = sub
	issuers := make([]string, 0, len(o.Trusted))
	for _, t := range o.Trusted {
		issuers = append(issuers, t.Issuer)
	}
	s.log.Info("nats auth callout ready", slog.Any("issuers", issuers), slog.String("account", o.Account),
		slog.Int("node_agent_service_accounts", len(o.NodeAgents)))
	return s, nil
}

// Stop unsubscribes and waits for the answers in flight.
func (s *Service) Stop(ctx context.Context) error {
	err := s.sub.Unsubscribe()
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription) {
		err = nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("nats auth callout: %w", ctx.Err()))
	}
	if err != nil {
		return fmt.Errorf("nats auth callout: %w", err)
	}
	return nil
}

// receive hands a request to a goroutine: a token check may fetch a key
// set, and one slow issuer must not hold up every connect.
func (s *Service) receive(m *nats.Msg) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.sem }()
		s.answer(m)
	}()
}

// answer decides one request and responds. A request that cannot be read
// gets no answer: the server then refuses the client at its auth timeout.
func (s *Service) answer(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		s.log.Warn("nats auth callout: unreadable request", slog.Any(logKeyReason, err))
		return
	}
	client := req.ClientInformation
	log := s.log.With(slog.String(logKeyClient, client.Name), slog.String(logKeyHost, client.Host))
	userJWT, w, err := s.authorize(req)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if err != nil {
		s.total.WithLabelValues("refused", "").Inc()
		log.Warn("nats connection refused", slog.Any(logKeyReason, err))
		resp.Error = err.Error()
	} else {
		s.total.WithLabelValues("granted", string(w.Kind)).Inc()
		log.Info("nats connection granted", slog.String(logKeyWorkload, w.String()),
			slog.String(logKeySession, w.Session()), slog.String(logKeyKind, string(w.Kind)),
			slog.Time(logKeyExpires, w.Expiry))
		resp.Jwt = userJWT
	}
	enc, err := resp.Encode(s.signer)
	if err != nil {
		log.Error("nats auth callout: sign response", slog.Any(logKeyReason, err))
		return
	}
	if err := m.Respond([]byte(enc)); err != nil {
		log.Warn("nats auth callout: respond", slog.Any(logKeyReason, err))
	}
}

// authorize verifies the connect token and returns the user JWT to grant.
func (s *Service) authorize(req *jwt.AuthorizationRequestClaims) (string, Workload, error) {
	raw := req.ConnectOptions.Token
	if raw == "" {
		raw = req.ConnectOptions.Password
	}
	w, err := s.Verify(s.ctx, raw)
	if err != nil {
		return "", Workload{}, err
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = w.Subject + " pod " + w.Namespace + "/" + w.Pod
	uc.Audience = s.opts.Account
	uc.Permissions = Permissions(w)
	// The connection ends when the token does; the client reconnects with
	// the rotated token from its file.
	uc.Expires = w.Expiry.Unix()
	userJWT, err := uc.Encode(s.signer)
	if err != nil {
		return "", Workload{}, fmt.Errorf("sign user: %w", err)
	}
	return userJWT, w, nil
}

// Verify checks a workload token against the trusted issuers and returns
// the workload it speaks for. Errors wrap an auth.Err* reason,
// ErrUnknownIssuer, ErrNotBound or ErrClaims.
func (s *Service) Verify(ctx context.Context, raw string) (Workload, error) {
	if raw == "" {
		return Workload{}, fmt.Errorf("%w: connect without a token (want the service-account token as the NATS token)", auth.ErrNoToken)
	}
	iss, err := peekIssuer(raw)
	if err != nil {
		return Workload{}, err
	}
	v, ok := s.trusted[iss]
	if !ok {
		return Workload{}, fmt.Errorf("%w: %q", ErrUnknownIssuer, iss)
	}
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	tok, err := v.Token(vctx, raw)
	if err != nil {
		return Workload{}, fmt.Errorf("issuer %s: %w", iss, err)
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return Workload{}, fmt.Errorf("%w: %w", auth.ErrMalformed, err)
	}
	w, err := ParseWorkload(tok.Subject, payload, tok.Expiry, s.opts.NodeAgents)
	if err != nil {
		return Workload{}, fmt.Errorf("issuer %s: %w", iss, err)
	}
	return w, nil
}

// peekIssuer reads iss from an unverified token to pick its verifier; the
// verifier then checks everything, iss included.
func peekIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: want three dot-separated parts, got %d", auth.ErrMalformed, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: payload: %w", auth.ErrMalformed, err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%w: payload: %w", auth.ErrMalformed, err)
	}
	if c.Iss == "" {
		return "", fmt.Errorf("%w: no iss", auth.ErrMalformed)
	}
	return c.Iss, nil
}
