package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/chaperone-dev/chaperone/pkg/policy"
	"github.com/chaperone-dev/chaperone/pkg/policy/v1alpha1"
)

// PathValidateSessionPolicy is where chaperone-webhook serves
// PolicyValidator; the ValidatingWebhookConfiguration calls it.
const PathValidateSessionPolicy = "/validate-sessionpolicy"

// maxDenyMessage bounds the message of a refusal: a policy of a thousand
// broken rules must not make an answer the API server cuts off mid-word.
const maxDenyMessage = 16 << 10

// PolicyValidator is the admission.Handler of the validating webhook for
// SessionPolicy objects: it compiles the object's rules with package policy,
// the same compiler chaperone-server and the sidecars use, and refuses an
// object that does not compile with the policy, the rule and the CEL
// error. So a broken expression is refused when it is applied, never at
// request time.
type PolicyValidator struct {
	log   *slog.Logger
	total *prometheus.CounterVec
}

var _ admission.Handler = (*PolicyValidator)(nil)

// NewPolicyValidator returns a PolicyValidator; its metrics go to reg
// unless reg is nil, its log to log unless log is nil.
func NewPolicyValidator(reg prometheus.Registerer, log *slog.Logger) (*PolicyValidator, error) {
	v := &PolicyValidator{
		log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chaperone", Subsystem: "webhook", Name: "sessionpolicy_validations_total",
			Help: "SessionPolicy admission requests by result (allowed, denied, error, skipped).",
		}, []string{"result"}),
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if reg != nil {
		if err := reg.Register(v.total); err != nil {
			return nil, fmt.Errorf("sessionpolicy webhook metrics: %w", err)
		}
	}
	return v, nil
}

// Handle answers one admission request for a SessionPolicy.
func (v *PolicyValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, result := ValidateSessionPolicy(req)
	v.total.WithLabelValues(result).Inc()
	if result == "denied" || result == "error" {
		v.log.LogAttrs(ctx, slog.LevelWarn, "session policy refused", slog.String(logName, req.Name),
			slog.String(logUser, req.UserInfo.Username), slog.String(logError, resp.Result.Message))
	}
	return resp
}

// ValidateSessionPolicy is the pure decision of PolicyValidator: it
// returns the response and its result for the metric (allowed, denied,
// error, skipped).
func ValidateSessionPolicy(req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("not a create or update"), "skipped"
	}
	if req.Kind.Group != v1alpha1.Group || req.Kind.Kind != v1alpha1.Kind {
		return admission.Allowed("kind not handled"), "skipped"
	}
	var p v1alpha1.SessionPolicy
	if err := json.Unmarshal(req.Object.Raw, &p); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode session policy: %w", err)), "error"
	}
	if p.Name == "" {
		p.Name = req.Name
	}
	if _, err := policy.Compile([]v1alpha1.SessionPolicy{p}); err != nil {
		msg := "chaperone: SessionPolicy does not compile: " + err.Error()
		if len(msg) > maxDenyMessage {
			n := maxDenyMessage
			for n > 0 && !utf8.RuneStart(msg[n]) {
				n--
			}
			msg = msg[:n] + " …(truncated)"
		}
		return admission.Denied(msg), "denied"
	}
	return admission.Allowed("compiles"), "allowed"
}

// HTTPHandler serves the validator as an admission/v1 AdmissionReview
// endpoint.
func (v *PolicyValidator) HTTPHandler() http.Handler {
	base := logr.FromSlogHandler(v.log.Handler())
	return &admission.Webhook{
		Handler:        v,
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return base },
	}
}
