package sniff

import "encoding/binary"

// Hello is what a TLS ClientHello says in the clear.
type Hello struct {
	// SNI is the server name the client asked for.
	SNI string
	// ALPN lists the application protocols the client offered.
	ALPN []string
	// Groups lists the key exchange groups (TLS supported_groups, IANA
	// NamedGroup numbers) the client offered, in its order of preference.
	Groups []uint16
}

// TLS extension numbers.
const (
	extServerName     = 0
	extSupportedGroup = 10
	extALPN           = 16
)

// ParseClientHello reads the SNI, ALPN and groups of a ClientHello from data, which
// starts with a TLS record header. It reports ok=false when data holds no
// complete, well-formed ClientHello in its first record.
func ParseClientHello(data []byte) (h Hello, ok bool) {
	if len(data) < 5 || data[0] != 0x16 {
		return h, false
	}
	n := int(binary.BigEndian.Uint16(data[3:5]))
	if len(data) < 5+n {
		return h, false
	}
	c := cursor(data[5 : 5+n])
	typ, ok1 := c.u8()
	hsLen, ok2 := c.u24()
	if !ok1 || !ok2 || typ != 0x01 {
		return h, false
	}
	body, ok3 := c.take(hsLen)
	if !ok3 {
		return h, false
	}
	c = cursor(body)
	if _, ok := c.take(2 + 32); !ok { // client_version, random
		return h, false
	}
	if _, ok := c.vec8(); !ok { // session_id
		return h, false
	}
	if _, ok := c.vec16(); !ok { // cipher_suites
		return h, false
	}
	if _, ok := c.vec8(); !ok { // compression_methods
		return h, false
	}
	if len(c) == 0 { // no extensions
		return h, true
	}
	exts, ok4 := c.vec16()
	if !ok4 {
		return h, false
	}
	c = cursor(exts)
	for len(c) > 0 {
		typ, ok1 := c.u16()
		ext, ok2 := c.vec16()
		if !ok1 || !ok2 {
			return h, false
		}
		switch typ {
		case extServerName:
			h.SNI = parseSNI(ext)
		case extALPN:
			h.ALPN = parseALPN(ext)
		case extSupportedGroup:
			h.Groups = parseGroups(ext)
		}
	}
	return h, true
}

func parseSNI(ext cursor) string {
	list, ok := ext.vec16()
	if !ok {
		return ""
	}
	for len(list) > 0 {
		typ, ok1 := list.u8()
		name, ok2 := list.vec16()
		if !ok1 || !ok2 {
			return ""
		}
		if typ == 0 { // host_name
			return string(name)
		}
	}
	return ""
}

func parseALPN(ext cursor) []string {
	list, ok := ext.vec16()
	if !ok {
		return nil
	}
	var out []string
	for len(list) > 0 {
		p, ok := list.vec8()
		if !ok {
			return out
		}
		out = append(out, string(p))
	}
	return out
}

// parseGroups reads a supported_groups list; a malformed one yields what
// came before the fault.
func parseGroups(ext cursor) []uint16 {
	list, ok := ext.vec16()
	if !ok {
		return nil
	}
	var out []uint16
	for len(list) > 0 {
		g, ok := list.u16()
		if !ok {
			return out
		}
		out = append(out, uint16(g))
	}
	return out
}

// cursor reads big-endian TLS fields from the front of a byte slice.
type cursor []byte

func (c *cursor) take(n int) (cursor, bool) {
	if n < 0 || len(*c) < n {
		return nil, false
	}
	out := (*c)[:n]
	*c = (*c)[n:]
	return out, true
}

func (c *cursor) u8() (int, bool) {
	b, ok := c.take(1)
	if !ok {
		return 0, false
	}
	return int(b[0]), true
}

func (c *cursor) u16() (int, bool) {
	b, ok := c.take(2)
	if !ok {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(b)), true
}

func (c *cursor) u24() (int, bool) {
	b, ok := c.take(3)
	if !ok {
		return 0, false
	}
	return int(b[0])<<16 | int(b[1])<<8 | int(b[2]), true
}

func (c *cursor) vec8() (cursor, bool) {
	n, ok := c.u8()
	if !ok {
		return nil, false
	}
	return c.take(n)
}

func (c *cursor) vec16() (cursor, bool) {
	n, ok := c.u16()
	if !ok {
		return nil, false
	}
	return c.take(n)
}
