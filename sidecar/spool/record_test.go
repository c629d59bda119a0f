package spool

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"empty", Message{}},
		{"event", Message{Subject: "chaperone.events.s1", MsgID: "01HZX", Data: []byte(`{"v":1}`), Seq: 7}},
		{"blob", Message{Subject: "chaperone.blobs.s1", MsgID: "sha256:ab", Header: map[string]string{"Chaperone-Blob-Ref": "sha256:ab", "X": ""}, Data: bytes.Repeat([]byte{0xff}, 5000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := recordLen(&tt.m)
			if err != nil {
				t.Fatal(err)
			}
			b := appendRecord([]byte("prefix"), &tt.m)[len("prefix"):]
			if len(b) != n {
				t.Fatalf("framed %d bytes, recordLen said %d", len(b), n)
			}
			got, gn, err := DecodeRecord(append(b, "trailing"...))
			if err != nil {
				t.Fatal(err)
			}
			if gn != n {
				t.Errorf("decoded length %d, want %d", gn, n)
			}
			if !sameMessage(got, tt.m) {
				t.Errorf("decoded %+v, want %+v", got, tt.m)
			}
			for cut := range n {
				if _, _, err := DecodeRecord(b[:cut]); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("cut at %d: err %v, want truncated", cut, err)
				}
			}
			for i := range b {
				c := bytes.Clone(b)
				c[i] ^= 0x40
				if _, _, err := DecodeRecord(c); err == nil {
					t.Fatalf("flipped byte %d: decoded without error", i)
				}
			}
		})
	}
}

func TestRecordTooLarge(t *testing.T) {
	m := Message{Subject: string(make([]byte, maxField+1))}
	if _, err := recordLen(&m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	m = Message{Data: make([]byte, MaxRecordSize)}
	if _, err := recordLen(&m); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
}

func sameMessage(a, b Message) bool {
	if a.Subject != b.Subject || a.MsgID != b.MsgID || a.Seq != b.Seq || !bytes.Equal(a.Data, b.Data) || len(a.Header) != len(b.Header) {
		return false
	}
	for k, v := range a.Header {
		if w, ok := b.Header[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func FuzzDecodeRecord(f *testing.F) {
	valid := appendRecord(nil, &Message{Subject: "chaperone.events.s", MsgID: "id", Data: []byte("{}"), Seq: 1})
	blob := appendRecord(nil, &Message{Subject: "chaperone.blobs.s", MsgID: "r", Header: map[string]string{"K": "V"}, Data: []byte{0, 1, 2}})
	f.Add(valid)
	f.Add(blob)
	f.Add(append(bytes.Clone(valid), blob...))
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:5])
	corrupt := bytes.Clone(valid)
	corrupt[len(corrupt)-1] ^= 1
	f.Add(corrupt)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if n < frameHeaderLen+minBodyLen || n > len(b) {
			t.Fatalf("length %d out of range (input %d)", n, len(b))
		}
		// A record that decodes re-encodes to a record that decodes the
		// same (header order may differ, so compare messages).
		again, _, err := DecodeRecord(appendRecord(nil, &m))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !sameMessage(m, again) {
			t.Fatalf("round trip changed the message: %+v vs %+v", m, again)
		}
	})
}
