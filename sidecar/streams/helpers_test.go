package streams

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// collector gathers emitted events and renders them as a compact transcript
// in which consecutive data events of one stream and channel are merged, so
// a test's expectation does not depend on how the bytes were split.
type collector struct {
	evs []*event.StreamData
}

func (c *collector) emit(d *event.StreamData) { c.evs = append(c.evs, d) }

func (c *collector) transcript() []string {
	var out []string
	lastKey := ""
	for _, e := range c.evs {
		switch e.Channel {
		case ChannelResize:
			out = append(out, fmt.Sprintf("%s resize %dx%d", e.Stream, e.Width, e.Height))
			lastKey = ""
		case ChannelExit:
			s := fmt.Sprintf("%s exit", e.Stream)
			if e.Exit != nil {
				s += fmt.Sprintf(" %d", *e.Exit)
			}
			if e.Data != nil {
				s += " " + bodyString(e.Data)
			}
			out = append(out, s)
			lastKey = ""
		default:
			key := e.Stream + " " + e.Channel
			if key == lastKey {
				out[len(out)-1] += bodyString(e.Data)
				continue
			}
			out = append(out, key+" "+bodyString(e.Data))
			lastKey = key
		}
	}
	return out
}

func bodyString(b *event.Body) string {
	if b == nil {
		return ""
	}
	if b.B64 != nil {
		return "b64:" + base64.StdEncoding.EncodeToString(b.B64)
	}
	return b.Text
}

// feedSplit feeds p to f in pieces of the given size.
func feedSplit(f func([]byte), p []byte, size int) {
	for len(p) > 0 {
		n := min(size, len(p))
		f(p[:n])
		p = p[n:]
	}
}

func equalLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}
