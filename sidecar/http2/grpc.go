package http2

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// maxGRPCSizes bounds GRPCInfo.Sizes.
const maxGRPCSizes = 64

// isGRPC reports whether a content type is gRPC's (application/grpc,
// application/grpc+proto, …), not gRPC-Web's.
func isGRPC(ct string) bool {
	ct = strings.ToLower(ct)
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

// grpcCall names the service and method of a gRPC :path,
// "/package.Service/Method".
func grpcCall(path string) *event.GRPCInfo {
	g := &event.GRPCInfo{}
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if ok && svc != "" && method != "" && !strings.Contains(method, "/") {
		g.Service, g.Method = svc, method
	}
	return g
}

// grpcStatus reads grpc-status and grpc-message from the trailers, or from
// the headers of a trailers-only response.
func grpcStatus(resp *http.Response) *event.GRPCInfo {
	g := &event.GRPCInfo{}
	for _, h := range []http.Header{resp.Trailer, resp.Header} {
		s := h.Get("Grpc-Status")
		if s == "" {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil {
			g.Status = &n
		}
		msg := h.Get("Grpc-Message")
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
		g.Message = msg
		break
	}
	return g
}

// grpcFrames follows gRPC's length-prefixed message framing (one flag
// byte, a big-endian uint32 length, the message) across arbitrary writes,
// counting messages and noting their sizes; it never keeps a message.
type grpcFrames struct {
	hdr   [5]byte
	nhdr  int
	left  int64 // message bytes still to skip
	count int64
	sizes []int64
}

// feed consumes the next bytes of a body.
func (g *grpcFrames) feed(p []byte) {
	for len(p) > 0 {
		if g.left > 0 {
			k := min(g.left, int64(len(p)))
			g.left -= k
			p = p[k:]
			continue
		}
		k := copy(g.hdr[g.nhdr:], p)
		g.nhdr += k
		p = p[k:]
		if g.nhdr < len(g.hdr) {
			return
		}
		g.nhdr = 0
		size := int64(binary.BigEndian.Uint32(g.hdr[1:]))
		g.left = size
		g.count++
		if len(g.sizes) < maxGRPCSizes {
			g.sizes = append(g.sizes, size)
		}
	}
}

// fill copies the counts into info.
func (g *grpcFrames) fill(info *event.GRPCInfo) {
	if info == nil {
		return
	}
	info.Messages = g.count
	info.Sizes = append([]int64(nil), g.sizes...)
	if len(info.Sizes) == 0 {
		info.Sizes = nil
	}
}
