// Package localserver starts the chaperone-server binary as a child process
// on a data directory, waits until it is ready, and stops it: what the demo,
// `chaperonectl run` without a server, and the end-to-end tests need.
package localserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/client"
)

// Addresses is DATA_DIR/addresses.json as chaperone-server writes it.
type Addresses struct {
	HTTP string `json:"http"`
	NATS string `json:"nats"`
}

// ReadAddresses reads DATA_DIR/addresses.json.
func ReadAddresses(dataDir string) (Addresses, error) {
	var a Addresses
	b, err := os.ReadFile(filepath.Join(dataDir, "addresses.json"))
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("addresses.json: %w", err)
	}
	if a.HTTP == "" || a.NATS == "" {
		return a, errors.New("addresses.json: missing http or nats")
	}
	return a, nil
}

// Options configure Start.
type Options struct {
	// Binary is the chaperone-server executable.
	Binary string
	// DataDir is passed as --data-dir.
	DataDir string
	// Args are extra flags; --http-addr and --nats-addr default to
	// 127.0.0.1:0 unless given here.
	Args []string
	// Log receives the server's output; nil writes DataDir/server.log.
	Log io.Writer
	// ReadyTimeout defaults to 30 s.
	ReadyTimeout time.Duration
}

// Server is a running chaperone-server child process.
type Server struct {
	Addrs   Addresses
	cmd     *exec.Cmd
	exited  chan error
	stopped bool
	logFile *os.File
}

// Start starts the server and returns once /readyz answers 200.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(o.DataDir, "addresses.json"))
	args := []string{"--data-dir", o.DataDir, "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}
	args = append(args, o.Args...)
	cmd := exec.Command(o.Binary, args...)
	s := &Server{cmd: cmd, exited: make(chan error, 1)}
	if o.Log == nil {
		f, err := os.OpenFile(filepath.Join(o.DataDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		s.logFile, o.Log = f, f
	}
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if err := cmd.Start(); err != nil {
		s.closeLog()
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	go func() { s.exited <- cmd.Wait() }()
	deadline := time.Now().Add(o.ReadyTimeout)
	for {
		if a, err := ReadAddresses(o.DataDir); err == nil && ready(ctx, a.HTTP) {
			s.Addrs = a
			return s, nil
		}
		select {
		case err := <-s.exited:
			s.stopped = true
			s.closeLog()
			return nil, fmt.Errorf("chaperone-server exited before it was ready: %w (log in %s)", err, o.DataDir)
		case <-ctx.Done():
			_ = s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("chaperone-server not ready within %s", o.ReadyTimeout)
		}
	}
}

func ready(ctx context.Context, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 30 s, then kills. It is safe to call
// more than once.
func (s *Server) Stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	defer s.closeLog()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			return fmt.Errorf("chaperone-server: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited //nolint:errcheck // the kill is the answer; its exit status says nothing more
		return errors.New("chaperone-server did not stop within 30s")
	}
}

// Kill stops the server without letting it drain, as a crash would.
func (s *Server) Kill() {
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.exited //nolint:errcheck // killed on purpose: the exit status is known
	s.closeLog()
}

func (s *Server) closeLog() {
	if s.logFile != nil {
		_ = s.logFile.Close()
	}
}

// WorkloadToken asks the server for the NATS token of session, for
// runner.Options.Token: a sidecar presents it to the server's auth callout.
func (s *Server) WorkloadToken(ctx context.Context, session string) (string, error) {
	cl, err := client.New(s.Addrs.HTTP)
	if err != nil {
		return "", err
	}
	return cl.WorkloadToken(ctx, session)
}
