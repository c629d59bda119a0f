package mask

import (
	"net/url"
	"strings"
)

// credentialHeaders carry a credential in their whole value.
var credentialHeaders = map[string]bool{
	"authorization": true, "proxyauthorization": true, "cookie": true, "setcookie": true,
	"xapikey": true, "apikey": true, "xauthtoken": true, "xaccesstoken": true, "xamzsecuritytoken": true,
	"privatetoken": true, "xgoogapikey": true, "xgitlabtoken": true, "xvaulttoken": true, "xsecret": true,
}

// KeyedRule is the rule id of values masked because of their name (a
// credential header, a "password" field, a Secret's data).
const KeyedRule = "keyed-secret"

// K8sSecretRule is the rule id of Kubernetes Secret values.
const K8sSecretRule = "kubernetes-secret"

// keyed masks value as a whole under KeyedRule.
func (m *Masker) keyed(value string) (string, Finding) {
	tok := m.Token(KeyedRule, value)
	return tok, Finding{Rule: KeyedRule, Secret: value, Token: tok}
}

// MaskHeaders returns h with secrets masked: a copy when something was
// masked, h itself otherwise (it is never modified). Credential headers
// (Authorization, Cookie, X-Api-Key, …) are masked whole, keeping an
// Authorization scheme; other values go through Mask.
func (m *Masker) MaskHeaders(h map[string][]string) (map[string][]string, []Finding) {
	if h == nil {
		return nil, nil
	}
	var fs []Finding
	var out map[string][]string // made on the first change
	for name, vs := range h {
		var nv []string
		set := func(i int, v string) {
			if nv == nil {
				nv = append([]string(nil), vs...)
			}
			nv[i] = v
		}
		cred := m.credentialHeader(name)
		for i, v := range vs {
			if cred && v != "" && !isToken(v) && !tokenRE.MatchString(v) && v != "[REDACTED]" {
				scheme, rest, ok := strings.Cut(v, " ")
				if ok && strings.Contains(normKey(name), "authorization") && rest != "" {
					tok, f := m.keyed(rest)
					set(i, scheme+" "+tok)
					fs = append(fs, f)
				} else {
					tok, f := m.keyed(v)
					set(i, tok)
					fs = append(fs, f)
				}
				continue
			}
			if mv, f := m.Mask(v); len(f) > 0 {
				set(i, mv)
				fs = append(fs, f...)
			}
		}
		if nv != nil {
			if out == nil {
				out = make(map[string][]string, len(h))
				for k, v := range h {
					out[k] = append([]string(nil), v...)
				}
			}
			out[name] = nv
		}
	}
	if out == nil {
		return h, nil
	}
	return out, fs
}

// maxCredentialNames bounds the memo of header names credentialHeader
// keeps; past it, names are classified each time.
const maxCredentialNames = 1024

// credentialHeader reports whether a header's whole value is a credential,
// by its name. Header names repeat from request to request, so the answer
// is remembered.
func (m *Masker) credentialHeader(name string) bool {
	if v, ok := m.credNames.Load(name); ok {
		return v.(bool)
	}
	cred := credentialHeaders[normKey(name)] || sensitiveKey(name)
	if m.credCount.Load() < maxCredentialNames {
		if _, loaded := m.credNames.LoadOrStore(name, cred); !loaded {
			m.credCount.Add(1)
		}
	}
	return cred
}

// MaskURL masks a URL or request target: query values named like secrets
// are masked whole, and the rest goes through Mask (passwords in the
// userinfo, tokens in the path).
func (m *Masker) MaskURL(u string) (string, []Finding) {
	path, query, hasQuery := strings.Cut(u, "?")
	frag := ""
	if hasQuery {
		query, frag, _ = strings.Cut(query, "#")
	}
	out, fs := m.Mask(path)
	if hasQuery {
		q, qf := m.MaskForm(query)
		out, fs = out+"?"+q, append(fs, qf...)
		if frag != "" {
			mf, ff := m.Mask(frag)
			out, fs = out+"#"+mf, append(fs, ff...)
		}
	}
	return out, fs
}

// MaskForm masks an application/x-www-form-urlencoded body or query
// string, keeping its order: a value named like a secret is masked whole,
// every other name and value goes through Mask.
func (m *Masker) MaskForm(body string) (string, []Finding) {
	var fs []Finding
	parts := strings.Split(body, "&")
	for i, p := range parts {
		k, v, hasV := strings.Cut(p, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			mp, f := m.Mask(p)
			parts[i], fs = mp, append(fs, f...)
			continue
		}
		var nv string
		if hasV && sensitiveKey(dk) && keyedSecret(dv) {
			var f Finding
			nv, f = m.keyed(dv)
			fs = append(fs, f)
		} else {
			var f []Finding
			nv, f = m.Mask(dv)
			fs = append(fs, f...)
		}
		nk, f := m.Mask(dk)
		fs = append(fs, f...)
		if nv == dv && nk == dk {
			continue
		}
		parts[i] = escapeKeepingTokens(nk)
		if hasV {
			parts[i] += "=" + escapeKeepingTokens(nv)
		}
	}
	return strings.Join(parts, "&"), fs
}

// MaskSSE masks a text/event-stream body: each data: line's payload is
// masked as JSON when it is JSON, else as text; other lines go through
// Mask.
func (m *Masker) MaskSSE(body string) (string, []Finding) {
	var fs []Finding
	lines := strings.SplitAfter(body, "\n")
	for i, line := range lines {
		content := strings.TrimRight(line, "\r\n")
		eol := line[len(content):]
		if payload, ok := strings.CutPrefix(content, "data:"); ok {
			lead := ""
			if strings.HasPrefix(payload, " ") {
				lead, payload = " ", payload[1:]
			}
			mp, f := m.MaskJSONString(payload)
			lines[i], fs = "data:"+lead+mp+eol, append(fs, f...)
			continue
		}
		mc, f := m.Mask(content)
		lines[i], fs = mc+eol, append(fs, f...)
	}
	return strings.Join(lines, ""), fs
}

// MaskSQL masks SQL text: password literals (PASSWORD '…', IDENTIFIED BY
// '…') and secrets anywhere in the statement.
func (m *Masker) MaskSQL(stmt string) (string, []Finding) {
	return m.Mask(stmt)
}

// escapeKeepingTokens query-escapes s but leaves tokens as they are, so
// masked text stays recognisable (and is not masked again).
func escapeKeepingTokens(s string) string {
	var b strings.Builder
	last := 0
	for _, loc := range tokenRE.FindAllStringIndex(s, -1) {
		b.WriteString(url.QueryEscape(s[last:loc[0]]))
		b.WriteString(s[loc[0]:loc[1]])
		last = loc[1]
	}
	b.WriteString(url.QueryEscape(s[last:]))
	return b.String()
}
