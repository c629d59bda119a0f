package certs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"
)

// DefaultRotateCheck is how often RotateLoop asks whether the CA is due.
const DefaultRotateCheck = time.Hour

// TrustPEM returns the CA certificates the agent must trust: the current
// CA, then the CA it replaced while that one has not expired. This is what
// the trust files hold (CAFile alone, BundleFile after the system roots).
func (a *Authority) TrustPEM() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.trustPEM(a.cur, a.prev)
}

// trustPEM joins cur's PEM and prev's if prev is still valid.
func (a *Authority) trustPEM(cur, prev *generation) []byte {
	if prev == nil || !a.opts.Now().Before(prev.cert.NotAfter) {
		return cur.pem
	}
	return bytes.Join([][]byte{cur.pem, prev.pem}, nil)
}

// RotateDue reports whether the current CA is within RotateBefore of its
// expiry.
func (a *Authority) RotateDue() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.opts.Now().Before(a.cur.cert.NotAfter.Add(-a.opts.RotateBefore))
}

// Rotate replaces the CA if it is due (RotateDue), and reports whether it
// did. In order: a new CA is created; publish is given the new trust PEM
// (new CA and old, see TrustPEM) and must have made it visible to the
// agent, for instance with WriteTrust; only then does the new CA sign
// leaves, and the cached leaves of the old one are dropped. A publish
// error leaves the old CA in place (it is still valid for RotateBefore),
// to be tried again.
func (a *Authority) Rotate(publish func(trustPEM []byte) error) (bool, error) {
	if !a.RotateDue() {
		return false, nil
	}
	return true, a.rotate(publish)
}

// RotateNow replaces the CA whether or not it is due, as Rotate does.
func (a *Authority) RotateNow(publish func(trustPEM []byte) error) error {
	return a.rotate(publish)
}

func (a *Authority) rotate(publish func(trustPEM []byte) error) error {
	gen, err := newGeneration(a.opts)
	if err != nil {
		return fmt.Errorf("rotate ca: %w", err)
	}
	a.mu.Lock()
	old := a.cur
	a.mu.Unlock()
	if err := publish(a.trustPEM(gen, old)); err != nil {
		return fmt.Errorf("rotate ca: publish trust: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prev, a.cur = old, gen
	a.lru.Init()
	clear(a.byName)
	return nil
}

// RotateLoop calls Rotate every check (DefaultRotateCheck if zero) until
// ctx ends, publishing the trust PEM with publish, and logs each rotation
// and failure. Run it for as long as the Authority mints leaves.
func (a *Authority) RotateLoop(ctx context.Context, check time.Duration, publish func(trustPEM []byte) error, log *slog.Logger) {
	if check <= 0 {
		check = DefaultRotateCheck
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		rotated, err := a.Rotate(publish)
		switch {
		case err != nil:
			log.Error("ca rotation", "err", err)
		case rotated:
			c := a.Certificate()
			log.Info("ca rotated", "serial", c.SerialNumber.Text(16), "not_after", c.NotAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
