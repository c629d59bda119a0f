package runner

import (
	"context"
	"fmt"
	"time"
)

// PolicyPublisher distributes the policy of one session through the
// server; *client.Client is one.
type PolicyPublisher interface {
	PutSessionPolicy(ctx context.Context, session string, doc []byte) (hash string, err error)
	DeleteSessionPolicy(ctx context.Context, session string) error
}

// putPolicy has the server distribute doc under the session's own key,
// where the run's sidecar finds it at start: the same path as the
// server's policy, for this session alone. It returns the function that
// withdraws it.
func putPolicy(ctx context.Context, pub PolicyPublisher, session string, doc []byte) (func(), error) {
	if _, err := pub.PutSessionPolicy(ctx, session, doc); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = pub.DeleteSessionPolicy(dctx, session)
	}, nil
}
