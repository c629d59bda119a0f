package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chaperone-dev/chaperone/pkg/event"
)

// Distribution: the server puts the compiled set's bundle (Set.Marshal)
// into a JetStream key-value bucket; sidecars watch their keys and
// Unmarshal what arrives. The same path serves every source of policy:
// --policy-file, SessionPolicy objects, and `chaperonectl run --policy`,
// which puts a set under its own session's key.
const (
	// Bucket is the key-value bucket holding the distributed sets.
	Bucket = "CHAPERONE_POLICY"
	// KeyCluster holds the set every session decides with.
	KeyCluster = "current"
	// sessionKeyPrefix + session id holds a set for that session alone; it
	// replaces KeyCluster's set for the session while it exists.
	sessionKeyPrefix = "session."
)

// SessionKey is the bucket key of a set put for one session alone.
func SessionKey(session string) (string, error) {
	if err := event.ValidSession(session); err != nil {
		return "", fmt.Errorf("policy session key: %w", err)
	}
	return sessionKeyPrefix + session, nil
}

// IsSessionKey reports whether key holds a set for one session.
func IsSessionKey(key string) bool { return strings.HasPrefix(key, sessionKeyPrefix) }

// OpenBucket creates the distribution bucket, or opens it as it is. Only
// the latest value of each key is kept: a sidecar needs the current set,
// not the history.
func OpenBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Chaperone compiled session policies (policy.Set bundles)",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("policy bucket: %w", err)
	}
	return kv, nil
}

// Put stores set's bundle under key and returns the new revision. A nil
// set deletes the key: the sessions reading it fall back (a session key to
// KeyCluster, KeyCluster to no policy).
func Put(ctx context.Context, kv jetstream.KeyValue, key string, set *Set) (uint64, error) {
	if set == nil {
		if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("delete policy %s: %w", key, err)
		}
		return 0, nil
	}
	b, err := set.Marshal()
	if err != nil {
		return 0, err
	}
	rev, err := kv.Put(ctx, key, b)
	if err != nil {
		return 0, fmt.Errorf("put policy %s: %w", key, err)
	}
	return rev, nil
}
