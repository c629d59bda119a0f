package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/asciicast"
	"github.com/chaperone-dev/chaperone/pkg/client"
	"github.com/chaperone-dev/chaperone/pkg/event"
)

// exportCast writes one exec/attach stream of a session as asciicast v2.
// Without a stream name it picks the session's only stream. It reads the
// session's events twice (header, then body) so memory stays bounded.
func exportCast(ctx context.Context, c *client.Client, w io.Writer, id, stream string) error {
	var streams []string
	err := c.Events(ctx, id, 0, func(e *event.Event) error {
		if asciicast.Terminal(e) && !slices.Contains(streams, e.StreamData.Stream) {
			streams = append(streams, e.StreamData.Stream)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case stream != "" && !slices.Contains(streams, stream):
		return fmt.Errorf("session %s has no stream %q (streams: %s)", id, stream, listOrNone(streams))
	case stream == "" && len(streams) == 0:
		return fmt.Errorf("session %s has no exec/attach streams", id)
	case stream == "" && len(streams) > 1:
		return fmt.Errorf("session %s has %d streams, pick one with --stream: %s", id, len(streams), listOrNone(streams))
	case stream == "":
		stream = streams[0]
	}
	info := &asciicast.Info{Stream: stream}
	if err := c.Events(ctx, id, 0, func(e *event.Event) error { info.Observe(e); return nil }); err != nil {
		return err
	}
	if !info.Found {
		return errors.New("stream " + stream + " vanished between reads")
	}
	enc, err := asciicast.NewEncoder(w, info, id+"/"+stream, func(ref string) ([]byte, error) { return c.SessionBlob(ctx, id, ref) })
	if err != nil {
		return err
	}
	if err := c.Events(ctx, id, 0, enc.Add); err != nil {
		return err
	}
	return enc.Close()
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
