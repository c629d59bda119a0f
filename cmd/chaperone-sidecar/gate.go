package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/sidecar/gate"
	"github.com/chaperone-dev/chaperone/sidecar/publish"
)

// startGate builds the request gate: credential brokering when a token
// file is given, the policy from the cache and then the server's bucket
// (watched until base ends), and approvals over the publisher's NATS
// connection. It waits up to PolicyWait for the first policy, so that the
// first connections are decided by it.
func (c ProxyConfig) startGate(ctx, base context.Context, pub *publish.Publisher, id *event.Identity, log *slog.Logger) (*gate.Gate, error) {
	var creds *gate.Credentials
	if c.TokenFile != "" {
		fallback := ""
		if id.ServiceAccount != "" {
			fallback = "system:serviceaccount:" + id.Namespace + ":" + id.ServiceAccount
		}
		var err error
		if creds, err = gate.NewCredentials(c.PlaceholderToken, c.TokenFile, fallback); err != nil {
			return nil, err
		}
		log.Info("brokering the service-account credential", "token_file", c.TokenFile, "kube_api", c.KubeAPI)
	}
	g := gate.New(gate.Options{
		Session:     c.Session,
		Identity:    policyIdentity(id),
		Requester:   *id,
		Asker:       gate.NATSAsker{Conn: pub.Conn()},
		Credentials: creds,
		Logger:      log,
	})
	loaded := func(pl *event.PolicyLoaded) {
		e := event.New(c.Session, event.KindPolicyLoaded, time.Now())
		e.Source, e.Identity = event.SourceSidecar, id
		e.PolicyLoaded = pl
		if err := pub.Publish(base, e); err != nil {
			log.Error("record policy.loaded", "err", err)
		}
	}
	wo := gate.WatchOptions{Conn: pub.Conn(), Session: c.Session, CacheDir: c.SpoolDir, Loaded: loaded}
	cached := g.LoadCache(wo)
	first := make(chan struct{})
	go g.Watch(base, wo, first)
	if !cached && c.PolicyWait > 0 {
		t := time.NewTimer(c.PolicyWait)
		defer t.Stop()
		select {
		case <-first:
		case <-t.C:
			log.Warn("no policy yet (server away, nothing cached): deciding without one until it arrives", "waited", c.PolicyWait)
		case <-ctx.Done():
		}
	}
	return g, nil
}

// policyIdentity is what policies see of the session's identity.
func policyIdentity(id *event.Identity) policy.Identity {
	sa := id.ServiceAccount
	if sa != "" && id.Namespace != "" && !strings.HasPrefix(sa, "system:") {
		sa = "system:serviceaccount:" + id.Namespace + ":" + sa
	}
	return policy.Identity{
		User:           id.User,
		Groups:         id.Groups,
		ServiceAccount: sa,
		Namespace:      id.Namespace,
		Pod:            id.Pod,
	}
}
