package certs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// pushHook runs before on the first Push, to let another replica push in
// between this one's Pull and Push.
type pushHook struct {
	Shared
	before func()
}

func (p *pushHook) Push(ctx context.Context, dir string) error {
	if p.before != nil {
		f := p.before
		p.before = nil
		f()
	}
	return p.Shared.Push(ctx, dir)
}

// TestSharedSecret: replicas sharing a Secret serve certificates of one CA,
// also when two create theirs at the same time, and a chart-made empty
// Secret is filled in.
func TestSharedSecret(t *testing.T) {
	ctx := t.Context()
	const ns, name = "chaperone", "chaperone-webhook-certs"
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	newManager := func(shared Shared) *Manager {
		t.Helper()
		m, err := New(Options{Dir: t.TempDir(), DNSNames: []string{svcName}, Shared: shared})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := newManager(NewSecretStore(cs, ns, name))
	if _, err := first.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[BundleFile]) != string(first.CABundle()) || len(sec.Data[KeyFile]) == 0 {
		t.Fatal("empty Secret not filled in")
	}
	second := newManager(NewSecretStore(cs, ns, name))
	if _, err := second.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if string(second.CABundle()) != string(first.CABundle()) || second.Leaf().SerialNumber.Cmp(first.Leaf().SerialNumber) != 0 {
		t.Fatal("second replica did not take the shared certificate")
	}

	// A race on a missing Secret: b pulled nothing, a pushes, b's push
	// conflicts and b takes a's.
	cs2 := fake.NewClientset()
	a := newManager(NewSecretStore(cs2, ns, name))
	b := newManager(&pushHook{Shared: NewSecretStore(cs2, ns, name), before: func() {
		if _, err := a.Ensure(ctx); err != nil {
			t.Error(err)
		}
	}})
	if _, err := b.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if string(a.CABundle()) != string(b.CABundle()) || a.Leaf().SerialNumber.Cmp(b.Leaf().SerialNumber) != 0 {
		t.Fatal("after a conflict the replicas disagree")
	}
	verifyAt(t, b, b.opts.Now())
}

// TestFilesReload: a certificate written by someone else is served and
// replaced when the files change; a broken pair keeps the old one.
func TestFilesReload(t *testing.T) {
	src := t.TempDir()
	m, err := New(Options{Dir: src, DNSNames: []string{svcName}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := NewFiles(src, nil)
	if _, err := f.GetCertificate(nil); err == nil {
		t.Fatal("certificate before Load")
	}
	if changed, err := f.Load(); err != nil || !changed {
		t.Fatalf("Load: %v %v", changed, err)
	}
	if changed, err := f.Load(); err != nil || changed {
		t.Fatalf("second Load: %v %v", changed, err)
	}
	c1, _ := f.GetCertificate(nil)
	clk := &clock{now: time.Now().Add(80 * 24 * time.Hour)}
	m.opts.Now = clk.Now
	if _, err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if changed, err := f.Load(); err != nil || !changed {
		t.Fatalf("Load after renewal: %v %v", changed, err)
	}
	c2, _ := f.GetCertificate(nil)
	if c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber) == 0 {
		t.Fatal("renewed certificate not picked up")
	}
	if err := os.WriteFile(filepath.Join(src, CertFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(); err == nil {
		t.Fatal("broken pair loaded")
	}
	if c3, _ := f.GetCertificate(nil); c3 != c2 {
		t.Fatal("broken pair replaced the good one")
	}
}
