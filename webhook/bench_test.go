package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkAdmission measures whole AdmissionReview round trips through the
// HTTP handler (decode, inject, patch, encode) and reports the p50 and p99
// latency over each batch of 1,000 pod admissions.
func BenchmarkAdmission(b *testing.B) {
	h := newTestHandler(b, ModeNative, plainNS)
	srv := h.HTTPHandler()
	req := request(b, filepath.Join("testdata", "annotation.pod.yaml"), alice, admissionv1.Create)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	lat := make([]time.Duration, 0, batch)
	var p50, p99 time.Duration
	for b.Loop() {
		lat = lat[:0]
		for range batch {
			start := time.Now()
			rec := httptest.NewRecorder()
			r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/mutate", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			srv.ServeHTTP(rec, r)
			lat = append(lat, time.Since(start))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
		slices.Sort(lat)
		p50, p99 = lat[batch/2], lat[batch*99/100]
	}
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// TestHTTPHandler checks one AdmissionReview over HTTP: the response names
// the request's UID and carries a JSONPatch.
func TestHTTPHandler(t *testing.T) {
	h := newTestHandler(t, ModeNative, plainNS)
	req := request(t, filepath.Join("testdata", "annotation.pod.yaml"), alice, admissionv1.Create)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/mutate", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	h.HTTPHandler().ServeHTTP(rec, r)
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if got.Response == nil || got.Response.UID != req.UID || !got.Response.Allowed ||
		got.Response.PatchType == nil || *got.Response.PatchType != admissionv1.PatchTypeJSONPatch || len(got.Response.Patch) == 0 {
		t.Fatalf("response %+v", got.Response)
	}
}
