package sniff

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func pgMsg(length, code uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, length)
	binary.BigEndian.PutUint32(b[4:], code)
	return b
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Protocol
		more bool
	}{
		{"empty", "", TCP, true},
		{"get", "GET / HTTP/1.1\r\n", HTTP1, false},
		{"get prefix", "GE", TCP, true},
		{"get space only", "GET ", TCP, true},
		{"post absolute", "POST http://x/ HTTP/1.1\r\n", HTTP1, false},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\n", HTTP1, false},
		{"lowercase", "get / HTTP/1.1\r\n", TCP, false},
		{"method without space", "GETX / HTTP/1.1", TCP, false},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP2, false},
		{"h2 partial", "PRI * HTTP", TCP, true},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc", TLS, false},
		{"tls partial", "\x16\x03", TCP, true},
		{"tls wrong version", "\x16\x02\x01\x02\x00\x01", TCP, false},
		{"tls not hello", "\x16\x03\x03\x00\x10\x02", TCP, false},
		{"pg ssl", string(pgMsg(8, pgSSLRequest)), Postgres, false},
		{"pg gss", string(pgMsg(8, pgGSSRequest)), Postgres, false},
		{"pg startup", string(pgMsg(41, pgProtocol3)), Postgres, false},
		{"pg cancel", string(pgMsg(16, pgCancel)), Postgres, false},
		{"pg partial", "\x00\x00\x00", TCP, true},
		{"pg bad code", string(pgMsg(8, 12345)), TCP, false},
		{"ssh", "SSH-2.0-OpenSSH_9.2\r\n", TCP, false},
		{"binary", "\xff\xfe\x00", TCP, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, more := Classify([]byte(tt.in))
			if got != tt.want || more != tt.more {
				t.Errorf("Classify(%q) = %s, %v; want %s, %v", tt.in, got, more, tt.want, tt.more)
			}
		})
	}
}

// clientHello captures the first flight of a real crypto/tls client.
func clientHello(t testing.TB, sni string, alpn []string, groups ...tls.CurveID) []byte {
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, CurvePreferences: groups, InsecureSkipVerify: true})
		_ = tc.Handshake()
		c.Close()
	}()
	var buf bytes.Buffer
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	buf.Write(hdr)
	buf.Write(body)
	return buf.Bytes()
}

func TestParseClientHello(t *testing.T) {
	hello := clientHello(t, "api.example.com", []string{"h2", "http/1.1"})
	h, ok := ParseClientHello(hello)
	if !ok {
		t.Fatal("real ClientHello not parsed")
	}
	if h.SNI != "api.example.com" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) {
		t.Errorf("got %+v", h)
	}
	if _, ok := ParseClientHello(hello[:len(hello)-1]); ok {
		t.Error("truncated ClientHello accepted")
	}
	// The groups in the order sent (crypto/tls picks it, whatever the
	// order of CurvePreferences).
	h, ok = ParseClientHello(clientHello(t, "a.example", nil, tls.CurveP256, tls.X25519))
	if !ok || !slices.Equal(h.Groups, []uint16{uint16(tls.X25519), uint16(tls.CurveP256)}) {
		t.Errorf("groups %v, ok %v", h.Groups, ok)
	}
}

// TestPeek runs Peek against a loopback TCP connection.
func TestPeek(t *testing.T) {
	hello := clientHello(t, "db.internal", nil)
	tests := []struct {
		name   string
		send   [][]byte
		close  bool
		want   Protocol
		sni    string
		eof    bool
		prefix int
	}{
		{name: "http", send: [][]byte{[]byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")}, want: HTTP1, prefix: 28},
		{name: "http split", send: [][]byte{[]byte("GE"), []byte("T / HTTP/1.0\r\n\r\n")}, want: HTTP1, prefix: 18},
		{name: "tls split", send: [][]byte{hello[:3], hello[3:20], hello[20:]}, want: TLS, sni: "db.internal", prefix: len(hello)},
		{name: "server first", send: nil, want: TCP},
		{name: "closed", send: nil, close: true, want: TCP, eof: true},
		{name: "short then close", send: [][]byte{[]byte("GE")}, close: true, want: TCP, eof: true, prefix: 2},
		{name: "pg", send: [][]byte{pgMsg(8, pgSSLRequest)}, want: Postgres, prefix: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			go func() {
				for _, b := range tt.send {
					_, _ = client.Write(b)
				}
				if tt.close {
					_ = client.(*net.TCPConn).CloseWrite()
				}
			}()
			res, err := Peek(t.Context(), server, Options{Timeout: 200 * time.Millisecond, MoreTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Protocol != tt.want || res.Hello.SNI != tt.sni || res.EOF != tt.eof || len(res.Prefix) != tt.prefix {
				t.Errorf("got proto=%s sni=%q eof=%v prefix=%d; want %s %q %v %d",
					res.Protocol, res.Hello.SNI, res.EOF, len(res.Prefix), tt.want, tt.sni, tt.eof, tt.prefix)
			}
			// The connection is usable afterwards and Reader replays.
			if _, err := client.Write([]byte("!")); err != nil && !tt.close {
				t.Fatal(err)
			}
			if !tt.close {
				r := res.Reader(server)
				got := make([]byte, len(res.Prefix)+1)
				if _, err := io.ReadFull(r, got); err != nil {
					t.Fatal(err)
				}
				if got[len(got)-1] != '!' {
					t.Errorf("replay ended with %q", got[len(got)-1])
				}
			}
		})
	}
}

func TestPeekCancel(t *testing.T) {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan Result)
	go func() {
		res, _ := Peek(ctx, s, Options{})
		done <- res
	}()
	cancel()
	if res := <-done; res.Protocol != TCP || len(res.Prefix) != 0 {
		t.Errorf("got %+v", res)
	}
	// No deadline is left behind.
	go func() { _, _ = c.Write([]byte("x")) }()
	b := make([]byte, 1)
	if _, err := s.Read(b); err != nil {
		t.Fatalf("read after cancelled Peek: %v", err)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte(h2Preface))
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"))
	f.Add(pgMsg(8, pgSSLRequest))
	f.Add([]byte("SSH-2.0-x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, more := Classify(data)
		if p != TCP && more {
			t.Fatalf("decided %s but asks for more", p)
		}
		if p != TCP {
			// A decision never changes with more data.
			if q, _ := Classify(append(slices.Clone(data), 'x', 0)); q != p {
				t.Fatalf("%s became %s with more data", p, q)
			}
		}
	})
}

// rawHello builds a ClientHello record around hand-made extension bytes,
// for edge cases a real TLS stack never sends.
func rawHello(exts []byte) []byte {
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // one cipher suite
	body = append(body, 1, 0)                // null compression
	if exts != nil {
		body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
		body = append(body, exts...)
	}
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// ext encodes one extension.
func ext(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// vec16 prefixes data with its 16-bit length.
func vec16(data ...byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(data))), data...)
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "example.com", []string{"h2"}))
	f.Add(clientHello(f, "", []string{"h2", "http/1.1", "acme-tls/1"})) // no SNI
	f.Add(clientHello(f, strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+".example", nil))
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x00\x00"))
	f.Add(rawHello(nil)) // no extensions at all
	f.Add(rawHello([]byte{}))
	// SNI: an unknown name type before host_name, an empty list, a name
	// longer than its list, two SNI extensions.
	f.Add(rawHello(ext(0, vec16(append([]byte{7, 0, 1, 'x', 0}, vec16('a', '.', 'b')...)...))))
	f.Add(rawHello(ext(0, vec16())))
	f.Add(rawHello(ext(0, []byte{0, 5, 0, 0, 9, 'a'})))
	f.Add(rawHello(append(ext(0, vec16(append([]byte{0}, vec16('a')...)...)), ext(0, vec16(append([]byte{0}, vec16('b')...)...))...)))
	// ALPN: an empty protocol name, a name longer than the list, an empty list.
	f.Add(rawHello(ext(16, vec16(0, 2, 'h', '2'))))
	f.Add(rawHello(ext(16, vec16(9, 'h', '2'))))
	f.Add(rawHello(ext(16, vec16())))
	// Groups: an odd length, a list longer than the extension.
	f.Add(rawHello(ext(10, vec16(0, 29, 0))))
	f.Add(rawHello(ext(10, []byte{0, 9, 0, 29})))
	// An extension whose length runs past the block.
	f.Add(rawHello([]byte{0, 16, 0, 40, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := ParseClientHello(data)
		if !ok && (h.SNI != "" || h.ALPN != nil) && len(data) < 5 {
			t.Fatal("data too short but fields set")
		}
		if len(h.SNI) > len(data) {
			t.Fatalf("SNI of %d bytes from %d bytes of input", len(h.SNI), len(data))
		}
		if ok {
			// Only the first record counts: what follows changes nothing.
			h2, ok2 := ParseClientHello(append(slices.Clone(data), 0x17, 0x03, 0x03, 0, 1, 'x'))
			if !ok2 || h2.SNI != h.SNI || !slices.Equal(h2.ALPN, h.ALPN) || !slices.Equal(h2.Groups, h.Groups) {
				t.Fatalf("trailing bytes changed the result: %+v/%v, then %+v/%v", h, ok, h2, ok2)
			}
		}
	})
}

func TestParseClientHelloEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		sni    string
		alpn   []string
		groups []uint16
		wantOK bool
	}{
		{"no extensions", rawHello(nil), "", nil, nil, true},
		{"unknown name type first", rawHello(ext(0, vec16(append([]byte{7, 0, 1, 'x', 0}, vec16('a', '.', 'b')...)...))), "a.b", nil, nil, true},
		{"empty sni list", rawHello(ext(0, vec16())), "", nil, nil, true},
		{"empty alpn name", rawHello(ext(16, vec16(0, 2, 'h', '2'))), "", []string{"", "h2"}, nil, true},
		{"alpn name past its list", rawHello(ext(16, vec16(9, 'h', '2'))), "", nil, nil, true},
		{"groups", rawHello(ext(10, vec16(0x11, 0xec, 0, 29))), "", nil, []uint16{4588, 29}, true},
		{"group cut short", rawHello(ext(10, vec16(0, 29, 0))), "", nil, []uint16{29}, true},
		{"groups past their list", rawHello(ext(10, []byte{0, 9, 0, 29})), "", nil, nil, true},
		{"extension past the block", rawHello([]byte{0, 16, 0, 40, 0}), "", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := ParseClientHello(tt.data)
			if ok != tt.wantOK || h.SNI != tt.sni || !slices.Equal(h.ALPN, tt.alpn) || !slices.Equal(h.Groups, tt.groups) {
				t.Errorf("got %+v ok=%v, want sni %q alpn %q groups %v ok=%v", h, ok, tt.sni, tt.alpn, tt.groups, tt.wantOK)
			}
		})
	}
}
