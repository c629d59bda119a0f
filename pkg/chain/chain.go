package chain

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashSize is the length of a link hash in bytes; its hex form is twice as
// long.
const HashSize = sha256.Size

// Link returns the hash of an event whose predecessor's hash is prev and
// whose canonical bytes are canonical:
//
//	hex(sha256(P || canonical))
//
// where P is empty for the first event of a session (prev == "") and
// otherwise the HashSize raw bytes that prev, a lowercase hex hash returned
// by an earlier Link, encodes. Hashing the raw bytes rather than the hex text
// keeps the rule independent of how a backend spells the hash.
//
// If prev is neither empty nor a valid hash, no chain can contain it, and
// Link returns "" (which never equals a real hash) rather than guessing.
func Link(prev string, canonical []byte) string {
	h := sha256.New()
	if prev != "" {
		var p [HashSize]byte
		if !ValidHash(prev) {
			return ""
		}
		// ValidHash guarantees the decode succeeds.
		_, _ = hex.Decode(p[:], []byte(prev))
		h.Write(p[:])
	}
	h.Write(canonical)
	var sum [HashSize]byte
	var out [2 * HashSize]byte
	// One allocation, the string: the server links every stored event.
	hex.Encode(out[:], h.Sum(sum[:0]))
	return string(out[:])
}

// ValidHash reports whether s is a hash as Link writes it: 2*HashSize
// lowercase hex digits.
func ValidHash(s string) bool {
	if len(s) != 2*HashSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
