package http2

import (
	"net/http"
	"reflect"
)

// streamID returns the HTTP/2 stream id of the stream w answers.
//
// golang.org/x/net/http2 does not expose it, and the record needs the id
// the client sees (it pairs a request with its response, and names the
// stream of streamed chunks). Reading it takes a look at the unexported
// fields of the server's ResponseWriter (rws.stream.id); when they are
// not there, ok is false and the caller numbers streams itself.
func streamID(w http.ResponseWriter) (id uint64, ok bool) {
	defer func() {
		if recover() != nil {
			id, ok = 0, false
		}
	}()
	v := reflect.ValueOf(w)
	for _, name := range []string{"rws", "stream", "id"} {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return 0, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return 0, false
		}
		v = v.FieldByName(name)
		if !v.IsValid() {
			return 0, false
		}
	}
	switch v.Kind() {
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		return v.Uint(), v.Uint() != 0
	default:
		return 0, false
	}
}
