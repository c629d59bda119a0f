package publish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// natsServer is an in-process nats-server with JetStream that can be
// stopped and started again on the same port and store directory.
type natsServer struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
	url  string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: -1}
	n.start()
	n.createStream()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      n.port,
		JetStream: true,
		StoreDir:  n.dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.srv = srv
	n.port = srv.Addr().(*net.TCPAddr).Port
	n.url = fmt.Sprintf("nats://127.0.0.1:%d", n.port)
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) createStream() {
	n.t.Helper()
	nc, js := n.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       natsbus.EventsStream,
		Subjects:   []string{natsbus.EventSubjectPrefix + ">", natsbus.BlobSubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		n.t.Fatal(err)
	}
}

func (n *natsServer) connect() (*nats.Conn, jetstream.JetStream) {
	n.t.Helper()
	nc, err := nats.Connect(n.url)
	if err != nil {
		n.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		n.t.Fatal(err)
	}
	return nc, js
}

// streamMsg is one stored message, reduced to what the tests check.
type streamMsg struct {
	subject string
	msgID   string
	blobRef string
	seq     uint64 // event Seq; 0 for blobs
	data    []byte
}

// readStream returns every message in the stream, in stream order, read
// with an ordered consumer.
func (n *natsServer) readStream(ctx context.Context) []streamMsg {
	n.t.Helper()
	nc, js := n.connect()
	defer nc.Close()
	st, err := js.Stream(ctx, natsbus.EventsStream)
	if err != nil {
		n.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		n.t.Fatal(err)
	}
	total := int(info.State.Msgs)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		n.t.Fatal(err)
	}
	var out []streamMsg
	for len(out) < total {
		batch, err := cons.Fetch(min(total-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			n.t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			sm := streamMsg{
				subject: m.Subject(),
				msgID:   m.Headers().Get(jetstream.MsgIDHeader),
				blobRef: m.Headers().Get(natsbus.BlobRefHeader),
				data:    m.Data(),
			}
			if strings.HasPrefix(sm.subject, natsbus.EventSubjectPrefix) {
				e, err := event.Decode(m.Data())
				if err != nil {
					n.t.Fatalf("stored event does not decode: %v", err)
				}
				if e.ID != sm.msgID {
					n.t.Fatalf("event %s stored with Nats-Msg-Id %s", e.ID, sm.msgID)
				}
				sm.seq = e.Seq
			}
			out = append(out, sm)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			n.t.Fatal(err)
		}
		if got == 0 {
			n.t.Fatalf("stream stalled after %d of %d messages", len(out), total)
		}
	}
	return out
}
