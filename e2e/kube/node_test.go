package kube

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	exitcode "k8s.io/client-go/util/exec"

	corev1 "k8s.io/api/core/v1"
)

// TestNodeExec execs into a pod of a stand-in node through the API server
// with client-go, over WebSocket (v5, which the API server translates for
// the kubelet) and over SPDY: the command really runs, gets its stdin, and
// its output and exit status come back.
func TestNodeExec(t *testing.T) {
	c := StartTest(t)
	n, err := c.StartNode(t.Context(), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RunPod(t.Context(), "default", "shell"); err != nil {
		t.Fatal(err)
	}
	cfg := c.RESTConfig()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	execURL := func() *url.URL {
		return cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("shell").
			SubResource("exec").VersionedParams(&corev1.PodExecOptions{
			Container: "main",
			Command:   []string{"/bin/sh", "-c", `read x; echo "got $x"; echo err >&2; exit 4`},
			Stdin:     true, Stdout: true, Stderr: true,
		}, scheme.ParameterCodec).URL()
	}
	for _, transport := range []string{"websocket", "spdy"} {
		t.Run(transport, func(t *testing.T) {
			var ex remotecommand.Executor
			var err error
			if transport == "websocket" {
				ex, err = remotecommand.NewWebSocketExecutor(rest.CopyConfig(cfg), "GET", execURL().String())
			} else {
				ex, err = remotecommand.NewSPDYExecutor(rest.CopyConfig(cfg), "POST", execURL())
			}
			if err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err = ex.StreamWithContext(t.Context(), remotecommand.StreamOptions{
				Stdin: strings.NewReader("ping\n"), Stdout: &out, Stderr: &errb,
			})
			var ce exitcode.CodeExitError
			if !errors.As(err, &ce) || ce.Code != 4 {
				t.Fatalf("exec: %v, want exit code 4", err)
			}
			if out.String() != "got ping\n" || errb.String() != "err\n" {
				t.Errorf("stdout %q stderr %q", out.String(), errb.String())
			}
		})
	}
	t.Run("unknown pod", func(t *testing.T) {
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("nope").
			SubResource("exec").Param("command", "true").Param("stdout", "true").URL()
		ex, err := remotecommand.NewSPDYExecutor(rest.CopyConfig(cfg), "POST", u)
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &bytes.Buffer{}}); err == nil {
			t.Fatal("exec into a pod that does not exist succeeded")
		}
	})
}
