package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// Timeouts of the node's streaming server, the kubelet's defaults.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
	// firstResizeWait bounds the wait for a TTY's initial size.
	firstResizeWait = 5 * time.Second
)

// Node is a node of the test bed with a stand-in kubelet: an HTTPS server
// on loopback, named in the Node object's status as its kubelet endpoint,
// that serves the kubelet's exec and port-forward endpoints with the
// kubelet's own streaming server (k8s.io/cri-streaming). The API server
// reaches it as it reaches a kubelet (by the node's InternalIP, verifying
// its certificate against the cluster CA, presenting its kubelet client
// certificate), so `kubectl exec` and `kubectl port-forward` go kubectl →
// API server → Node → a real process.
//
// The "containers" of its pods are this machine: exec runs the command as
// a process of the test (with a pseudo-terminal when a TTY is asked for),
// attach runs a fresh /bin/sh as if it were the container's main process
// (there is none to attach to: each attach gets its own), and port-forward
// connects to the port on 127.0.0.1.
type Node struct {
	name   string
	logger *slog.Logger
	cs     kubernetes.Interface
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}

	mu   sync.Mutex
	pods map[string]bool // "namespace/name" of the pods the node runs
}

// StartNode starts a stand-in kubelet and registers a Ready Node called
// name whose kubelet endpoint it is. Unlike AddNode it starts no binder:
// pods reach it through RunPod. The node stops with the cluster.
func (c *Cluster) StartNode(ctx context.Context, name string) (*Node, error) {
	certPEM, keyPEM, err := c.pki.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: serving cert: %w", name, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node %s: serving cert: %w", name, err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(c.pki.ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("node %s: listen: %w", name, err)
	}
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	n := &Node{name: name, logger: c.logger.With(logKeyNode, name), cs: cs, ln: ln,
		done: make(chan struct{}), pods: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", n.exec)
	mux.HandleFunc("/exec/{ns}/{pod}/{uid}/{container}", n.exec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", n.attach)
	mux.HandleFunc("/attach/{ns}/{pod}/{uid}/{container}", n.attach)
	// The kubelet's path is camel-cased.
	mux.HandleFunc("/portForward/{ns}/{pod}", n.portForward)
	mux.HandleFunc("/portForward/{ns}/{pod}/{uid}", n.portForward)
	n.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			// Only the API server, with its kubelet client certificate.
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  clients,
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}, // streams upgrade HTTP/1.1
		},
	}
	go func() {
		defer close(n.done)
		_ = n.srv.ServeTLS(ln, "", "")
	}()
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	if err := c.registerNode(ctx, cs, name, int32(ln.Addr().(*net.TCPAddr).Port)); err != nil {
		return nil, err
	}
	n.logger.Info("node serving", "kubelet", ln.Addr().String())
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Addr returns the kubelet endpoint, 127.0.0.1:PORT.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// RunPod creates a pod bound to the node with one container per name (the
// image is never pulled) and reports it Running with its containers
// ready, as a kubelet would. The pod can then be exec'd into.
func (n *Node) RunPod(ctx context.Context, namespace, name string, containers ...string) (*corev1.Pod, error) {
	if len(containers) == 0 {
		containers = []string{"main"}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       corev1.PodSpec{NodeName: n.name},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "chaperone.invalid/none"})
	}
	n.mu.Lock()
	n.pods[namespace+"/"+name] = true
	n.mu.Unlock()
	pods := n.cs.CoreV1().Pods(namespace)
	pod, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", namespace, name, err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "127.0.0.1",
		PodIP:     "127.0.0.1",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, c := range containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, Image: "chaperone.invalid/none", Ready: true, Started: ptr(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	pod, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s status: %w", namespace, name, err)
	}
	n.logger.Info("pod running", logKeyPod, namespace+"/"+name)
	return pod, nil
}

// stop ends the node's server and its streams.
func (n *Node) stop() {
	_ = n.srv.Close()
	<-n.done
}

func ptr[T any](v T) *T { return &v }

// known reports whether the request names a pod the node runs; if not it
// answers 404, as a kubelet does.
func (n *Node) known(w http.ResponseWriter, r *http.Request) bool {
	key := r.PathValue("ns") + "/" + r.PathValue("pod")
	n.mu.Lock()
	ok := n.pods[key]
	n.mu.Unlock()
	if !ok {
		http.Error(w, "pod "+key+" not found on node "+n.name, http.StatusNotFound)
	}
	return ok
}

// withOrigin gives a WebSocket request an Origin: the streaming server's
// WebSocket handshake refuses requests without one.
func withOrigin(r *http.Request) {
	if r.Header.Get("Origin") == "" {
		r.Header.Set("Origin", "https://"+r.Host)
	}
}

func (n *Node) exec(w http.ResponseWriter, r *http.Request) {
	if !n.known(w, r) {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	withOrigin(r)
	n.logger.Info("exec", logKeyPod, r.PathValue("ns")+"/"+r.PathValue("pod"), "container", r.PathValue("container"),
		"command", strings.Join(cmd, " "), "tty", opts.TTY, "upgrade", r.Header.Get("Upgrade"))
	remotecommand.ServeExec(w, r, processExecutor{}, r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"), cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (n *Node) attach(w http.ResponseWriter, r *http.Request) {
	if !n.known(w, r) {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	withOrigin(r)
	n.logger.Info("attach", logKeyPod, r.PathValue("ns")+"/"+r.PathValue("pod"), "container", r.PathValue("container"),
		"tty", opts.TTY, "upgrade", r.Header.Get("Upgrade"))
	remotecommand.ServeAttach(w, r, shellAttacher{}, r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"), opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// shellAttacher attaches to a fresh /bin/sh standing in for the
// container's main process.
type shellAttacher struct{}

// AttachContainer runs the shell with the attach's streams. Its exit
// status is not reported: an attach ends with success, as the kubelet's.
func (shellAttacher) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	err := processExecutor{}.ExecInContainer(ctx, name, uid, container, []string{"/bin/sh"}, in, out, errw, tty, resize, 0)
	if _, ok := errors.AsType[utilexec.CodeExitError](err); ok {
		return nil
	}
	return err
}

func (n *Node) portForward(w http.ResponseWriter, r *http.Request) {
	if !n.known(w, r) {
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	withOrigin(r)
	n.logger.Info("port-forward", logKeyPod, r.PathValue("ns")+"/"+r.PathValue("pod"))
	portforward.ServePortForward(w, r, loopbackForwarder{}, r.PathValue("pod"), r.PathValue("uid"), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// loopbackForwarder connects a port-forward stream to the port on
// 127.0.0.1, the network of the node's pods.
type loopbackForwarder struct{}

func (loopbackForwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		return fmt.Errorf("port-forward to %d: %w", port, err)
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, stream)
		_ = c.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(stream, c)
		done <- struct{}{}
	}()
	<-done
	<-done
	return nil
}

// processExecutor runs an exec's command as a process on this machine.
type processExecutor struct{}

// ExecInContainer runs cmd with the streams of the exec and returns its
// exit status as the streaming server expects it (utilexec.ExitError).
func (processExecutor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...) //nolint:gosec // a test's exec command, on purpose
	c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TERM=xterm"}
	var err error
	if tty {
		err = runTTY(c, in, out, resize)
	} else {
		err = runPipes(c, in, out, errw)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

// runPipes runs c with stdin copied from in by a goroutine of its own:
// exec.Cmd would wait for the end of a stdin the client may never close.
func runPipes(c *exec.Cmd, in io.Reader, out, errw io.Writer) error {
	c.Stdout, c.Stderr = out, errw
	var stdin io.WriteCloser
	if in != nil {
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	if err := c.Start(); err != nil {
		return err
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, in)
			_ = stdin.Close()
		}()
	}
	return c.Wait()
}

// runTTY runs c on a new pseudo-terminal as its session leader, copying
// in to the terminal and its output to out, and applying resizes.
func runTTY(c *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	master, tty, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	c.Stdin, c.Stdout, c.Stderr = tty, tty, tty
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	// The client sends its terminal's size first thing; wait a little for
	// it so that the command starts with the right size, not 0x0.
	if resize != nil {
		select {
		case s, ok := <-resize:
			if ok {
				_ = setWinsize(master, s.Width, s.Height)
			}
		case <-time.After(firstResizeWait):
		}
	}
	err = c.Start()
	_ = tty.Close() // the child holds it now
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case s, ok := <-resize:
				if !ok {
					return
				}
				_ = setWinsize(master, s.Width, s.Height)
			case <-stop:
				return
			}
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(master, in) }()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		// Reading the master fails with EIO once the process and its
		// children closed the terminal: all output has been copied then.
		_, _ = io.Copy(out, master)
	}()
	werr := c.Wait()
	<-copied
	return werr
}

// registerNode creates the Node object and reports it Ready with its
// InternalIP and kubelet port.
func (c *Cluster) registerNode(ctx context.Context, cs kubernetes.Interface, name string, port int32) error {
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	node.Status = nodeStatus(port)
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// stopNodes ends every node's server.
func (c *Cluster) stopNodes() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = nil
	c.mu.Unlock()
	for _, n := range nodes {
		n.stop()
	}
}
