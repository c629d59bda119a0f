package masking

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/mask"
)

// Next is the recorder masked events are forwarded to; it matches
// proxy.Recorder.
type Next interface {
	Publish(ctx context.Context, e *event.Event) error
	PublishBlob(ctx context.Context, ref string, data []byte) error
	Accepting() error
}

// maxRefs bounds the blob ref map; blobs are published right before the
// event naming them, so only a few are ever pending.
const maxRefs = 4096

// Recorder masks events and blobs, then forwards them to Next.
type Recorder struct {
	next Next
	m    *mask.Masker

	mu   sync.Mutex
	refs map[string]maskedBlob // blob ref as published by the proxy -> the masked blob
}

// maskedBlob is what became of a published blob.
type maskedBlob struct {
	ref   string
	rules []string
}

// New returns a Recorder that masks with m and forwards to next.
func New(next Next, m *mask.Masker) *Recorder {
	return &Recorder{next: next, m: m, refs: make(map[string]maskedBlob)}
}

// Accepting is next's.
func (r *Recorder) Accepting() error { return r.next.Accepting() }

// PublishBlob masks data and publishes it under the ref of the masked
// bytes; the event that names ref is rewritten to the new ref.
func (r *Recorder) PublishBlob(ctx context.Context, ref string, data []byte) error {
	masked, fs := r.maskBlob(data)
	newRef := ref
	if len(fs) > 0 {
		sum := sha256.Sum256(masked)
		newRef = "sha256:" + hex.EncodeToString(sum[:])
	}
	r.mu.Lock()
	if len(r.refs) >= maxRefs {
		clear(r.refs)
	}
	r.refs[ref] = maskedBlob{ref: newRef, rules: mask.RuleIDs(fs)}
	r.mu.Unlock()
	return r.next.PublishBlob(ctx, newRef, masked)
}

func (r *Recorder) maskBlob(data []byte) ([]byte, []mask.Finding) {
	if t := strings.TrimLeft(string(data[:min(len(data), 64)]), " \t\r\n"); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return r.m.MaskJSON(data)
	}
	return r.m.MaskBytes(data)
}

// Publish masks e in place and forwards it.
func (r *Recorder) Publish(ctx context.Context, e *event.Event) error {
	var fs []mask.Finding
	str := func(s *string) {
		if *s == "" {
			return
		}
		out, f := r.m.Mask(*s)
		*s, fs = out, append(fs, f...)
	}
	strs := func(ss []string) {
		for i := range ss {
			str(&ss[i])
		}
	}
	switch {
	case e.HTTPRequest != nil:
		q := e.HTTPRequest
		var f []mask.Finding
		q.URL, f = r.m.MaskURL(q.URL)
		fs = append(fs, f...)
		ct := contentType(q.Headers)
		q.Headers, f = r.m.MaskHeaders(q.Headers)
		fs = append(fs, f...)
		fs = append(fs, r.body(q.Body, ct, &e.Masked)...)
	case e.HTTPResponse != nil:
		p := e.HTTPResponse
		var f []mask.Finding
		ct := contentType(p.Headers)
		p.Headers, f = r.m.MaskHeaders(p.Headers)
		fs = append(fs, f...)
		fs = append(fs, r.body(p.Body, ct, &e.Masked)...)
		str(&p.Error)
	case e.K8sRequest != nil:
		str(&e.K8sRequest.Name)
	case e.StreamData != nil:
		fs = append(fs, r.body(e.StreamData.Data, "", &e.Masked)...)
	case e.LLMPrompt != nil:
		str(&e.LLMPrompt.System)
		for i := range e.LLMPrompt.Messages {
			str(&e.LLMPrompt.Messages[i].Content)
		}
		strs(e.LLMPrompt.Tools)
	case e.LLMCompletion != nil:
		c := e.LLMCompletion
		str(&c.Text)
		strs(c.CodeBlocks)
		for i := range c.ToolCalls {
			tc := &c.ToolCalls[i]
			fs = append(fs, r.jsonText(&tc.Arguments)...)
			str(&tc.Result)
		}
	case e.MCPToolList != nil:
		l := e.MCPToolList
		str(&l.Server)
		str(&l.Error)
		for i := range l.Tools {
			t := &l.Tools[i]
			str(&t.Description)
			fs = append(fs, r.jsonText(&t.InputSchema)...)
		}
	case e.MCPToolCall != nil:
		c := e.MCPToolCall
		str(&c.Server)
		fs = append(fs, r.jsonText(&c.Arguments)...)
		str(&c.Result)
		str(&c.Error)
	case e.SQLQuery != nil:
		out, f := r.m.MaskSQL(e.SQLQuery.Statement)
		e.SQLQuery.Statement, fs = out, append(fs, f...)
	case e.SQLResult != nil:
		str(&e.SQLResult.Error)
	case e.ProcessExec != nil:
		fs = append(fs, r.args(e.ProcessExec.Arguments)...)
		str(&e.ProcessExec.Cwd)
	case e.SessionStart != nil:
		fs = append(fs, r.args(e.SessionStart.Command)...)
	case e.SessionEnd != nil:
		str(&e.SessionEnd.Reason)
	case e.ConnOpen != nil:
		str(&e.ConnOpen.Refused)
	case e.ConnClose != nil:
		str(&e.ConnClose.Error)
	case e.PolicyDecision != nil:
		str(&e.PolicyDecision.Reason)
	case e.ApprovalRequested != nil:
		str(&e.ApprovalRequested.Summary)
	case e.ApprovalDecided != nil:
		str(&e.ApprovalDecided.Reason)
	}
	if len(fs) > 0 || len(e.Masked) > 0 {
		e.Masked = append(e.Masked, mask.RuleIDs(fs)...)
		slices.Sort(e.Masked)
		e.Masked = slices.Compact(e.Masked)
	}
	return r.next.Publish(ctx, e)
}

// jsonText masks a string that holds JSON text (tool arguments, schemas)
// structurally, so that values under secret-like keys are masked too.
func (r *Recorder) jsonText(s *string) []mask.Finding {
	if *s == "" {
		return nil
	}
	out, fs := r.m.MaskJSONString(*s)
	*s = out
	return fs
}

// args masks a command line: each argument, and the argument after a flag
// named like a secret (--password X, -p X is too ambiguous to guess).
func (r *Recorder) args(argv []string) []mask.Finding {
	var fs []mask.Finding
	for i := range argv {
		out, f := r.m.Mask(argv[i])
		argv[i], fs = out, append(fs, f...)
	}
	joined := strings.Join(argv, " ")
	if _, f := r.m.Mask(joined); len(f) > 0 {
		// A secret only visible across arguments: mask those arguments.
		for _, x := range f {
			for i := range argv {
				if strings.Contains(argv[i], x.Secret) {
					argv[i] = strings.ReplaceAll(argv[i], x.Secret, x.Token)
				}
			}
		}
		fs = append(fs, f...)
	}
	return fs
}

// body masks a recorded body in place by its content type, rewrites a
// blob ref to the masked blob's and adds the blob's rules to masked.
func (r *Recorder) body(b *event.Body, ct string, masked *[]string) []mask.Finding {
	if b == nil {
		return nil
	}
	if b.Ref != "" {
		r.mu.Lock()
		if mb, ok := r.refs[b.Ref]; ok {
			delete(r.refs, b.Ref)
			b.Ref = mb.ref
			*masked = append(*masked, mb.rules...)
		}
		r.mu.Unlock()
	}
	var fs []mask.Finding
	switch {
	case b.Text != "":
		b.Text, fs = r.maskText(b.Text, ct)
	case len(b.B64) > 0:
		b.B64, fs = r.m.MaskBytes(b.B64)
	}
	return fs
}

func (r *Recorder) maskText(s, ct string) (string, []mask.Finding) {
	ct = strings.ToLower(ct)
	switch {
	case strings.Contains(ct, "json"):
		return r.m.MaskJSONString(s)
	case strings.Contains(ct, "x-www-form-urlencoded"):
		return r.m.MaskForm(s)
	case strings.Contains(ct, "event-stream"):
		return r.m.MaskSSE(s)
	}
	out, fs := r.m.Mask(s)
	if len(fs) == 0 || !utf8.ValidString(out) {
		return s, fs
	}
	return out, fs
}

func contentType(h map[string][]string) string {
	for k, v := range h {
		if strings.EqualFold(k, "Content-Type") && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// KeyFileName is the file in the spool directory that holds a generated
// masking key.
const KeyFileName = "mask.key"

// LoadKey returns the masking key: derived from keyFile when it is set
// (the file must exist and hold at least 16 bytes), else read from
// KeyFileName in spoolDir, which is created with a random key the first
// time, so tokens stay consistent across sidecar restarts.
func LoadKey(keyFile, spoolDir string) ([]byte, error) {
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("mask key: %w", err)
		}
		b = []byte(strings.TrimSpace(string(b)))
		if len(b) < 16 {
			return nil, fmt.Errorf("mask key %s: %d bytes, want at least 16", keyFile, len(b))
		}
		return derive(b), nil
	}
	path := filepath.Join(spoolDir, KeyFileName)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return derive([]byte(strings.TrimSpace(string(b)))), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("mask key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("mask key: %w", err)
	}
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("mask key: %w", err)
	}
	content := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("mask key: %w", err)
	}
	return derive([]byte(content)), nil
}

func derive(b []byte) []byte {
	sum := sha256.Sum256(append([]byte("chaperone-mask-v1\x00"), b...))
	return sum[:]
}
