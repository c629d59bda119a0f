package kubepolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// Origin is the origin the watcher gives its sets in Publisher.Publish.
const Origin = "kubernetes"

// Defaults for Options.
const (
	DefaultResync   = 10 * time.Minute
	DefaultDebounce = 300 * time.Millisecond
	// retryAfter is when a pass that could not publish or write a status
	// is tried again.
	retryAfter = 2 * time.Second
)

// Resource is the SessionPolicy resource the watcher lists and watches.
var Resource = schema.GroupVersionResource{Group: v1alpha1.Group, Version: v1alpha1.Version, Resource: "sessionpolicies"}

// ErrNoResource is returned by Check when the API server does not serve
// SessionPolicy (the CRD is not installed) or does not let us list it.
var ErrNoResource = errors.New("sessionpolicies.chaperone.dev not available")

// Publisher makes a list of policies the set sessions decide with; the
// server's Distributor is one. It refuses a list that does not compile.
type Publisher interface {
	Publish(ctx context.Context, policies []v1alpha1.SessionPolicy, origin string) error
}

// Options configure a Watcher.
type Options struct {
	// Client reaches the API server.
	Client dynamic.Interface
	// Publisher receives the full list of policies on every change.
	Publisher Publisher
	// Logger; nil discards.
	Logger *slog.Logger
	// Resync is the informer's resync period (default DefaultResync): every
	// policy's status is checked again that often.
	Resync time.Duration
	// Debounce gathers changes that arrive together into one publish
	// (default DefaultDebounce).
	Debounce time.Duration
}

// Watcher watches SessionPolicy objects cluster-wide, publishes the whole
// list whenever it changes and it compiles, and keeps each object's Ready
// condition.
type Watcher struct {
	opts Options
	log  *slog.Logger
	// last is what this watcher last published; published says it has
	// published at all (an empty set is a publish too: it withdraws).
	last      distributed
	published bool
}

// New returns a Watcher; Run starts it.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil || opts.Publisher == nil {
		return nil, errors.New("kubepolicy: Client and Publisher are required")
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{opts: opts, log: log}, nil
}

// Check lists SessionPolicy objects once, so a missing CRD or missing RBAC
// stops the server at start with a clear error instead of a retry loop in
// the log.
func (w *Watcher) Check(ctx context.Context) error {
	_, err := w.opts.Client.Resource(Resource).List(ctx, metav1.ListOptions{Limit: 1})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%w (install the CRD from charts/chaperone/crds and grant list/watch on it): %w", ErrNoResource, err)
	}
	if err != nil {
		return fmt.Errorf("list sessionpolicies: %w", err)
	}
	return nil
}

// Run watches until ctx ends. The first publish happens once the
// informer's cache has synced, so a restart never withdraws the policy
// for a moment.
func (w *Watcher) Run(ctx context.Context) error {
	inf := dynamicinformer.NewFilteredDynamicInformer(w.opts.Client, Resource, metav1.NamespaceAll, w.opts.Resync, cache.Indexers{}, nil)
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return fmt.Errorf("sessionpolicy informer: %w", err)
	}
	go inf.Informer().RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	w.log.Info("watching SessionPolicy objects", slog.String("resource", Resource.String()))
	timer := time.NewTimer(0) // the first pass right away
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			// Let the rest of a burst (kubectl apply -f dir/) arrive.
			timer.Reset(w.opts.Debounce)
			continue
		case <-timer.C:
		}
		if err := w.pass(ctx, inf.Lister().List); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Error("session policies from the cluster", slog.Any("error", err))
			timer.Reset(retryAfter)
		}
	}
}

// pass reads the cached objects, publishes them when they compile, and
// writes the status of each.
func (w *Watcher) pass(ctx context.Context, list func(labels.Selector) ([]runtime.Object, error)) error {
	objs, err := list(labels.Everything())
	if err != nil {
		return fmt.Errorf("list cached sessionpolicies: %w", err)
	}
	policies := make([]v1alpha1.SessionPolicy, 0, len(objs))
	bad := map[string]error{}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var p v1alpha1.SessionPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &p); err != nil {
			bad[u.GetName()] = &v1alpha1.FieldError{Policy: u.GetName(), Msg: "not a SessionPolicy: " + err.Error()}
			continue
		}
		policies = append(policies, p)
	}
	slices.SortFunc(policies, func(a, b v1alpha1.SessionPolicy) int { return strings.Compare(a.Name, b.Name) })
	pl := makePlan(policies, bad, w.last)
	var errs []error
	if pl.publish && (!w.published || pl.hash != w.last.hash || !sameGenerations(w.last.generations, pl.policies)) {
		if err := w.opts.Publisher.Publish(ctx, pl.policies, Origin); err != nil {
			// Not distributed (NATS away?): keep the statuses as they are
			// and try again.
			return fmt.Errorf("publish: %w", err)
		}
		w.last = distributed{hash: pl.hash, generations: make(map[string]int64, len(pl.policies))}
		for i := range pl.policies {
			w.last.generations[pl.policies[i].Name] = pl.policies[i].Generation
		}
		w.published = true
	} else if !pl.publish {
		w.log.Error("session policies from the cluster refused; the last good set stays distributed",
			slog.Any("broken", pl.broken), slog.String("hash", w.last.hash))
	}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		want, ok := pl.status[u.GetName()]
		if !ok {
			continue
		}
		if err := w.writeStatus(ctx, u, want); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeStatus updates the status subresource of u to want when it differs.
// A conflict means the object changed meanwhile: its watch event brings
// another pass.
func (w *Watcher) writeStatus(ctx context.Context, u *unstructured.Unstructured, want v1alpha1.SessionPolicyStatus) error {
	var have v1alpha1.SessionPolicyStatus
	if st, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(st, &have)
	}
	if apiequality.Semantic.DeepEqual(have, want) {
		return nil
	}
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want)
	if err != nil {
		return fmt.Errorf("status of sessionpolicy %s: %w", u.GetName(), err)
	}
	c := u.DeepCopy()
	c.Object["status"] = st
	_, err = w.opts.Client.Resource(Resource).UpdateStatus(ctx, c, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status of sessionpolicy %s: %w", u.GetName(), err)
	}
	return nil
}

// sameGenerations reports whether gens holds exactly the policies at their
// generations.
func sameGenerations(gens map[string]int64, policies []v1alpha1.SessionPolicy) bool {
	if len(gens) != len(policies) {
		return false
	}
	for i := range policies {
		if g, ok := gens[policies[i].Name]; !ok || g != policies[i].Generation {
			return false
		}
	}
	return true
}
