package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

const svcName = "chaperone-webhook.chaperone.svc"

func verifyAt(t *testing.T, m *Manager, at time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(m.CABundle()) {
		t.Fatal("CA bundle holds no certificate")
	}
	cert, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: svcName, Roots: pool, CurrentTime: at}); err != nil {
		t.Fatalf("serving certificate does not verify at %v: %v", at, err)
	}
}

func TestRotation(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	m, err := New(Options{Dir: dir, DNSNames: []string{svcName}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(nil); err == nil {
		t.Fatal("certificate before Ensure")
	}
	changed, err := m.Ensure(t.Context())
	if err != nil || !changed {
		t.Fatalf("first Ensure: changed=%v err=%v", changed, err)
	}
	verifyAt(t, m, clk.Now())
	first := m.Leaf()
	bundle := m.CABundle()

	// Early in its life nothing is renewed, and a restart reuses the files.
	clk.Add(30 * 24 * time.Hour)
	if changed, err := m.Ensure(t.Context()); err != nil || changed {
		t.Fatalf("Ensure at 30d: changed=%v err=%v", changed, err)
	}
	if m.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("serving certificate renewed too early")
	}
	m2, err := New(Options{Dir: dir, DNSNames: []string{svcName}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m2.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 || string(m2.CABundle()) != string(bundle) {
		t.Fatal("restart did not reuse the certificate on disk")
	}

	// Past two thirds of 90 days: a new serving certificate from the same CA,
	// served at once through GetCertificate, bundle unchanged.
	clk.Add(31 * 24 * time.Hour)
	if changed, err := m.Ensure(t.Context()); err != nil || changed {
		t.Fatalf("Ensure at 61d: changed=%v err=%v", changed, err)
	}
	second := m.Leaf()
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("serving certificate not renewed at 61 days")
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Fatal("renewed certificate does not live longer")
	}
	verifyAt(t, m, clk.Now())

	// Past two thirds of the CA's year: new CA, bundle = new + old CA, so
	// clients holding either trust the webhook during the rollover.
	clk.Add(200 * 24 * time.Hour)
	changed, err = m.Ensure(t.Context())
	if err != nil || !changed {
		t.Fatalf("Ensure at 261d: changed=%v err=%v", changed, err)
	}
	verifyAt(t, m, clk.Now())
	oldPool := x509.NewCertPool()
	oldPool.AppendCertsFromPEM(bundle)
	newPool := x509.NewCertPool()
	newPool.AppendCertsFromPEM(m.CABundle())
	if n := len(newPool.Subjects()); n != 2 { //nolint:staticcheck // counting only
		t.Fatalf("bundle after CA rollover holds %d certificates, want 2", n)
	}
	if _, err := first.Verify(x509.VerifyOptions{DNSName: svcName, Roots: newPool, CurrentTime: clk.Now().Add(-230 * 24 * time.Hour)}); err != nil {
		t.Fatalf("old CA dropped from the bundle: %v", err)
	}
	if _, err := m.Leaf().Verify(x509.VerifyOptions{DNSName: svcName, Roots: oldPool, CurrentTime: clk.Now()}); err == nil {
		t.Fatal("new certificate verifies against the old CA alone")
	}
}

func TestNamesChange(t *testing.T) {
	dir := t.TempDir()
	m, _ := New(Options{Dir: dir, DNSNames: []string{svcName}})
	if _, err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	m2, _ := New(Options{Dir: dir, DNSNames: []string{svcName}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if _, err := m2.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(m2.Leaf().IPAddresses) != 1 {
		t.Fatal("certificate not reissued for the new IP")
	}
}

// TestHotReload serves TLS through GetCertificate and sees a renewed
// certificate on the next handshake without restarting the listener.
func TestHotReload(t *testing.T) {
	clk := &clock{now: time.Now()}
	m, err := New(Options{
		Dir: t.TempDir(), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Now: clk.Now,
		CAValidity: 24 * time.Hour, CertValidity: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	serial := func() string {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(m.CABundle())
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	clk.Add(25 * time.Minute) // renewal is due; the new NotBefore (backdated an hour) is past
	if _, err := m.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := serial(); after == before || after != m.Leaf().SerialNumber.String() {
		t.Fatalf("serial before %s, after %s, current %s", before, after, m.Leaf().SerialNumber)
	}
}

func TestSyncCABundle(t *testing.T) {
	const name = "chaperone-webhook"
	cs := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.chaperone.dev"}, {Name: "workloads.chaperone.dev"}},
	})
	bundle := []byte("-----BEGIN CERTIFICATE-----\n...\n")
	for i, want := range []bool{true, false} {
		wrote, err := SyncCABundle(t.Context(), cs, name, bundle)
		if err != nil || wrote != want {
			t.Fatalf("sync %d: wrote=%v err=%v, want wrote=%v", i, wrote, err, want)
		}
	}
	got, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range got.Webhooks {
		if string(w.ClientConfig.CABundle) != string(bundle) {
			t.Fatalf("webhook %s caBundle %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	if _, err := SyncCABundle(t.Context(), cs, "missing", bundle); err == nil {
		t.Fatal("no error for a missing configuration")
	}
}

func TestSyncValidatingCABundle(t *testing.T) {
	const name = "chaperone-webhook"
	cs := fake.NewClientset(&admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "sessionpolicies.chaperone.dev"}},
	})
	bundle := []byte("-----BEGIN CERTIFICATE-----\n...\n")
	for i, want := range []bool{true, false} {
		wrote, err := SyncValidatingCABundle(t.Context(), cs, name, bundle)
		if err != nil || wrote != want {
			t.Fatalf("sync %d: wrote=%v err=%v, want wrote=%v", i, wrote, err, want)
		}
	}
	got, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Webhooks[0].ClientConfig.CABundle) != string(bundle) {
		t.Fatalf("caBundle %q", got.Webhooks[0].ClientConfig.CABundle)
	}
	// A mutating configuration of the same name is not a validating one.
	if _, err := SyncCABundle(t.Context(), cs, name, bundle); err == nil {
		t.Fatal("no error for a missing mutating configuration")
	}
}
