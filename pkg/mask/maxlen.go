package mask

import (
	"regexp/syntax"
	"unicode/utf8"
)

// unbounded is maxMatchLen's answer for expressions without a bound.
const unbounded = -1

// maxMatchLen returns the most bytes re can match, or unbounded. Anchored
// rules run on at most that many bytes after a keyword hit: a window no
// longer than the longest match lets package regexp settle a failed
// attempt in one bounded run instead of retrying on MaxLen bytes.
func maxMatchLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpNoMatch:
		return 0
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && r < utf8.RuneSelf {
				n++ // ASCII folds to ASCII, except K and S (see below)
				if r == 'k' || r == 'K' || r == 's' || r == 'S' {
					n += 2 // K folds to U+212A, S to U+017F
				}
				continue
			}
			n += utf8.RuneLen(r)
		}
		return n
	case syntax.OpCharClass:
		hi := rune(0)
		for i := 1; i < len(re.Rune); i += 2 {
			hi = max(hi, re.Rune[i])
		}
		if hi > utf8.MaxRune || hi < 0 {
			return utf8.UTFMax
		}
		return utf8.RuneLen(hi)
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxMatchLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		return unbounded
	case syntax.OpRepeat:
		if re.Max < 0 {
			return unbounded
		}
		n := maxMatchLen(re.Sub[0])
		if n == unbounded {
			return unbounded
		}
		return n * re.Max
	case syntax.OpConcat:
		total := 0
		for _, sub := range re.Sub {
			n := maxMatchLen(sub)
			if n == unbounded {
				return unbounded
			}
			total += n
		}
		return total
	case syntax.OpAlternate:
		most := 0
		for _, sub := range re.Sub {
			n := maxMatchLen(sub)
			if n == unbounded {
				return unbounded
			}
			most = max(most, n)
		}
		return most
	}
	return unbounded
}
