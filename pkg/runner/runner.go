package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
	"github.com/chaperone-dev/chaperone/sidecar/certs"
)

// Defaults shared with the pod's sidecar (see the webhook's injection).
const (
	DefaultProxyPort = 15001
	DefaultAdminPort = 15020
	DefaultProxyUID  = 15137
)

// Log keys.
const (
	logKeySession = "session"
	logKeyPath    = "path"
	logKeyError   = "error"
)

// Options configure Run.
type Options struct {
	// Command is the program and its arguments.
	Command []string
	// Env is added to the command's environment.
	Env []string
	// NATSURL is the NATS the server ingests from, as seen from the host.
	NATSURL string
	// SidecarPath is the chaperone-sidecar binary; empty looks next to the
	// running executable, then in PATH.
	SidecarPath string
	// Session is the session id; empty generates one.
	Session string
	// User is the human the session is recorded for.
	User string
	// SidecarArgs are extra flags for `chaperone-sidecar proxy`.
	SidecarArgs []string
	// Token, when set, gives the session's NATS token, which the sidecar
	// presents to the server's auth callout; it is fetched again while the
	// run lasts. Nil connects without one.
	Token TokenFunc
	// ExtraCA are PEM files of roots the sidecar trusts upstream besides
	// the system's (--extra-ca); they are copied where the sidecar's UID
	// can read them.
	ExtraCA []string
	// Sandbox, when set, is used instead of a fresh one (and not closed).
	Sandbox *sandbox.Sandbox
	// SpoolDir holds the sidecar's spool; empty uses a directory under
	// os.TempDir that is removed when the spool drained.
	SpoolDir string
	// ReadyTimeout bounds the wait for the sidecar; default 15 s.
	ReadyTimeout time.Duration
	// DrainTimeout bounds the sidecar's flush at the end; default 60 s.
	DrainTimeout time.Duration

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// SidecarLog receives the sidecar's log output; nil discards it.
	SidecarLog io.Writer
	Logger     *slog.Logger
	// Started, when set, is called once the sidecar is ready and before the
	// command starts.
	Started func(Started)
	// Policy, when set, is SessionPolicy YAML for this session alone: the
	// server (through Policies) compiles it and puts it in its distribution
	// bucket under the session's key before the sidecar starts (which waits
	// for it); it is withdrawn after the run.
	Policy []byte
	// Policies distributes Policy; required with it.
	Policies PolicyPublisher
}

// Started describes a ready sidecar, for Options.Started.
type Started struct {
	Session    string
	Sandbox    *sandbox.Sandbox
	SidecarPID int
	// TrustDir holds the sidecar's CA and trust bundle (certs.CAFile,
	// certs.BundleFile); the command's CA variables point there.
	TrustDir string
}

// Result is what Run reports.
type Result struct {
	Session  string
	ExitCode int
	// HostIP is the host side of the sandbox's veth: the address at which
	// the command reaches services on the host.
	HostIP netip.Addr
}

// ErrSidecar reports that the sidecar did not start or did not drain.
var ErrSidecar = errors.New("sidecar")

func (o *Options) defaults() error {
	if len(o.Command) == 0 {
		return errors.New("no command to run")
	}
	if o.NATSURL == "" {
		return errors.New("no NATS URL for the sidecar")
	}
	if o.Session == "" {
		o.Session = uuid.NewString()
	}
	if o.SidecarPath == "" {
		p, err := findSidecar()
		if err != nil {
			return err
		}
		o.SidecarPath = p
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SidecarLog == nil {
		o.SidecarLog = io.Discard
	}
	return nil
}

func findSidecar() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "chaperone-sidecar")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("chaperone-sidecar")
	if err != nil {
		return "", fmt.Errorf("chaperone-sidecar is neither next to this binary nor in PATH: %w", err)
	}
	return p, nil
}

// Run runs opts.Command behind a sidecar and returns when the command ended
// and the sidecar flushed every event to NATS. A non-zero exit status of the
// command is not an error: it is in Result.ExitCode.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	if err := opts.defaults(); err != nil {
		return res, err
	}
	log := opts.Logger.With(logKeySession, opts.Session)
	res.Session = opts.Session

	sb := opts.Sandbox
	if sb == nil {
		sb, err = sandbox.New(ctx, sandbox.Options{Logger: opts.Logger})
		if err != nil {
			return res, fmt.Errorf("network namespace: %w", err)
		}
		defer sb.Close()
	}
	res.HostIP = sb.HostIP()

	if len(opts.Policy) > 0 {
		if opts.Policies == nil {
			return res, errors.New("a session policy needs Options.Policies to distribute it")
		}
		withdraw, err := putPolicy(ctx, opts.Policies, opts.Session, opts.Policy)
		if err != nil {
			return res, err
		}
		defer withdraw()
	}

	natsHost, err := hostPort(opts.NATSURL)
	if err != nil {
		return res, err
	}
	rl, err := startRelay(ctx, net.JoinHostPort(sb.HostIP().String(), "0"), natsHost, log)
	if err != nil {
		return res, fmt.Errorf("nats relay: %w", err)
	}
	defer rl.close()

	spool, cleanSpool, err := prepareSpool(opts.SpoolDir, opts.Session)
	if err != nil {
		return res, err
	}

	tlsDir, trustArgs, err := prepareTrust(opts.Session, opts.ExtraCA)
	if err != nil {
		return res, err
	}
	defer func() {
		if err := os.RemoveAll(tlsDir); err != nil {
			log.Warn("remove trust dir", logKeyPath, tlsDir, logKeyError, err)
		}
		_ = os.Remove(filepath.Dir(tlsDir)) // the run's dir, if now empty
	}()
	opts.SidecarArgs = append(trustArgs, opts.SidecarArgs...)
	trustDir := filepath.Join(tlsDir, "trust")
	if opts.Token != nil {
		tokenArgs, err := writeToken(ctx, tlsDir, opts.Session, opts.Token)
		if err != nil {
			return res, err
		}
		opts.SidecarArgs = append(tokenArgs, opts.SidecarArgs...)
		rctx, stopRefresh := context.WithCancel(ctx)
		defer stopRefresh()
		go refreshToken(rctx, filepath.Join(tlsDir, tokenFileName), opts.Session, opts.Token, log)
	}

	staged, cleanBin, err := stageSidecar(opts.SidecarPath, opts.Session)
	if err != nil {
		return res, err
	}
	defer cleanBin()
	opts.SidecarPath = staged

	if err := runInit(ctx, sb, opts); err != nil {
		return res, err
	}

	sidecar, control, err := startSidecar(ctx, sb, opts, "nats://"+rl.addr(), spool)
	if err != nil {
		return res, err
	}
	defer control.Close()
	// exited is closed when the sidecar ended; waitErr is its status.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = sidecar.Wait(); close(exited) }()
	stopSidecar := func() error {
		_ = sidecar.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if waitErr != nil {
				return fmt.Errorf("%w: exited: %w", ErrSidecar, waitErr)
			}
			return nil
		case <-time.After(opts.DrainTimeout):
			_ = sidecar.Process.Kill()
			<-exited
			return fmt.Errorf("%w: did not drain within %s; unsent events stay in %s", ErrSidecar, opts.DrainTimeout, spool)
		}
	}

	admin := "http://" + net.JoinHostPort(sb.NSIP().String(), strconv.Itoa(DefaultAdminPort))
	if err := waitReady(ctx, admin+"/readyz", opts.ReadyTimeout, exited); err != nil {
		_ = stopSidecar()
		return res, err
	}
	if opts.Started != nil {
		opts.Started(Started{Session: opts.Session, Sandbox: sb, SidecarPID: sidecar.Process.Pid, TrustDir: trustDir})
	}

	code, cmdErr := runCommand(ctx, sb, opts, trustDir)
	res.ExitCode = code
	// The control pipe tells the sidecar the command's exit status for the
	// session.end event; only this process holds its write end.
	if _, err := fmt.Fprintf(control, "exit %d\n", code); err != nil {
		log.Warn("tell the sidecar the exit status", logKeyError, err)
	}
	_ = control.Close()
	if err := stopSidecar(); err != nil {
		return res, errors.Join(cmdErr, err)
	}
	if cmdErr != nil {
		return res, cmdErr
	}
	cleanSpool(log)
	return res, nil
}

func hostPort(natsURL string) (string, error) {
	s := strings.TrimPrefix(natsURL, "nats://")
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("nats url %q: %w", natsURL, err)
	}
	return s, nil
}

func prepareSpool(dir, session string) (string, func(*slog.Logger), error) {
	own := dir == ""
	if own {
		dir = filepath.Join(os.TempDir(), "chaperone-run", session, "spool")
	}
	// The parents must be searchable by the sidecar's UID; the spool
	// itself is private to it.
	//nolint:gosec // searchable, not readable: the sidecar's UID must reach its spool
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return "", nil, fmt.Errorf("spool dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, fmt.Errorf("spool dir: %w", err)
	}
	if err := os.Chown(dir, DefaultProxyUID, DefaultProxyUID); err != nil {
		return "", nil, fmt.Errorf("spool dir: %w", err)
	}
	clean := func(log *slog.Logger) {
		if !own {
			return
		}
		if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
			log.Warn("remove spool dir", logKeyPath, dir, logKeyError, err)
		}
	}
	return dir, clean, nil
}

// prepareTrust makes the run's TLS directory: trust/, where the sidecar
// writes its CA and the bundle (owned by the sidecar's UID, readable by
// all), and copies of the extra CA files the sidecar's UID can read. It
// returns the directory and the sidecar flags that name them.
func prepareTrust(session string, extraCA []string) (string, []string, error) {
	dir := filepath.Join(os.TempDir(), "chaperone-run", session, "tls")
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return "", nil, fmt.Errorf("trust dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, fmt.Errorf("trust dir: %w", err)
	}
	trust := filepath.Join(dir, "trust")
	if err := os.Mkdir(trust, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, fmt.Errorf("trust dir: %w", err)
	}
	if err := os.Chown(trust, DefaultProxyUID, DefaultProxyUID); err != nil {
		return "", nil, fmt.Errorf("trust dir: %w", err)
	}
	args := []string{"--trust-dir", trust}
	for i, f := range extraCA {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", nil, fmt.Errorf("extra ca: %w", err)
		}
		dst := filepath.Join(dir, fmt.Sprintf("extra-ca-%d.crt", i))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", nil, fmt.Errorf("extra ca: %w", err)
		}
		args = append(args, "--extra-ca", dst)
	}
	return dir, args, nil
}

func runInit(ctx context.Context, sb *sandbox.Sandbox, opts Options) error {
	cmd, err := sb.Command(ctx, sandbox.ExecOptions{
		Path:   opts.SidecarPath,
		Args:   []string{"init", "--proxy-port", strconv.Itoa(DefaultProxyPort), "--proxy-uid", strconv.Itoa(DefaultProxyUID), "--proxy-gid", strconv.Itoa(DefaultProxyUID)},
		Stdout: opts.SidecarLog,
		Stderr: opts.SidecarLog,
	})
	if err != nil {
		return fmt.Errorf("%w init: %w", ErrSidecar, err)
	}
	if err := sb.Start(cmd); err != nil {
		return fmt.Errorf("%w init: %w", ErrSidecar, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%w init: %w", ErrSidecar, err)
	}
	return nil
}

func startSidecar(ctx context.Context, sb *sandbox.Sandbox, opts Options, natsURL, spool string) (*exec.Cmd, *os.File, error) {
	uid := uint32(DefaultProxyUID)
	controlR, controlW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: control pipe: %w", ErrSidecar, err)
	}
	defer controlR.Close()
	args := append([]string{"proxy",
		"--control-stdin",
		"--session", opts.Session,
		"--origin", "run",
		"--listen", ":" + strconv.Itoa(DefaultProxyPort),
		"--admin-addr", net.JoinHostPort(sb.NSIP().String(), strconv.Itoa(DefaultAdminPort)),
		"--nats-url", natsURL,
		"--spool-dir", spool,
	}, opts.SidecarArgs...)
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CHAPERONE_USER=" + opts.User}
	// The sidecar outlives ctx's cancellation long enough to flush: it is
	// stopped with SIGTERM by Run, not killed by the context.
	cmd, err := sb.Command(context.WithoutCancel(ctx), sandbox.ExecOptions{
		Path: opts.SidecarPath, Args: args, Env: env, UID: &uid, GID: &uid,
		Stdin: controlR, Stdout: opts.SidecarLog, Stderr: opts.SidecarLog,
	})
	if err != nil {
		_ = controlW.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrSidecar, err)
	}
	if err := sb.Start(cmd); err != nil {
		_ = controlW.Close()
		return nil, nil, fmt.Errorf("%w: start: %w", ErrSidecar, err)
	}
	return cmd, controlW, nil
}

func waitReady(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("%w exited before it was ready (see its log)", ErrSidecar)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w not ready at %s within %s", ErrSidecar, url, timeout)
		}
	}
}

func runCommand(ctx context.Context, sb *sandbox.Sandbox, opts Options, trustDir string) (int, error) {
	env := append(os.Environ(),
		"CHAPERONE_SESSION="+opts.Session,
		"CHAPERONE_HOST_IP="+sb.HostIP().String(),
	)
	// The same CA variables the webhook gives agent containers; opts.Env
	// comes later and may override them.
	env = append(env, certs.Env(trustDir)...)
	env = append(env, opts.Env...)
	cmd, err := sb.Command(ctx, sandbox.ExecOptions{
		Path: opts.Command[0], Args: opts.Command[1:], Env: env, DropNetAdmin: true,
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr,
	})
	if err != nil {
		return 127, err
	}
	if err := sb.Start(cmd); err != nil {
		return 127, fmt.Errorf("start %s: %w", opts.Command[0], err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	default:
		return 1, fmt.Errorf("run %s: %w", opts.Command[0], err)
	}
}

// CurrentUser names the person running this process, for the session's
// identity: the user behind sudo if there is one.
func CurrentUser() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "root"
}
