package webhook

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart in this repository, relative to this package.
const chartDir = "../charts/chaperone"

// TestChartFilesCurrent: the admission objects the chart ships are the ones
// this package builds (run `make generate` after changing admission.go).
func TestChartFilesCurrent(t *testing.T) {
	files, err := ChartFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(chartDir, "files", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("charts/chaperone/files/%s is stale: run make generate", name)
		}
	}
}

// TestValuesMatchDefaults: the `sidecar:` block of values.yaml is the
// webhook's built-in sidecar configuration, and the chart's appVersion is
// the image tag.
func TestValuesMatchDefaults(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := yaml.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	block, err := yaml.Marshal(top["sidecar"])
	if err != nil {
		t.Fatal(err)
	}
	var got SidecarValues
	if err := yaml.UnmarshalStrict(block, &got); err != nil {
		t.Fatalf("values.yaml sidecar block: %v", err)
	}
	if want := DefaultSidecarValues(); !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("values.yaml sidecar block differs from DefaultSidecarValues:\n got %+v\nwant %+v", got, want)
	}

	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.AppVersion != Version {
		t.Errorf("Chart.yaml appVersion %q, webhook.Version %q", meta.AppVersion, Version)
	}
}
