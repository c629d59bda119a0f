package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tapSink is a memSink that taps upgraded connections.
type tapSink struct {
	memSink
	mu       sync.Mutex
	upgrades []*Upgrade
	tap      *memTap
	decline  bool
}

func (s *tapSink) Upgraded(_ context.Context, u *Upgrade) Tap {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upgrades = append(s.upgrades, u)
	if s.decline {
		return nil
	}
	s.tap = &memTap{sink: s}
	return s.tap
}

type memTap struct {
	sink           *tapSink
	mu             sync.Mutex
	client, server bytes.Buffer
	closed         int
	early          bool // bytes arrived before the 101 was recorded
}

func (m *memTap) seen() {
	m.sink.memSink.mu.Lock()
	defer m.sink.memSink.mu.Unlock()
	if len(m.sink.resps) == 0 {
		m.early = true
	}
}

func (m *memTap) ClientBytes(p []byte) {
	m.seen()
	m.mu.Lock()
	m.client.Write(p)
	m.mu.Unlock()
}

func (m *memTap) ServerBytes(p []byte) {
	m.seen()
	m.mu.Lock()
	m.server.Write(p)
	m.mu.Unlock()
}

func (m *memTap) Close() {
	m.mu.Lock()
	m.closed++
	m.mu.Unlock()
}

// TestUpgradeTap checks that a sink implementing UpgradeSink sees the
// request and response of a 101, then exactly the bytes each side sent
// after the heads (also those the client sent before the 101 arrived),
// after the 101's record, and that the tap is closed once.
func TestUpgradeTap(t *testing.T) {
	const (
		reqHead  = "GET /api/v1/namespaces/x/pods/p/exec?command=sh HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
		early    = "\x82\x06\x00early"
		late     = "\x82\x05\x00late"
		respHead = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
		down     = "\x82\x04\x01out\x82\x02\x03{"
	)
	for _, decline := range []bool{false, true} {
		name := "tapped"
		if decline {
			name = "declined"
		}
		t.Run(name, func(t *testing.T) {
			gotUp := make(chan []byte, 1)
			up := scripted(t, func(c net.Conn, br *bufio.Reader) {
				head := make([]byte, len(reqHead)+len(early))
				_, _ = io.ReadFull(br, head)
				_, _ = io.WriteString(c, respHead+down)
				rest, _ := io.ReadAll(br)
				gotUp <- append(head, rest...)
			})
			sink := &tapSink{decline: decline}
			addr, stats := relayTo(t, New(Options{PairWait: 5 * time.Second}), up, sink)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, reqHead+early); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			got := make([]byte, len(respHead)+len(down))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != respHead+down {
				t.Fatalf("client got %q", got)
			}
			if _, err := io.WriteString(c, late); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			_, _ = io.ReadAll(br)
			st := <-stats
			if !st.Upgraded || st.ParseErr != nil {
				t.Errorf("stats %+v", st)
			}
			if u := <-gotUp; string(u) != reqHead+early+late {
				t.Errorf("upstream got %q", u)
			}
			if len(sink.upgrades) != 1 {
				t.Fatalf("Upgraded called %d times", len(sink.upgrades))
			}
			u := sink.upgrades[0]
			if u.Method != "GET" || u.Stream != 1 || u.Host != "a" || u.Target != "/api/v1/namespaces/x/pods/p/exec?command=sh" ||
				u.Response.Get("Sec-WebSocket-Protocol") != "v5.channel.k8s.io" || u.Request.Get("Upgrade") != "websocket" {
				t.Errorf("upgrade %+v", u)
			}
			if decline {
				return
			}
			tp := sink.tap
			if tp.client.String() != early+late || tp.server.String() != down {
				t.Errorf("tap saw client %q server %q", tp.client.String(), tp.server.String())
			}
			if tp.closed != 1 {
				t.Errorf("tap closed %d times", tp.closed)
			}
			if tp.early {
				t.Error("tap saw bytes before the 101 was recorded")
			}
		})
	}
}
