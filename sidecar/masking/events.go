package masking

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// eventStream masks a text/event-stream body event by event. LLM APIs
// stream a completion as many small text deltas, so a key is split across
// events: the deltas of each channel (a choice's content, a tool call's
// arguments, a content block) are read as one text, the last bytes of it
// are held back with the events that carry them, and a secret found across
// events is replaced by its token in the first of them and removed from
// the others. Every event is also masked on its own (JSON structurally).
type eventStream struct {
	in      *Inline
	partial []byte // an incomplete event
	queue   []*sseEvent
	chans   map[string]*channel
	found   int
}

// channel is the text of one delta channel: ctx was sent, pending is held
// with the queued events that carry it.
type channel struct {
	ctx     string
	pending strings.Builder
}

// sseEvent is one complete event: its lines, its JSON data when it has
// any, and the delta slots in it.
type sseEvent struct {
	raw   []byte
	lines []string // without line ends; the terminating blank line excluded
	obj   any      // decoded JSON data, or nil
	slots []*slot
}

// slot is one delta text in an event: its place in its channel's pending
// text and how to set it.
type slot struct {
	ch         string
	start, end int
	set        func(string)
}

func newEventStream(in *Inline) *eventStream {
	return &eventStream{in: in, chans: map[string]*channel{}}
}

func (s *eventStream) write(p []byte) []byte {
	s.partial = append(s.partial, p...)
	var out []byte
	for {
		n := eventEnd(s.partial)
		if n < 0 {
			break
		}
		s.add(s.partial[:n])
		s.partial = s.partial[n:]
	}
	if len(s.partial) > maxEvent {
		// An event this large is not an LLM delta: send it masked as text.
		out = append(out, s.flush()...)
		out = append(out, s.maskText(s.partial)...)
		s.partial = nil
	}
	s.partial = append([]byte(nil), s.partial...)
	return append(out, s.release(false)...)
}

func (s *eventStream) close() []byte {
	out := s.release(true)
	if len(s.partial) > 0 {
		out = append(out, s.maskText(s.partial)...)
		s.partial = nil
	}
	return out
}

// flush releases every queued event.
func (s *eventStream) flush() []byte { return s.release(true) }

func (s *eventStream) maskText(p []byte) []byte {
	out, fs := s.in.m.MaskSSE(string(p))
	s.found += len(fs)
	return []byte(out)
}

// eventEnd returns the length of the first complete event of b (through
// its blank line), or -1.
func eventEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		// A line ended at i; is the next line empty?
		j := i + 1
		if b[i] == '\r' {
			if j >= len(b) {
				return -1 // CR LF may be split
			}
			if b[j] == '\n' {
				j++
			}
		}
		if j < len(b) && b[j] == '\n' {
			return j + 1
		}
		if j < len(b) && b[j] == '\r' {
			if j+1 < len(b) && b[j+1] == '\n' {
				return j + 2
			}
			if j+1 >= len(b) {
				return -1
			}
			return j + 1
		}
		i = j - 1
	}
	return -1
}

// add parses one event and queues it with its delta slots.
func (s *eventStream) add(raw []byte) {
	ev := &sseEvent{raw: append([]byte(nil), raw...)}
	text := strings.TrimRight(string(raw), "\r\n")
	var data []string
	for _, l := range splitLines(text) {
		ev.lines = append(ev.lines, l)
		if v, ok := strings.CutPrefix(l, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	if len(data) > 0 {
		d := json.NewDecoder(strings.NewReader(strings.Join(data, "\n")))
		d.UseNumber()
		var obj any
		if d.Decode(&obj) == nil && !d.More() {
			ev.obj = obj
			for _, sl := range deltaSlots(obj) {
				c := s.chans[sl.ch]
				if c == nil {
					c = &channel{}
					s.chans[sl.ch] = c
				}
				sl.start = c.pending.Len()
				c.pending.WriteString(sl.text)
				sl.end = c.pending.Len()
				ev.slots = append(ev.slots, sl.slot)
			}
		}
	}
	s.queue = append(s.queue, ev)
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}

// release sends the queued events whose delta text may go: all of them
// when all is set, else those whose slots end before their channel's
// hold-back cut (moved back so that no secret is split).
func (s *eventStream) release(all bool) []byte {
	type cutSpans struct {
		cut   int
		spans []span
	}
	cuts := map[string]cutSpans{}
	for name, c := range s.chans {
		pending := c.pending.String()
		if pending == "" {
			continue
		}
		whole := c.ctx + pending
		off := len(c.ctx)
		cut := len(pending)
		if !all {
			cut -= s.in.hold
		}
		var spans []span
		for _, sp := range s.in.m.Find(whole) {
			st, en := sp.Start-off, sp.End-off
			if en <= 0 {
				continue
			}
			if st < cut && en > cut {
				cut = max(st, 0)
			}
			spans = append(spans, span{max(st, 0), en, sp.Token})
		}
		cuts[name] = cutSpans{cut, spans}
	}
	// Events go whole and in order: find how many may go, then make sure
	// no secret straddles where each channel's sent text would end.
	n := 0
	for {
		n = 0
	count:
		for _, ev := range s.queue {
			for _, sl := range ev.slots {
				if sl.end > cuts[sl.ch].cut {
					break count
				}
			}
			n++
		}
		moved := false
		for name, cs := range cuts {
			b := s.chans[name].pending.Len()
		first:
			for _, ev := range s.queue[n:] {
				for _, sl := range ev.slots {
					if sl.ch == name {
						b = sl.start
						break first
					}
				}
			}
			for _, sp := range cs.spans {
				if sp.start < b && sp.end > b && cs.cut > sp.start {
					cs.cut = sp.start
					cuts[name] = cs
					moved = true
				}
			}
		}
		if !moved {
			break
		}
	}
	var out []byte
	for _, ev := range s.queue[:n] {
		changed := false
		for _, sl := range ev.slots {
			cs := cuts[sl.ch]
			pending := s.chans[sl.ch].pending.String()
			text, hits := applySpans(pending, sl.start, sl.end, cs.spans)
			if hits > 0 {
				s.found += hits
				sl.set(text)
				changed = true
			}
		}
		out = append(out, s.emit(ev, changed)...)
	}
	s.queue = s.queue[n:]
	// Move what was sent of each channel into its context.
	for name, c := range s.chans {
		sent := 0
		if len(s.queue) == 0 {
			sent = c.pending.Len()
		} else {
			sent = -1
			for _, ev := range s.queue {
				for _, sl := range ev.slots {
					if sl.ch == name && (sent < 0 || sl.start < sent) {
						sent = sl.start
					}
				}
			}
			if sent < 0 {
				sent = c.pending.Len()
			}
		}
		if sent == 0 {
			continue
		}
		pending := c.pending.String()
		c.ctx = lastBytes(c.ctx+pending[:sent], contextLen)
		c.pending.Reset()
		c.pending.WriteString(pending[sent:])
		for _, ev := range s.queue {
			for _, sl := range ev.slots {
				if sl.ch == name {
					sl.start -= sent
					sl.end -= sent
				}
			}
		}
	}
	return out
}

type span struct {
	start, end int
	token      string
}

// applySpans returns pending[start:end] with the secrets masked: a secret
// that starts in the range becomes its token, the rest of a secret that
// started before is dropped. hits counts the secrets touched.
func applySpans(pending string, start, end int, spans []span) (string, int) {
	var b strings.Builder
	pos, hits := start, 0
	for _, sp := range spans {
		if sp.end <= start || sp.start >= end {
			continue
		}
		hits++
		if sp.start >= pos {
			b.WriteString(pending[pos:sp.start])
			b.WriteString(sp.token)
		}
		pos = min(max(pos, sp.end), end)
	}
	if hits == 0 {
		return pending[start:end], 0
	}
	if pos < end {
		b.WriteString(pending[pos:end])
	}
	return b.String(), hits
}

// emit renders a released event: unchanged bytes when nothing in it was
// masked, else its lines with the data replaced.
func (s *eventStream) emit(ev *sseEvent, changed bool) []byte {
	var data []byte
	if ev.obj != nil {
		if changed {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if enc.Encode(ev.obj) != nil {
				return s.maskText(ev.raw)
			}
			data = bytes.TrimRight(buf.Bytes(), "\n")
		} else {
			data = []byte(dataOf(ev.lines))
		}
		masked, fs := s.in.m.MaskJSON(data)
		if len(fs) > 0 {
			s.found += len(fs)
			data, changed = masked, true
		}
		if !changed {
			return ev.raw
		}
		return render(ev.lines, data)
	}
	return s.maskText(ev.raw)
}

func dataOf(lines []string) string {
	var data []string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	return strings.Join(data, "\n")
}

// render writes an event's lines with its data lines replaced by data
// (one line: JSON as encoded holds no line breaks).
func render(lines []string, data []byte) []byte {
	var b bytes.Buffer
	wrote := false
	for _, l := range lines {
		if strings.HasPrefix(l, "data:") {
			if !wrote {
				b.WriteString("data: ")
				b.Write(bytes.ReplaceAll(data, []byte("\n"), []byte("\ndata: ")))
				b.WriteByte('\n')
				wrote = true
			}
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// deltaSlot is a delta found in an event, before it is placed.
type deltaSlot struct {
	*slot
	text string
}

// deltaSlots finds the streamed text deltas of the LLM APIs in an event:
// OpenAI chat completions (choices[i].delta.content and tool call
// arguments), the Responses API (*.delta events), Anthropic
// (content_block_delta) and Gemini (candidates[i].content.parts[j].text).
func deltaSlots(obj any) []deltaSlot {
	o, ok := obj.(map[string]any)
	if !ok {
		return nil
	}
	var out []deltaSlot
	str := func(m map[string]any, key, ch string) {
		if v, ok := m[key].(string); ok {
			out = append(out, deltaSlot{&slot{ch: ch, set: func(s string) { m[key] = s }}, v})
		}
	}
	if choices, ok := o["choices"].([]any); ok {
		for i, c := range choices {
			cm, _ := c.(map[string]any)
			d, _ := cm["delta"].(map[string]any)
			if d == nil {
				continue
			}
			idx := index(cm["index"], i)
			str(d, "content", "chat/"+idx)
			str(d, "reasoning_content", "chat-reasoning/"+idx)
			calls, _ := d["tool_calls"].([]any)
			for j, tc := range calls {
				tm, _ := tc.(map[string]any)
				fn, _ := tm["function"].(map[string]any)
				if fn != nil {
					str(fn, "arguments", "chat/"+idx+"/tool/"+index(tm["index"], j))
				}
			}
		}
	}
	typ, _ := o["type"].(string)
	switch {
	case typ == "content_block_delta":
		if d, ok := o["delta"].(map[string]any); ok {
			idx := index(o["index"], 0)
			str(d, "text", "block/"+idx)
			str(d, "partial_json", "block/"+idx+"/json")
			str(d, "thinking", "block/"+idx+"/thinking")
		}
	case strings.HasPrefix(typ, "response.") && strings.HasSuffix(typ, ".delta"):
		str(o, "delta", typ+"/"+index(o["output_index"], 0)+"/"+index(o["content_index"], 0))
	}
	if cands, ok := o["candidates"].([]any); ok {
		for i, c := range cands {
			cm, _ := c.(map[string]any)
			content, _ := cm["content"].(map[string]any)
			parts, _ := content["parts"].([]any)
			idx := index(cm["index"], i)
			for j, p := range parts {
				pm, _ := p.(map[string]any)
				if pm != nil {
					str(pm, "text", "gemini/"+idx+"/"+strconv.Itoa(j))
				}
			}
		}
	}
	return out
}

// index renders a JSON index member, or def when it is missing.
func index(v any, def int) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return strconv.Itoa(def)
}
