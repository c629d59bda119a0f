package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/chaperone-dev/chaperone/webhook/internal/jsondiff"
)

// NamespaceLabeler returns the labels of a namespace.
type NamespaceLabeler interface {
	NamespaceLabels(ctx context.Context, name string) (map[string]string, error)
}

// NamespaceLabelerFunc adapts a function to NamespaceLabeler.
type NamespaceLabelerFunc func(ctx context.Context, name string) (map[string]string, error)

// NamespaceLabels calls f.
func (f NamespaceLabelerFunc) NamespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	return f(ctx, name)
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Namespaces looks up namespace labels; nil treats every namespace as
	// unlabelled.
	Namespaces NamespaceLabeler
	// Registerer gets the admission metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handler is the admission.Handler of the mutating webhook: it decodes the
// object, calls Inject or StampTemplate and answers with a JSON patch.
type Handler struct {
	cfg      Config
	ns       NamespaceLabeler
	log      *slog.Logger
	total    *prometheus.CounterVec
	duration prometheus.Histogram
}

var _ admission.Handler = (*Handler)(nil)

// NewHandler returns a Handler for a validated cfg.
func NewHandler(cfg Config, opts HandlerOptions) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{
		cfg: cfg,
		ns:  opts.Namespaces,
		log: opts.Logger,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "webhook", Name: "admissions_total",
			Help: "Admission requests by resource kind and result (injected, stamped, skipped, denied, error).",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "chaperone", Subsystem: "webhook", Name: "admission_duration_seconds",
			Help:    "Time to answer an admission request.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{h.total, h.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhook metrics: %w", err)
			}
		}
	}
	return h, nil
}

// Log keys.
const (
	logKind      = "kind"
	logNamespace = "namespace"
	logName      = "name"
	logUser      = "user"
	logError     = "error"
)

// Handle answers one admission request.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	defer func() { h.duration.Observe(time.Since(start).Seconds()) }()
	kind := req.Kind.Kind
	resp, result := h.handle(ctx, req)
	h.total.WithLabelValues(kind, result).Inc()
	if result == "denied" || result == "error" {
		h.log.LogAttrs(ctx, slog.LevelWarn, "admission refused", slog.String(logKind, kind),
			slog.String(logNamespace, req.Namespace), slog.String(logName, req.Name),
			slog.String(logUser, req.UserInfo.Username), slog.String(logError, resp.Result.Message))
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("not a create or update"), "skipped"
	}
	in := Input{User: req.UserInfo}
	if h.ns != nil && req.Namespace != "" {
		labels, err := h.ns.NamespaceLabels(ctx, req.Namespace)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("namespace %s: %w", req.Namespace, err)), "error"
		}
		in.NamespaceLabels = labels
	}
	raw := req.Object.Raw
	switch req.Kind.Group + "/" + req.Kind.Kind {
	case "/Pod":
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err)), "error"
		}
		if pod.Namespace == "" {
			pod.Namespace = req.Namespace
		}
		injected := Injected(&pod.Spec)
		selected := Selected(pod.Annotations, in.NamespaceLabels)
		err := mutate(pod, h.cfg, in) // Inject without the copy: the pod is ours
		if errors.Is(err, ErrRefused) {
			return admission.Denied(err.Error()), "denied"
		}
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err), "error"
		}
		if !selected {
			return admission.Allowed("not opted in"), "skipped"
		}
		result := "injected"
		if injected {
			result = "stamped"
		}
		return patch(raw, pod, result)
	case "apps/Deployment":
		return stamp(raw, &appsv1.Deployment{}, func(o *appsv1.Deployment) *corev1.PodTemplateSpec {
			return &o.Spec.Template
		}, in)
	case "apps/StatefulSet":
		return stamp(raw, &appsv1.StatefulSet{}, func(o *appsv1.StatefulSet) *corev1.PodTemplateSpec {
			return &o.Spec.Template
		}, in)
	case "apps/ReplicaSet":
		return stamp(raw, &appsv1.ReplicaSet{}, func(o *appsv1.ReplicaSet) *corev1.PodTemplateSpec {
			return &o.Spec.Template
		}, in)
	case "apps/DaemonSet":
		return stamp(raw, &appsv1.DaemonSet{}, func(o *appsv1.DaemonSet) *corev1.PodTemplateSpec {
			return &o.Spec.Template
		}, in)
	case "batch/Job":
		return stamp(raw, &batchv1.Job{}, func(o *batchv1.Job) *corev1.PodTemplateSpec {
			return &o.Spec.Template
		}, in)
	case "batch/CronJob":
		return stamp(raw, &batchv1.CronJob{}, func(o *batchv1.CronJob) *corev1.PodTemplateSpec {
			return &o.Spec.JobTemplate.Spec.Template
		}, in)
	}
	return admission.Allowed("kind not handled"), "skipped"
}

// stamp decodes a workload, stamps its pod template and returns the patch.
func stamp[T any](raw []byte, obj *T, template func(*T) *corev1.PodTemplateSpec, in Input) (admission.Response, string) {
	if err := json.Unmarshal(raw, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode workload: %w", err)), "error"
	}
	if !StampTemplate(template(obj), in) {
		return admission.Allowed("not opted in"), "skipped"
	}
	return patch(raw, obj, "stamped")
}

// patch answers with the JSON patch from raw, which decoded without error,
// to out: the operations
// admission.PatchResponseFromRaw would send, found without decoding the
// parts the mutation left alone (see jsondiff).
func patch(raw []byte, out any, result string) (admission.Response, string) {
	b, err := json.Marshal(out)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode: %w", err)), "error"
	}
	ops, err := jsondiff.PatchValid(raw, b) // raw decoded, b encoded: both valid
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("patch: %w", err)), "error"
	}
	resp := admission.Response{Patches: ops, AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
	if len(ops) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.PatchType = &pt
	}
	return resp, result
}

// HTTPHandler serves the handler as an admission/v1 AdmissionReview
// endpoint, logging through log.
func (h *Handler) HTTPHandler() http.Handler {
	base := logr.FromSlogHandler(h.log.Handler())
	return &admission.Webhook{
		Handler:        encodedPatch{h},
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return base },
	}
}

// encodedPatch answers with h's response, its patch already encoded
// (jsondiff.Marshal), so that admission.Webhook does not encode the
// operations through encoding/json: the same bytes, in a fraction of the
// time.
type encodedPatch struct{ h *Handler }

// Handle implements admission.Handler.
func (e encodedPatch) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp := e.h.Handle(ctx, req)
	if len(resp.Patches) == 0 {
		return resp
	}
	b, err := jsondiff.Marshal(resp.Patches)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode patch: %w", err))
	}
	resp.Patch, resp.Patches = b, nil
	pt := admissionv1.PatchTypeJSONPatch
	resp.PatchType = &pt
	return resp
}
