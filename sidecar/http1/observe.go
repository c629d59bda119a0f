package http1

import (
	"context"
	"net/http"
	"time"
)

// Observer is implemented by a Sink that decodes exchanges beyond their
// HTTP records (LLM APIs, MCP). Observe is called when a request's head
// was read, before its body; it returns nil to observe nothing more of
// that exchange. It must be cheap: it runs on the relay path.
type Observer interface {
	Observe(stream uint64, method, target, host string, h http.Header) Exchange
}

// Exchange observes one request and its response. The calls come in this
// order: RequestBody once the request was recorded, ResponseHead and
// ResponseBody as the response reaches the client, End once the response
// was recorded. A response that overtakes its request (sent before the
// request body ended) may start before RequestBody, so implementations
// guard their own state. End is not called when no response came.
type Exchange interface {
	// RequestBody gives the recorded first bytes of the request body (at
	// most BodyCap of its size bytes) and when the request started.
	RequestBody(ctx context.Context, start time.Time, recorded []byte, size int64)
	// ResponseHead gives the final response's status and header.
	ResponseHead(status int, h http.Header)
	// ResponseBody gives the next bytes of the response body, as they
	// reach the client. p must not be kept.
	ResponseBody(p []byte)
	// End says the response was recorded at end; errMsg says why it did
	// not complete, if it did not.
	End(ctx context.Context, end time.Time, errMsg string)
}

// observe returns the sink's Exchange for a request, or nil.
func observe(sink Sink, stream uint64, req *http.Request) Exchange {
	o, ok := sink.(Observer)
	if !ok {
		return nil
	}
	return o.Observe(stream, req.Method, req.RequestURI, req.Host, req.Header)
}

// observed feeds the bytes a capture is written on to an Exchange too.
type observed struct {
	*capture
	x Exchange
}

func (o observed) Write(p []byte) (int, error) {
	o.x.ResponseBody(p)
	return o.capture.Write(p)
}
