package streams

import "encoding/binary"

// spdyDictionary is the zlib dictionary for SPDY/3 header blocks, from
// section 2.6.10.1 of the SPDY Protocol Draft 3: a list of header names and
// common values, each with a four-byte big-endian length, followed by
// status codes and common value fragments without lengths.
var spdyDictionary = func() []byte {
	words := []string{
		"options", "head", "post", "put", "delete", "trace", "accept",
		"accept-charset", "accept-encoding", "accept-language",
		"accept-ranges", "age", "allow", "authorization", "cache-control",
		"connection", "content-base", "content-encoding",
		"content-language", "content-length", "content-location",
		"content-md5", "content-range", "content-type", "date", "etag",
		"expect", "expires", "from", "host", "if-match",
		"if-modified-since", "if-none-match", "if-range",
		"if-unmodified-since", "last-modified", "location",
		"max-forwards", "pragma", "proxy-authenticate",
		"proxy-authorization", "range", "referer", "retry-after",
		"server", "te", "trailer", "transfer-encoding", "upgrade",
		"user-agent", "vary", "via", "warning", "www-authenticate",
		"method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
		"public", "set-cookie", "keep-alive", "origin",
	}
	tail := "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
		"203 Non-Authoritative Information" + "204 No Content" +
		"301 Moved Permanently" + "400 Bad Request" + "401 Unauthorized" +
		"403 Forbidden" + "404 Not Found" + "500 Internal Server Error" +
		"501 Not Implemented" + "503 Service Unavailable" +
		"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec " +
		"00:00:00 " + "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
		"chunked,text/html,image/png,image/jpg,image/gif," +
		"application/xml,application/xhtml+xml,text/plain," +
		"text/javascript,public" + "private" + "max-age=" +
		"gzip,deflate,sdch" + "charset=utf-8" + "charset=iso-8859-1," +
		"utf-,*,enq=0."
	var b []byte
	for _, w := range words {
		b = binary.BigEndian.AppendUint32(b, uint32(len(w)))
		b = append(b, w...)
	}
	return append(b, tail...)
}()
