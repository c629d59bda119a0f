package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// policyPollEvery is how often --policy-file is checked for changes.
const policyPollEvery = 2 * time.Second

// Distributor compiles policies and publishes the compiled set to the
// distribution bucket, where sidecars watch it. Every source of policy
// feeds it: --policy-file now, a SessionPolicy watcher in a cluster. A set
// that does not compile is refused with the policy, rule and CEL error,
// and never shipped; the last good set stays.
type Distributor struct {
	kv  jetstream.KeyValue
	log *slog.Logger

	mu   sync.Mutex
	hash string
}

// NewDistributor opens (or creates) the distribution bucket.
func NewDistributor(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Distributor, error) {
	kv, err := policy.OpenBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Distributor{kv: kv, log: log}, nil
}

// Publish compiles policies and, when they compile, makes them the set
// every session decides with. An empty list withdraws the policy.
func (d *Distributor) Publish(ctx context.Context, policies []v1alpha1.SessionPolicy, origin string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(policies) == 0 {
		if _, err := policy.Put(ctx, d.kv, policy.KeyCluster, nil); err != nil {
			return err
		}
		if d.hash != "" {
			d.log.Info("policy withdrawn", slog.String("origin", origin))
		}
		d.hash = ""
		return nil
	}
	set, err := policy.Compile(policies)
	if err != nil {
		return fmt.Errorf("policy from %s refused, not distributed: %w", origin, err)
	}
	if set.Hash() == d.hash {
		return nil
	}
	rev, err := policy.Put(ctx, d.kv, policy.KeyCluster, set)
	if err != nil {
		return err
	}
	d.hash = set.Hash()
	d.log.Info("policy distributed", slog.String("origin", origin), slog.String("hash", set.Hash()),
		slog.Int("policies", set.Len()), slog.Uint64("revision", rev))
	return nil
}

// PutSession makes set the policy of one session alone, replacing the
// cluster set for it while it exists; nil withdraws it. Only the server
// writes the bucket: workloads may read it, and `chaperonectl run --policy`
// comes through the API.
func (d *Distributor) PutSession(ctx context.Context, session string, set *policy.Set) error {
	key, err := policy.SessionKey(session)
	if err != nil {
		return err
	}
	rev, err := policy.Put(ctx, d.kv, key, set)
	if err != nil {
		return err
	}
	if set == nil {
		d.log.Info("session policy withdrawn", slog.String("session", session))
		return nil
	}
	d.log.Info("session policy distributed", slog.String("session", session), slog.String("hash", set.Hash()),
		slog.Int("policies", set.Len()), slog.Uint64("revision", rev))
	return nil
}

// startPolicy distributes the cluster's SessionPolicy objects with
// --kube-policies, else --policy-file (or withdraws any policy when there
// is none) and watches the file for changes until the returned stop
// is called. A file that does not load or compile at start stops the
// server; later, a bad edit is logged and the last good set stays.
func startPolicy(ctx context.Context, cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Distributor, func(context.Context) error, error) {
	log := logger.With(slog.String("component", "policy"))
	d, err := NewDistributor(ctx, js, log)
	if err != nil {
		return nil, nil, err
	}
	if cfg.KubePolicies {
		stop, err := startKubePolicies(ctx, cfg, d, log)
		if err != nil {
			return nil, nil, err
		}
		return d, stop, nil
	}
	if cfg.PolicyFile == "" {
		if err := d.Publish(ctx, nil, "no policy file"); err != nil {
			return nil, nil, err
		}
		return d, func(context.Context) error { return nil }, nil
	}
	st, err := fileStamp(cfg.PolicyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--policy-file: %w", err)
	}
	if err := loadAndPublish(ctx, d, cfg.PolicyFile); err != nil {
		return nil, nil, fmt.Errorf("--policy-file: %w", err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(policyPollEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			now, err := fileStamp(cfg.PolicyFile)
			if err != nil || now == st {
				continue
			}
			st = now
			if err := loadAndPublish(wctx, d, cfg.PolicyFile); err != nil {
				log.Error("policy file changed but was refused; the last good policy stays", slog.Any("error", err))
			}
		}
	}()
	return d, func(context.Context) error { cancel(); <-done; return nil }, nil
}

func loadAndPublish(ctx context.Context, d *Distributor, path string) error {
	ps, err := policy.LoadFile(path)
	if err != nil {
		return err
	}
	return d.Publish(ctx, ps, path)
}

type stamp struct {
	mod  time.Time
	size int64
}

func fileStamp(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}
