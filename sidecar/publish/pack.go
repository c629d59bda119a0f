package publish

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/natsbus"
	"github.com/chaperone-dev/chaperone/sidecar/spool"
)

// packer builds the sender's next message from the spool: one record, or
// consecutive event records of one subject packed into a batch (see
// natsbus.EventsHeader). It takes only what the spool already holds, so
// batching adds no wait. A record that cannot join the batch (a blob, an
// event of another subject, one over the caps) ends it and is held for the
// next message, so the spool's order is kept. Its buffers are reused from
// message to message; it belongs to the sender.
type packer struct {
	maxEvents int

	first spool.Message
	pos   []spool.Pos // of the records in the message, in spool order
	data  []byte      // a batch's JSON lines
	msgID []byte

	held    spool.Message
	heldPos spool.Pos
	hasHeld bool

	idVal, countVal []string // header values, reused
}

func newPacker(maxEvents int) *packer {
	return &packer{maxEvents: maxEvents, idVal: make([]string, 1), countVal: make([]string, 1)}
}

// reset forgets the held record; a new epoch reads the spool again.
func (k *packer) reset() {
	k.held, k.hasHeld = spool.Message{}, false
}

// next reads the next message's records, at most maxBytes of event data
// (newlines included) in a batch. It returns false when the spool has
// nothing more yet.
func (k *packer) next(r *spool.Reader, maxBytes int) (bool, error) {
	k.pos, k.data = k.pos[:0], k.data[:0]
	m, pos, err := k.read(r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	k.first = m
	k.pos = append(k.pos, pos)
	if !batchable(&m, maxBytes) {
		return true, nil
	}
	size := len(m.Data) + 1
	for len(k.pos) < k.maxEvents {
		// An error other than io.EOF ends the batch; the next read meets
		// it again, since the reader did not move.
		nm, npos, err := r.Next()
		if err != nil {
			break
		}
		if nm.Subject != m.Subject || !batchable(&nm, maxBytes) || size+len(nm.Data)+1 > maxBytes {
			k.held, k.heldPos, k.hasHeld = nm, npos, true
			break
		}
		if len(k.pos) == 1 {
			k.data = append(append(k.data, m.Data...), '\n')
		}
		k.data = append(append(k.data, nm.Data...), '\n')
		k.pos = append(k.pos, npos)
		size += len(nm.Data) + 1
	}
	return true, nil
}

// read returns the held record, else the reader's next.
func (k *packer) read(r *spool.Reader) (spool.Message, spool.Pos, error) {
	if k.hasHeld {
		m, p := k.held, k.heldPos
		k.reset()
		return m, p, nil
	}
	return r.Next()
}

// batchable reports whether m may share a message with other events: an
// event record (no extra header) that fits the cap with its newline and
// holds no newline of its own. Encoders never write a raw newline into
// JSON; a record that has one anyway goes alone rather than break the
// batch's framing.
func batchable(m *spool.Message, maxBytes int) bool {
	return len(m.Header) == 0 && m.MsgID != "" &&
		strings.HasPrefix(m.Subject, natsbus.EventSubjectPrefix) &&
		len(m.Data)+1 <= maxBytes && bytes.IndexByte(m.Data, '\n') < 0
}

// batched reports whether the message holds more than one record.
func (k *packer) batched() bool { return len(k.pos) > 1 }

// fill sets msg's subject, headers and data to the message read last.
// msg keeps referring to the packer's buffers: publish it before the next
// call to next.
func (k *packer) fill(msg *nats.Msg) {
	clear(msg.Header)
	msg.Subject = k.first.Subject
	if !k.batched() {
		k.idVal[0] = k.first.MsgID
		msg.Header[jetstream.MsgIDHeader] = k.idVal
		for hk, hv := range k.first.Header {
			msg.Header[hk] = []string{hv}
		}
		msg.Data = k.first.Data
		return
	}
	n := len(k.pos)
	k.msgID = natsbus.AppendBatchMsgID(k.msgID[:0], k.first.MsgID, n)
	k.idVal[0] = string(k.msgID)
	k.countVal[0] = strconv.Itoa(n)
	msg.Header[jetstream.MsgIDHeader] = k.idVal
	msg.Header[natsbus.EventsHeader] = k.countVal
	msg.Data = k.data
}

// id is the Nats-Msg-Id of the message filled last.
func (k *packer) id() string { return k.idVal[0] }
