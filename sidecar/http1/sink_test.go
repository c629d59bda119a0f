package http1

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// memSink records into memory, in call order.
type memSink struct {
	mu    sync.Mutex
	order []string // "blob", "req", "resp"
	blobs map[string][]byte
	reqs  []*event.HTTPRequest
	resps []*event.HTTPResponse
}

func (s *memSink) Blob(_ context.Context, ref string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs == nil {
		s.blobs = map[string][]byte{}
	}
	s.blobs[ref] = append([]byte(nil), data...)
	s.order = append(s.order, "blob")
	return nil
}

func (s *memSink) Request(_ context.Context, _ time.Time, r *event.HTTPRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	s.order = append(s.order, "req")
	return nil
}

func (s *memSink) Response(_ context.Context, _ time.Time, r *event.HTTPResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resps = append(s.resps, r)
	s.order = append(s.order, "resp")
	return nil
}

// relayTo starts a loopback listener that relays every accepted connection
// to upstream through r, recording into sink. It returns the listener's
// address and a channel that receives each connection's Stats.
func relayTo(t *testing.T, r *Recorder, upstream string, sink Sink) (string, <-chan Stats) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan Stats, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", upstream)
				if err != nil {
					t.Error(err)
					return
				}
				defer u.Close()
				out <- r.Relay(t.Context(), Pair{Client: c.(*net.TCPConn), Upstream: u.(*net.TCPConn)}, sink)
			}()
		}
	}()
	return ln.Addr().String(), out
}
