package mask

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"regexp"
	"strings"
)

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// luhn reports whether the digits of s (spaces and dashes ignored) pass
// the Luhn check used by payment card numbers.
func luhn(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c == ' ' || c == '-' {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

// validJWT reports whether s is three base64url parts whose first decodes
// to a JSON object with an "alg".
func validJWT(s string) bool {
	head, _, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if err != nil {
		return false
	}
	var h map[string]any
	if json.Unmarshal(raw, &h) != nil {
		return false
	}
	_, ok = h["alg"]
	return ok
}

// placeholders are values people write where a secret would go.
var placeholders = []string{
	"xxxx", "****", "....", "<", ">", "${", "{{", "$(", "%s", "changeme", "change_me", "example",
	"placeholder", "redacted", "your_", "your-", "dummy", "[masked", "null", "undefined", "none",
	"secret_here", "password_here", "replace", "todo", "fixme", "sample", "process.env", "os.environ",
	"getenv", "0000000",
}

// templateMarks are what placeholders for tokens look like; unlike
// placeholders they never occur in random tokens by chance.
var templateMarks = []string{"xxxx", "****", "....", "<", ">", "${", "{{", "example", "placeholder", "redacted", "your_", "your-", "[masked"}

// notTemplate rejects token placeholders ("ghp_xxxx…", "sk-<your key>").
func notTemplate(s string) bool {
	l := strings.ToLower(s)
	for _, p := range templateMarks {
		if strings.Contains(l, p) {
			return false
		}
	}
	return true
}

// notPlaceholder rejects values that are obviously not real secrets.
func notPlaceholder(s string) bool {
	l := strings.ToLower(s)
	for _, p := range placeholders {
		if strings.Contains(l, p) {
			return false
		}
	}
	return true
}

// sensitiveKeys are fragments of names (lowercase, without '-', '_', '.')
// whose values are secrets.
var sensitiveKeys = []string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "accesskey", "privatekey",
	"credential", "authkey", "signature", "sessionid", "cookie", "authorization", "clientsecret", "pat",
}

// exactSensitiveKeys are whole (normalised) names whose values are secrets.
var nonSensitiveKeys = map[string]bool{
	"tokentype": true, "tokencount": true, "maxtokens": true, "tokens": true, "secretname": true,
	"secretref": true, "path": true, "patch": true, "pattern": true, "expiresin": true,
	"inputtokens": true, "outputtokens": true, "totaltokens": true, "prompttokens": true,
	"completiontokens": true, "maxcompletiontokens": true, "tokenizer": true, "cookiepolicy": true,
}

// normKey lowercases name and drops '-', '_', '.' and spaces.
func normKey(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c == '-' || c == '_' || c == '.' || c == ' ':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sensitiveKey reports whether a value named name is a secret by its name.
func sensitiveKey(name string) bool {
	k := normKey(name)
	if k == "" || len(k) > 64 || nonSensitiveKeys[k] {
		return false
	}
	for _, s := range sensitiveKeys {
		if s == "pat" {
			if k == "pat" || strings.HasSuffix(k, "pat") && !strings.HasSuffix(k, "path") {
				return true
			}
			continue
		}
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// keyedSecret reports whether value, named by a sensitive key, looks like
// a real secret rather than a placeholder, a reference or a flag.
func keyedSecret(value string) bool {
	if len(value) < 6 || len(value) > 4096 || isToken(value) {
		return false
	}
	switch strings.ToLower(value) {
	case "true", "false", "yes", "no", "on", "off", "required", "optional", "bearer", "basic":
		return false
	}
	return entropy(value) >= 2.3 && notPlaceholder(value)
}

var identChain = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+$`)

// genericValue gates the generic assignment rule: a keyed secret that is
// not a number or a dotted reference to code (cfg.Secret, os.Getenv).
// maxGenericValue is the longest value generic-secret takes.
const maxGenericValue = 200

func genericValue(s string) bool {
	if len(s) > maxGenericValue || !keyedSecret(s) || strings.HasPrefix(s, "$") {
		return false
	}
	if identChain.MatchString(s) && !strings.ContainsAny(s, "0123456789") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return true
		}
	}
	return false
}

// userinfoAfter reports whether a URL's "://" at or within a few bytes
// after s[at] is followed by user:password@, as a credential URL's is.
func userinfoAfter(s string, at int) bool {
	i := 0
	if !strings.HasPrefix(s[at:], "://") {
		end := min(len(s), at+24)
		if i = strings.Index(s[at:end], "://"); i < 0 {
			return false
		}
	}
	colon := false
	for j := at + i + 3; j < len(s) && j < at+i+3+defaultMaxLen; j++ {
		c := s[j]
		if c > '@' {
			continue // letters and the like: none of the cases below
		}
		switch c {
		case ':':
			colon = true
		case '@':
			return colon
		case '/', '?', '#', '"', '\'', '<', '>', ' ', '\t', '\r', '\n':
			return false
		}
	}
	return false
}

// assignmentAfter reports whether the name starting at s[at] is followed
// by an assignment (=, :, => or :=), maybe after a quote and spaces, as
// generic-secret's expression requires.
func assignmentAfter(s string, at int) bool {
	i := at
	for i < len(s) && i-at < 80 && isNameChar(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '\\' {
		i++
	}
	if i < len(s) && (s[i] == '"' || s[i] == '\'' || s[i] == '`') {
		i++
	}
	for j := 0; i < len(s) && j < 64 && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\f' || s[i] == '\v'); j++ {
		i++
	}
	return i < len(s) && (s[i] == '=' || s[i] == ':')
}
