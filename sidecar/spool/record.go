package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record framing, little endian:
//
//	frame: u32 body length | u32 CRC32C(body) | body
//	body:  u8 version | u64 seq | u16 len subject | subject | u16 len msgID | msgID |
//	       u16 header count | (u16 len key | key | u16 len value | value)* | data
const (
	frameHeaderLen = 8
	recordVersion  = 1
	// minBodyLen is version + seq + three u16 counts.
	minBodyLen = 1 + 8 + 2 + 2 + 2
	maxField   = 1<<16 - 1
)

// MaxRecordSize is the largest framed record a spool accepts.
const MaxRecordSize = 64 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by DecodeRecord, Append and Open. They are wrapped with
// detail; check them with errors.Is.
var (
	// ErrTruncated means the bytes end inside a record.
	ErrTruncated = errors.New("truncated record")
	// ErrCorrupt means a record's frame or checksum is wrong.
	ErrCorrupt = errors.New("corrupt record")
	// ErrFull means appending would take the spool over its MaxBytes.
	ErrFull = errors.New("spool full")
	// ErrTooLarge means a message cannot be framed as one record.
	ErrTooLarge = errors.New("message too large for spool")
	// ErrClosed is returned by a closed spool.
	ErrClosed = errors.New("spool closed")
)

// Message is one spooled message: what will be published to NATS, plus the
// producer sequence Seq, which is kept on disk (see Spool.LastSeq) but is not
// a header.
type Message struct {
	Subject string
	MsgID   string
	// Header holds extra NATS headers; usually nil.
	Header map[string]string
	Data   []byte
	// Seq is the producer's sequence for Subject, or 0.
	Seq uint64
}

// recordLen returns the framed size of m.
func recordLen(m *Message) (int, error) {
	if len(m.Subject) > maxField || len(m.MsgID) > maxField || len(m.Header) > maxField {
		return 0, fmt.Errorf("%w: subject, id or header count over %d", ErrTooLarge, maxField)
	}
	n := frameHeaderLen + minBodyLen + len(m.Subject) + len(m.MsgID) + len(m.Data)
	for k, v := range m.Header {
		if len(k) > maxField || len(v) > maxField {
			return 0, fmt.Errorf("%w: header %.40q over %d bytes", ErrTooLarge, k, maxField)
		}
		n += 4 + len(k) + len(v)
	}
	if n > MaxRecordSize {
		return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, n, MaxRecordSize)
	}
	return n, nil
}

// appendRecord appends the framed record for m to b; m must have passed
// recordLen.
func appendRecord(b []byte, m *Message) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b = append(b, recordVersion)
	b = binary.LittleEndian.AppendUint64(b, m.Seq)
	b = appendField(b, m.Subject)
	b = appendField(b, m.MsgID)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.Header)))
	for k, v := range m.Header {
		b = appendField(b, k)
		b = appendField(b, v)
	}
	b = append(b, m.Data...)
	body := b[start+frameHeaderLen:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, crcTable))
	return b
}

func appendField(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// checkFrame validates the record at the start of b without decoding it and
// returns its framed length, producer sequence and subject (aliasing b).
func checkFrame(b []byte) (n int, seq uint64, subject []byte, err error) {
	if len(b) < frameHeaderLen {
		return 0, 0, nil, fmt.Errorf("%w: %d header bytes", ErrTruncated, len(b))
	}
	bodyLen := int(binary.LittleEndian.Uint32(b))
	if bodyLen < minBodyLen || bodyLen > MaxRecordSize-frameHeaderLen {
		return 0, 0, nil, fmt.Errorf("%w: body length %d", ErrCorrupt, bodyLen)
	}
	n = frameHeaderLen + bodyLen
	if len(b) < n {
		return 0, 0, nil, fmt.Errorf("%w: have %d of %d bytes", ErrTruncated, len(b), n)
	}
	body := b[frameHeaderLen:n]
	if got, want := crc32.Checksum(body, crcTable), binary.LittleEndian.Uint32(b[4:]); got != want {
		return 0, 0, nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if body[0] != recordVersion {
		return 0, 0, nil, fmt.Errorf("%w: record version %d", ErrCorrupt, body[0])
	}
	sl := int(binary.LittleEndian.Uint16(body[9:]))
	if 11+sl > len(body) {
		return 0, 0, nil, fmt.Errorf("%w: subject of %d bytes overruns body", ErrCorrupt, sl)
	}
	return n, binary.LittleEndian.Uint64(body[1:]), body[11 : 11+sl], nil
}

// DecodeRecord decodes the record at the start of b and returns it with its
// framed length. It never panics on bad input: short input gives
// ErrTruncated, anything inconsistent ErrCorrupt. The returned message does
// not alias b.
func DecodeRecord(b []byte) (Message, int, error) {
	n, seq, _, err := checkFrame(b)
	if err != nil {
		return Message{}, 0, err
	}
	d := decoder{b: b[frameHeaderLen+9 : n]}
	m := Message{Seq: seq}
	m.Subject = d.field()
	m.MsgID = d.field()
	count := d.u16()
	if count > 0 && d.err == nil {
		m.Header = make(map[string]string, min(int(count), 16))
		for range count {
			k := d.field()
			v := d.field()
			if d.err != nil {
				break
			}
			m.Header[k] = v
		}
	}
	if d.err != nil {
		return Message{}, 0, d.err
	}
	if len(d.b) > 0 {
		m.Data = append([]byte(nil), d.b...)
	}
	return m, n, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u16() int {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 2 {
		d.err = fmt.Errorf("%w: body ends inside a length", ErrCorrupt)
		return 0
	}
	v := int(binary.LittleEndian.Uint16(d.b))
	d.b = d.b[2:]
	return v
}

func (d *decoder) field() string {
	n := d.u16()
	if d.err != nil {
		return ""
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: field of %d bytes overruns body", ErrCorrupt, n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
