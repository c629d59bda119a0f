// Package natstest starts the embedded NATS JetStream server for tests, on
// a random loopback port with a temporary store, and connects to it.
package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// Server is a running embedded server and a connection to it.
type Server struct {
	URL  string
	Conn *nats.Conn
	JS   jetstream.JetStream
}

// Start runs natsbus's embedded server for the test and connects to it;
// both are closed when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	ctx := tb.Context()
	emb, err := natsbus.StartEmbedded(ctx, natsbus.EmbeddedOptions{Addr: "127.0.0.1:0", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	nc, err := natsbus.Connect(ctx, emb.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return &Server{URL: emb.ClientURL(), Conn: nc, JS: js}
}
