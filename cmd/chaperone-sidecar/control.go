package main

import (
	"bufio"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// controlWait bounds how long shutdown waits for the control pipe to close:
// `chaperonectl run` writes the exit status and closes it before SIGTERM.
const controlWait = 2 * time.Second

// control reads the control lines of --control-stdin.
type control struct {
	done chan struct{}
	code int
	set  bool
}

func readControl(r io.Reader, log *slog.Logger) *control {
	c := &control{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(io.LimitReader(r, 1<<16))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			v, ok := strings.CutPrefix(line, "exit ")
			if !ok {
				log.Warn("unknown control line", "line", line)
				continue
			}
			code, err := strconv.Atoi(v)
			if err != nil {
				log.Warn("bad exit status on control pipe", "line", line)
				continue
			}
			c.code, c.set = code, true
		}
	}()
	return c
}

// exitCode returns the command's exit status once the control pipe closed.
// A nil control has none.
func (c *control) exitCode() (int, bool) {
	if c == nil {
		return 0, false
	}
	select {
	case <-c.done:
		return c.code, c.set
	case <-time.After(controlWait):
		return 0, false
	}
}
