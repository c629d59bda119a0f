package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// putPolicy puts set in the distribution bucket under the session's own
// key, where the run's sidecar finds it at start: the same path as the
// server's policy, for this session alone. It returns the function that
// withdraws it.
func putPolicy(ctx context.Context, natsURL, session string, set *policy.Set) (func(), error) {
	key, err := policy.SessionKey(session)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(natsURL, nats.Name("chaperonectl run "+session), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("policy: connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("policy: jetstream: %w", err)
	}
	kv, err := policy.OpenBucket(ctx, js)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := policy.Put(ctx, kv, key, set); err != nil {
		nc.Close()
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = policy.Put(dctx, kv, key, nil)
		nc.Close()
	}, nil
}
