package corpus

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Sample is one secret embedded in text.
type Sample struct {
	// Rule is the id of the rule meant to find the secret.
	Rule string
	// Context names the kind of text around it ("code", "json", …).
	Context string
	// Secret is the raw secret; the masked text must not contain any of
	// its lines (see Leaked).
	Secret string
	// Value is how the secret is written where it appears (a token, a
	// URL holding it, a PEM block…).
	Value string
	// Text is Value embedded in its context.
	Text string
}

// Leaked reports whether masked still holds the sample's secret: the whole
// secret, or any of its lines of 8 bytes or more.
func (s Sample) Leaked(masked string) bool {
	if strings.Contains(masked, s.Secret) {
		return true
	}
	for line := range strings.SplitSeq(s.Secret, "\n") {
		if len(line) >= 8 && strings.Contains(masked, line) {
			return true
		}
	}
	return false
}

// Contexts are the kinds of text secrets are embedded in.
var Contexts = []string{"code", "json", "log", "prose", "yaml", "shell", "escaped"}

// embed writes value, named name, into a context.
func embed(ctx, name, value string, r *rand.Rand) string {
	switch ctx {
	case "code":
		return fmt.Sprintf("func init() {\n\t%s := %q\n\tclient.Use(%s)\n}\n", name, value, name)
	case "json":
		b, _ := json.Marshal(map[string]any{name: value, "retries": r.IntN(9), "region": "eu-west-1"})
		return string(b) + "\n"
	case "log":
		return fmt.Sprintf("2026-03-0%dT12:%02d:05Z level=info msg=\"loaded settings\" %s=%s user=build-bot\n", 1+r.IntN(9), r.IntN(60), name, value)
	case "prose":
		return fmt.Sprintf("Here is the %s you asked for: %s \u2014 please keep it safe.\n", name, value)
	case "escaped":
		// A JSON document inside a JSON string, as in an echoed body.
		b, _ := json.Marshal(embed("json", name, value, r))
		return `{"body":` + string(b) + "}\n"
	case "yaml":
		return fmt.Sprintf("settings:\n  endpoint: https://api.internal/v1\n  %s: %s\n  timeout: 30s\n", name, value)
	default:
		return fmt.Sprintf("export %s='%s'\n./deploy.sh --env prod\n", name, value)
	}
}

// Generate returns perRule samples for every spec, cycling through the
// contexts, deterministically for seed.
func Generate(seed uint64, perRule int) []Sample {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Sample
	for _, sp := range specs {
		for i := range perRule {
			ctx := Contexts[i%len(Contexts)]
			if sp.noProse && ctx == "prose" {
				ctx = "yaml"
			}
			secret, value := sp.gen(r)
			out = append(out, Sample{Rule: sp.rule, Context: ctx, Secret: secret, Value: value,
				Text: embed(ctx, sp.name, value, r)})
		}
	}
	return out
}

// Rules returns the ids of the rules the corpus has samples for.
func Rules() []string {
	var ids []string
	for _, s := range specs {
		if !slices.Contains(ids, s.rule) {
			ids = append(ids, s.rule)
		}
	}
	return ids
}

// Text concatenates samples and negatives into one document of roughly
// the given size, for benchmarks.
func Text(seed uint64, size int) string {
	var b strings.Builder
	samples := Generate(seed, 3)
	negs := Negatives(seed, 400)
	for i := 0; b.Len() < size; i++ {
		if i%2 == 0 {
			b.WriteString(samples[(i/2)%len(samples)].Text)
		} else {
			b.WriteString(negs[(i/2)%len(negs)])
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Character classes of the templates.
var classes = map[string]string{
	"a":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	"L":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	"l":   "abcdefghijklmnopqrstuvwxyz0123456789",
	"U":   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
	"h":   "0123456789abcdef",
	"d":   "0123456789",
	"b":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
	"w":   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
	"B32": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
	"age": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
	"az":  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_~.-",
	"pw":  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*._~-",
}

var placeholderRE = regexp.MustCompile(`\{(uuid|[A-Za-z0-9]+:[0-9]+)\}`)

// fill expands a template: "{h:32}" is 32 characters of class h,
// "{uuid}" a random UUID; other text is literal.
func fill(r *rand.Rand, tmpl string) string {
	return placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		spec := m[1 : len(m)-1]
		if spec == "uuid" {
			return fill(r, "{h:8}-{h:4}-4{h:3}-a{h:3}-{h:12}")
		}
		cls, n, _ := strings.Cut(spec, ":")
		count, _ := strconv.Atoi(n)
		chars, ok := classes[cls]
		if !ok {
			panic("corpus: bad template class " + cls)
		}
		b := make([]byte, count)
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		return string(b)
	})
}

// randomBytes returns n random bytes.
func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// pemBlock returns a PEM-looking block of label with n random bytes.
func pemBlock(r *rand.Rand, label string, n int) (body, block string) {
	enc := base64.StdEncoding.EncodeToString(randomBytes(r, n))
	var lines []string
	for len(enc) > 64 {
		lines = append(lines, enc[:64])
		enc = enc[64:]
	}
	lines = append(lines, enc)
	body = strings.Join(lines, "\n")
	return body, "-----BEGIN " + label + "-----\n" + body + "\n-----END " + label + "-----"
}

// jwt returns a signed-looking JWT.
func jwt(r *rand.Rand) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"` + fill(r, "{w:20}") + `","typ":"JWT"}`))
	claims := fmt.Sprintf(`{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:agents:%s","exp":%d}`,
		fill(r, "{l:8}"), 1700000000+r.IntN(1e8))
	return head + "." + enc.EncodeToString([]byte(claims)) + "." + enc.EncodeToString(randomBytes(r, 256))
}
