package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// MaxPayload is the largest message the embedded server accepts. Events are
// capped far lower (event.MaxSize); the headroom lets oversize messages reach
// the server so it can dead-letter them instead of producers failing blind.
const MaxPayload = 8 << 20

// ErrNotReady is returned when the embedded server does not accept
// connections in time.
var ErrNotReady = errors.New("embedded nats not ready")

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Addr is "host:port" to listen on; port 0 picks a free port.
	Addr string
	// StoreDir holds the JetStream data; it is created if missing.
	StoreDir string
	// Logger receives the server's own log lines. Nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
	// Auth, when set, makes clients authenticate: Auth.User with its
	// password, everyone else through the auth callout. Nil leaves the
	// server open, as tests on loopback want it.
	Auth *EmbeddedAuth
}

// EmbeddedAuth is the authentication of the embedded server.
type EmbeddedAuth struct {
	// User and Password are the server's own user: full rights in the
	// global account, and the user that answers the auth callout.
	User     string
	Password string
	// CalloutIssuer is the public account nkey that signs the callout's
	// answers (see pkg/natsauth).
	CalloutIssuer string
}

// calloutTimeout is how long a client's connect may wait for the callout:
// verifying a token can fetch the issuer's key set.
const calloutTimeout = 10 * time.Second

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream in process and waits
// until it accepts connections.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: no store dir")
	}
	host, portStr, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: address %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded nats: bad port in %q", o.Addr)
	}
	if port == 0 {
		// For nats-server, 0 means its default port 4222; -1 is "any".
		port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: store dir: %w", err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := &server.Options{
		ServerName: "chaperone-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		MaxPayload: MaxPayload,
		NoSigs:     true,
		// No HTTP monitoring, clustering, leafnodes or websockets: the
		// embedded server serves this machine's producers and nothing else.
		HTTPPort: 0,
	}
	if a := o.Auth; a != nil {
		if a.User == "" || a.Password == "" || a.CalloutIssuer == "" {
			return nil, errors.New("embedded nats: auth needs a user, a password and a callout issuer")
		}
		opts.Users = []*server.User{{Username: a.User, Password: a.Password}}
		opts.AuthCallout = &server.AuthCallout{Issuer: a.CalloutIssuer, AuthUsers: []string{a.User}}
		opts.AuthTimeout = calloutTimeout.Seconds()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(&slogAdapter{l: logger.With(slog.String("component", "nats-server"))}, false, false, false)
	srv.Start()

	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w after %s on %s", ErrNotReady, timeout, o.Addr)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("%w: jetstream not enabled", ErrNotReady)
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the nats:// URL clients connect to, with the real port.
func (e *Embedded) ClientURL() string {
	if a, ok := e.srv.Addr().(*net.TCPAddr); ok {
		return "nats://" + net.JoinHostPort(hostFor(a.IP), strconv.Itoa(a.Port))
	}
	return e.srv.ClientURL()
}

// hostFor turns the listen address into one a client can dial: an
// unspecified listen address is reached over loopback.
func hostFor(ip net.IP) string {
	if ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return ip.String()
}

// Shutdown stops the server, waiting for it until ctx is done.
func (e *Embedded) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("embedded nats shutdown: %w", ctx.Err())
	}
}

// slogAdapter routes nats-server logging into slog.
type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
