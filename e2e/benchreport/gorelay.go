package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// The Go relay is the report's floor for any proxy written in Go on the
// machine that runs it: it copies bytes both ways (io.Copy, which splices
// in the kernel on Linux) and parses, gates and records nothing. What it
// adds over the direct path is what Go's runtime costs a relay here (a
// goroutine per direction, the netpoller, thread wake-ups), before the
// sidecar does any work of its own.

// goRelayArg is the first argument that makes benchreport run as the Go
// relay (a process of its own, so that its CPU is counted alone).
const goRelayArg = "go-relay"

// runGoRelay serves the relay: it listens on -listen, prints the address,
// and relays every connection to -target until it is killed.
func runGoRelay(args []string) error {
	fs := flag.NewFlagSet(goRelayArg, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	target := fs.String("target", "", "upstream address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relayConn(c.(*net.TCPConn), *target)
	}
}

func relayConn(c *net.TCPConn, target string) {
	defer c.Close()
	uc, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	u := uc.(*net.TCPConn)
	defer u.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, u)
	_ = c.CloseWrite()
	<-done
}

type goRelay struct {
	addr string
	pid  int
	stop func()
}

// startGoRelay runs this binary as the Go relay on ip, to upstream.
func startGoRelay(ctx context.Context, ip, upstream string) (*goRelay, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, goRelayArg, "-listen", net.JoinHostPort(ip, "0"), "-target", upstream)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			stop()
			return nil, errors.New("go relay did not start")
		}
		return &goRelay{addr: addr, pid: cmd.Process.Pid, stop: stop}, nil
	case <-time.After(10 * time.Second):
		stop()
		return nil, errors.New("go relay did not print its address")
	}
}
