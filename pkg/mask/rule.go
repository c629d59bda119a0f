package mask

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
)

// ErrInvalidRule is wrapped by every error about a rule that cannot be
// used; the message names the rule.
var ErrInvalidRule = errors.New("invalid masking rule")

// Rule is one kind of secret.
type Rule struct {
	// ID names the rule in tokens and in event.Masked: lowercase letters,
	// digits, '-' and '.', at most 64.
	ID string
	// Description says what the rule finds, for people.
	Description string
	// Keywords are lowercase literals; the rule is tried only on input that
	// contains one of them (case-insensitively). A rule without keywords is
	// tried on every input.
	Keywords []string
	// Regexp is an RE2 expression. The secret is the group named "secret",
	// else group 1, else the whole match.
	Regexp string
	// Entropy is the minimum Shannon entropy of the secret in bits per
	// byte; 0 means no minimum.
	Entropy float64
	// Validate, if set, must accept the secret for it to count.
	Validate func(secret string) bool
	// WordStart and WordEnd require that the match is not preceded,
	// respectively followed, by a letter or digit.
	WordStart, WordEnd bool
	// Near is how far from the match a keyword may be; 0 means a keyword
	// lies inside every match.
	Near int
	// MaxLen bounds the length of a match (default 512). Matches are only
	// searched for within MaxLen+Near bytes of a keyword hit.
	MaxLen int
	// Floating says a keyword may lie anywhere inside a match. By default
	// (keywords set, Near 0) every match starts with a keyword, and the
	// expression only runs anchored at keyword hits; a floating rule's
	// expression is searched in windows of MaxLen+Near around them.
	Floating bool
	// Generic rules (keyword = value assignments, URLs with passwords of
	// unknown schemes) yield to vendor rules when matches overlap.
	Generic bool
	// PII rules only run when Options.PII is set.
	PII bool
	// Quick, if set, is a cheap necessary condition checked at a keyword
	// hit at s[at:] before the expression runs there (anchored rules
	// only); false skips the hit. It keeps common keywords ("://", a
	// name) that rarely start a secret from costing a regexp run.
	Quick func(s string, at int) bool
}

// RuleSpec is a custom rule as policy supplies it: data only.
type RuleSpec struct {
	ID          string   `json:"id"`
	Description string   `json:"description,omitempty"`
	Regexp      string   `json:"regexp"`
	Keywords    []string `json:"keywords,omitempty"`
	Entropy     float64  `json:"entropy,omitempty"`
}

// customNear is how far a custom rule's keyword may be from its match:
// policy authors cannot be expected to know the windowing.
const customNear = 256

// Rule turns the spec into a Rule.
func (s RuleSpec) Rule() Rule {
	return Rule{ID: s.ID, Description: s.Description, Regexp: s.Regexp, Keywords: s.Keywords,
		Entropy: s.Entropy, Near: customNear}
}

const defaultMaxLen = 512

var ruleIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,63}$`)

// compiled is a validated rule ready to run.
type compiled struct {
	*Rule
	// re is the expression, for rules searched in windows; nil for
	// anchored rules, which only ever run anch.
	re *regexp.Regexp
	// anchored rules run their expression anchored at keyword hits. The
	// anchored form is compiled on the first hit (see anchoredRE): most
	// rules' keywords never occur in a session, and a sidecar should not
	// hold a hundred compiled programs it never runs.
	anchored bool
	anchOnce sync.Once
	anch     *regexp.Regexp
	group    int // submatch index of the secret; 0 is the whole match
	key      int // submatch index of the name a secret is assigned to, if any
	window   int // MaxLen + Near
}

// compile validates r and compiles its expression.
func compile(r *Rule) (*compiled, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidRule, r.ID, fmt.Sprintf(format, args...))
	}
	if !ruleIDRE.MatchString(r.ID) {
		return nil, bad("id must be 1-64 of [a-z0-9.-], starting with a letter or digit")
	}
	if r.Regexp == "" {
		return nil, bad("no regexp")
	}
	re, err := regexp.Compile(r.Regexp)
	if err != nil {
		return nil, bad("regexp: %v", err)
	}
	if re.MatchString("") {
		return nil, bad("regexp %q matches the empty string", r.Regexp)
	}
	for _, k := range r.Keywords {
		switch {
		case k == "":
			return nil, bad("empty keyword")
		case k != strings.ToLower(k):
			return nil, bad("keyword %q is not lowercase", k)
		}
	}
	if r.Entropy < 0 || r.Entropy > 8 {
		return nil, bad("entropy %v outside 0..8 bits per byte", r.Entropy)
	}
	if r.MaxLen < 0 || r.Near < 0 {
		return nil, bad("negative MaxLen or Near")
	}
	c := &compiled{Rule: r, re: re}
	if i := re.SubexpIndex("secret"); i > 0 {
		c.group = i
	} else if re.NumSubexp() > 0 {
		c.group = 1
	}
	c.key = re.SubexpIndex("key")
	if len(r.Keywords) > 0 && r.Near == 0 && !r.Floating {
		// Compiling re above validated the expression; wrapping it in a
		// non-capturing group keeps its submatch indexes.
		c.anchored, c.re = true, nil
	}
	maxLen := r.MaxLen
	if maxLen == 0 {
		maxLen = defaultMaxLen
	}
	c.window = maxLen + r.Near
	if c.anchored {
		if parsed, err := syntax.Parse(r.Regexp, syntax.Perl); err == nil {
			if n := maxMatchLen(parsed); n != unbounded && n < c.window {
				c.window = n
			}
		}
	}
	return c, nil
}

// anchoredRE returns the rule's expression anchored at the start.
func (c *compiled) anchoredRE() *regexp.Regexp {
	c.anchOnce.Do(func() { c.anch = regexp.MustCompile(`^(?:` + c.Regexp + `)`) })
	return c.anch
}

// accept applies the rule's gates to a candidate secret whose whole match
// is s[mstart:mend]; key is the name it is assigned to, if the rule has one.
func (c *compiled) accept(s string, mstart, mend int, secret, key string) bool {
	if secret == "" {
		return false
	}
	if c.key > 0 && !sensitiveKey(extendName(s, mstart, key)) {
		return false
	}
	if c.WordStart && mstart > 0 && isAlnum(s[mstart-1]) && !escapedBefore(s, mstart) {
		return false
	}
	if c.WordEnd && mend < len(s) && isAlnum(s[mend]) {
		return false
	}
	if c.Entropy > 0 && entropy(secret) < c.Entropy {
		return false
	}
	if c.Validate != nil && !c.Validate(secret) {
		return false
	}
	return true
}

// extendName prefixes key, which starts at s[start], with the name
// characters before it: a keyword hit can start inside a name
// ("max_tokens" is hit at "token").
func extendName(s string, start int, key string) string {
	i := start
	for i > 0 && start-i < 40 && isNameChar(s[i-1]) {
		i--
	}
	return s[i:start] + key
}

func isNameChar(b byte) bool { return isAlnum(b) || b == '_' || b == '-' || b == '.' }

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// escapedBefore reports whether the letter or digit before i ends an
// escape (\n, \t, \r or %XX), which is a boundary in disguise.
func escapedBefore(s string, i int) bool {
	if i >= 2 && s[i-2] == '\\' && strings.IndexByte("nrt", s[i-1]) >= 0 {
		return true
	}
	return i >= 3 && s[i-3] == '%' && isHex(s[i-2]) && isHex(s[i-1])
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}
