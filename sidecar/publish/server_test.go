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
	// maxPayload, if set, is the server's max_payload.
	maxPayload int32
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	return startNATSWith(t, 0)
}

// startNATSWith starts a server whose max payload is maxPayload (0: the
// default).
func startNATSWith(t testing.TB, maxPayload int32) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: -1, maxPayload: maxPayload}
	n.start()
	n.createStream()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       n.port,
		JetStream:  true,
		StoreDir:   n.dir,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: n.maxPayload,
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

// streamMsg is one stored message, or one event of a stored batch, reduced
// to what the tests check.
type streamMsg struct {
	subject string
	msgID   string // the event's id for an event of a batch
	blobRef string
	seq     uint64 // event Seq; 0 for blobs
	data    []byte
	batch   int    // events in the message it came in; 0 for a blob
	first   bool   // the first event of its message
	message uint64 // stream sequence of the message it came in
}

// readStream returns every message in the stream, in stream order, read
// with an ordered consumer; a batch gives one streamMsg per event. It
// checks each batch's framing and Nats-Msg-Id.
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
	for read := 0; read < total; {
		batch, err := cons.Fetch(min(total-read, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			n.t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			out = append(out, n.splitMsg(m)...)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			n.t.Fatal(err)
		}
		if got == 0 {
			n.t.Fatalf("stream stalled after %d of %d messages", read, total)
		}
		read += got
	}
	return out
}

// splitMsg turns a stored message into streamMsgs.
func (n *natsServer) splitMsg(m jetstream.Msg) []streamMsg {
	n.t.Helper()
	md, err := m.Metadata()
	if err != nil {
		n.t.Fatal(err)
	}
	sm := streamMsg{
		subject: m.Subject(),
		msgID:   m.Headers().Get(jetstream.MsgIDHeader),
		blobRef: m.Headers().Get(natsbus.BlobRefHeader),
		data:    m.Data(),
		first:   true,
		message: md.Sequence.Stream,
	}
	if !strings.HasPrefix(sm.subject, natsbus.EventSubjectPrefix) {
		return []streamMsg{sm}
	}
	lines, err := natsbus.EventLines(m.Headers(), m.Data())
	if err != nil {
		n.t.Fatalf("stored batch %s: %v", sm.msgID, err)
	}
	count := m.Headers().Get(natsbus.EventsHeader)
	out := make([]streamMsg, len(lines))
	for i, l := range lines {
		e, err := event.Decode(l)
		if err != nil {
			n.t.Fatalf("stored event does not decode: %v", err)
		}
		out[i] = sm
		out[i].msgID, out[i].seq, out[i].data, out[i].batch, out[i].first = e.ID, e.Seq, l, len(lines), i == 0
		want := e.ID
		if count != "" {
			want = natsbus.BatchMsgID(e.ID, len(lines))
		}
		if i == 0 && sm.msgID != want {
			n.t.Fatalf("message of %d events stored with Nats-Msg-Id %s, want %s", len(lines), sm.msgID, want)
		}
	}
	return out
}

// distinct checks that every repeated event in msgs is the same event, and
// returns how many different ones there are. A resend grouped otherwise
// than the first sending passes JetStream's duplicate window; the server's
// store drops such copies.
func distinct(t testing.TB, msgs []streamMsg) int {
	t.Helper()
	seen := map[string][]byte{}
	for _, m := range msgs {
		if d, ok := seen[m.msgID]; ok {
			if string(d) != string(m.data) {
				t.Fatalf("message %s stored twice with different data", m.msgID)
			}
			continue
		}
		seen[m.msgID] = m.data
	}
	return len(seen)
}
