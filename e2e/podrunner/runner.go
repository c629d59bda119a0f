package podrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chaperone-dev/chaperone/pkg/sandbox"
)

// Options configure Run.
type Options struct {
	// Pod as the API server stored it; spec.nodeName and metadata.uid
	// should be set.
	Pod *corev1.Pod
	// Client reads the ConfigMaps and Secrets of the pod's volumes and
	// requests its service-account tokens.
	Client kubernetes.Interface
	// Sandbox is the pod's network namespace.
	Sandbox *sandbox.Sandbox
	// Dir receives the volumes and home directories; it must be
	// traversable by every UID the pod runs as. Required.
	Dir string
	// Images maps an image repository (the reference without tag or
	// digest) to a directory holding the commands of that image.
	Images map[string]string
	// Background names ordinary containers that, like a classic sidecar,
	// are stopped rather than waited for.
	Background []string
	// Output returns the writer of a container's stdout and stderr; nil
	// discards.
	Output func(container string) io.Writer
	// StartupTimeout bounds a native sidecar's startup probe and a
	// postStart hook; default one minute.
	StartupTimeout time.Duration
	// StopTimeout bounds each sidecar's exit after SIGTERM; default one
	// minute (it flushes its spool).
	StopTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Result is what Run reports: the exit code of every container that ran
// to its end, sidecars included, by name.
type Result struct {
	ExitCodes map[string]int
}

// identity is a container's user and group; nil UID is root.
type identity struct{ uid, gid *uint32 }

type run struct {
	opts       Options
	pod        *corev1.Pod
	dir        string
	volumeDirs map[string]string
	log        *slog.Logger
}

// started is a long-running container.
type started struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Run runs the pod's containers and returns when its ordinary containers
// (except Options.Background) ended and its sidecars stopped.
func Run(ctx context.Context, opts Options) (Result, error) {
	res := Result{ExitCodes: map[string]int{}}
	if opts.Pod == nil || opts.Sandbox == nil || opts.Client == nil || opts.Dir == "" {
		return res, errors.New("podrunner: Pod, Client, Sandbox and Dir are required")
	}
	if opts.StartupTimeout == 0 {
		opts.StartupTimeout = time.Minute
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = time.Minute
	}
	if opts.Output == nil {
		opts.Output = func(string) io.Writer { return io.Discard }
	}
	r := &run{opts: opts, pod: opts.Pod, dir: opts.Dir, volumeDirs: map[string]string{}, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.pod.Spec.HostNetwork {
		return res, fmt.Errorf("%w: hostNetwork", ErrUnsupported)
	}
	if err := r.volumes(ctx); err != nil {
		return res, err
	}

	var sidecars []*started
	stopAll := func() error {
		var errs []error
		for i := len(sidecars) - 1; i >= 0; i-- {
			s := sidecars[i]
			code, err := r.stop(s)
			res.ExitCodes[s.name] = code
			errs = append(errs, err)
		}
		sidecars = nil
		return errors.Join(errs...)
	}

	for i := range r.pod.Spec.InitContainers {
		c := &r.pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			s, err := r.start(ctx, c)
			if err != nil {
				return res, errors.Join(err, stopAll())
			}
			sidecars = append(sidecars, s)
			if err := r.probe(ctx, c, s); err != nil {
				return res, errors.Join(err, stopAll())
			}
			continue
		}
		s, err := r.start(ctx, c)
		if err != nil {
			return res, errors.Join(err, stopAll())
		}
		<-s.done
		code := exitCode(s.err)
		res.ExitCodes[c.Name] = code
		if code != 0 {
			return res, errors.Join(fmt.Errorf("podrunner: init container %s exited %d: %w", c.Name, code, s.err), stopAll())
		}
	}

	var mains []*started
	for i := range r.pod.Spec.Containers {
		c := &r.pod.Spec.Containers[i]
		s, err := r.start(ctx, c)
		if err != nil {
			for _, m := range mains {
				_, _ = r.stop(m)
			}
			return res, errors.Join(err, stopAll())
		}
		if slices.Contains(r.opts.Background, c.Name) {
			sidecars = append(sidecars, s)
		} else {
			mains = append(mains, s)
		}
		if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
			if err := r.postStart(ctx, c, s); err != nil {
				for _, m := range mains {
					_, _ = r.stop(m)
				}
				return res, errors.Join(err, stopAll())
			}
		}
	}
	for _, m := range mains {
		select {
		case <-m.done:
		case <-ctx.Done():
			_, _ = r.stop(m)
		}
		res.ExitCodes[m.name] = exitCode(m.err)
	}
	return res, errors.Join(ctx.Err(), stopAll())
}

// identity of c: its runAsUser/runAsGroup, else the pod's.
func (r *run) identity(c *corev1.Container) identity {
	var id identity
	u32 := func(v *int64) *uint32 {
		if v == nil {
			return nil
		}
		x := uint32(*v) //nolint:gosec // Kubernetes validates IDs as non-negative 32-bit values
		return &x
	}
	if sc := r.pod.Spec.SecurityContext; sc != nil {
		id.uid, id.gid = u32(sc.RunAsUser), u32(sc.RunAsGroup)
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			id.uid = u32(sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			id.gid = u32(sc.RunAsGroup)
		}
	}
	return id
}

func (r *run) allContainers() []*corev1.Container {
	var out []*corev1.Container
	for i := range r.pod.Spec.InitContainers {
		out = append(out, &r.pod.Spec.InitContainers[i])
	}
	for i := range r.pod.Spec.Containers {
		out = append(out, &r.pod.Spec.Containers[i])
	}
	return out
}

// command prepares c's process (or, with cmdline set, that command in c's
// environment: a postStart hook).
func (r *run) command(ctx context.Context, c *corev1.Container, cmdline []string) (*exec.Cmd, error) {
	env, err := r.env(c)
	if err != nil {
		return nil, err
	}
	m := r.mapper(c)
	if cmdline == nil {
		if len(c.Command) == 0 {
			return nil, fmt.Errorf("%w: container %s sets no command, and the runner cannot know the entrypoint of image %s", ErrUnsupported, c.Name, c.Image)
		}
		cmdline = append(slices.Clone(c.Command), c.Args...)
	}
	if len(cmdline) == 0 {
		return nil, fmt.Errorf("podrunner: container %s: empty command", c.Name)
	}
	vars := envMap(env)
	for i := range cmdline {
		cmdline[i] = m.path(expand(cmdline[i], vars))
	}
	prog, err := r.lookPath(c.Image, cmdline[0])
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	id := r.identity(c)
	home := filepath.Join(r.dir, "home", c.Name)
	if err := mkdir(home, 0o777); err != nil {
		return nil, err
	}
	env = append([]string{"HOME=" + home}, env...)
	// The container's capabilities and no_new_privs, applied by setpriv
	// right before the program.
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, fmt.Errorf("podrunner: setpriv (util-linux) applies containers' capabilities: %w", err)
	}
	args := append(privArgs(c, id.uid == nil || *id.uid == 0), "--", prog)
	args = append(args, cmdline[1:]...)
	out := r.opts.Output(c.Name)
	cmd, err := r.opts.Sandbox.Command(ctx, sandbox.ExecOptions{
		Path: setpriv, Args: args, Env: env, Dir: home,
		UID: id.uid, GID: id.gid,
		Stdout: out, Stderr: out,
	})
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	return cmd, nil
}

// privArgs are the setpriv options that give c's process the privileges
// a container runtime would: as root, the default capabilities minus
// NET_ADMIN and NET_RAW (unless added) minus what c drops, plus what it
// adds; no_new_privs unless privilege escalation is allowed. A non-root
// process has no capabilities to drop.
func privArgs(c *corev1.Container, root bool) []string {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	var args []string
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--no-new-privs")
	}
	if !root || (sc.Privileged != nil && *sc.Privileged) {
		return args
	}
	capName := func(cp corev1.Capability) string {
		return strings.ToLower(strings.TrimPrefix(strings.ToUpper(string(cp)), "CAP_"))
	}
	var add, drop []string
	if sc.Capabilities != nil {
		for _, cp := range sc.Capabilities.Add {
			add = append(add, capName(cp))
		}
		for _, cp := range sc.Capabilities.Drop {
			drop = append(drop, capName(cp))
		}
	}
	var set []string
	if slices.Contains(drop, "all") {
		set = append(set, "-all")
	} else {
		for _, d := range append([]string{"net_admin", "net_raw"}, drop...) {
			if !slices.Contains(add, d) {
				set = append(set, "-"+d)
			}
		}
	}
	for _, a := range add {
		if a != "all" {
			set = append(set, "+"+a)
		}
	}
	if slices.Contains(add, "all") {
		set = []string{"+all"}
	}
	list := strings.Join(set, ",")
	return append(args, "--bounding-set="+list, "--inh-caps="+list)
}

// lookPath finds a container's program: in the image's directory of
// Options.Images, else on the machine.
func (r *run) lookPath(image, prog string) (string, error) {
	if strings.Contains(prog, "/") {
		return prog, nil
	}
	if dir, ok := r.opts.Images[repository(image)]; ok {
		p := filepath.Join(dir, prog)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("command %s of image %s: %w", prog, image, err)
	}
	return p, nil
}

// repository strips the tag and digest of an image reference.
func repository(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	return image
}

func (r *run) start(ctx context.Context, c *corev1.Container) (*started, error) {
	// Sidecars outlive ctx long enough to flush: Run stops them with SIGTERM.
	cmd, err := r.command(context.WithoutCancel(ctx), c, nil)
	if err != nil {
		return nil, err
	}
	if err := r.opts.Sandbox.Start(cmd); err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	r.log.Info("container started", "container", c.Name, "pid", cmd.Process.Pid)
	s := &started{name: c.Name, cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	return s, nil
}

// stop ends s with SIGTERM, then SIGKILL after StopTimeout.
func (r *run) stop(s *started) (int, error) {
	select {
	case <-s.done:
		return exitCode(s.err), nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		code := exitCode(s.err)
		if code != 0 {
			return code, fmt.Errorf("podrunner: container %s exited %d after SIGTERM: %w", s.name, code, s.err)
		}
		return 0, nil
	case <-time.After(r.opts.StopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return exitCode(s.err), fmt.Errorf("podrunner: container %s did not stop within %s", s.name, r.opts.StopTimeout)
	}
}

// probe waits for c's startup probe (HTTP GET) to pass, as the kubelet
// does before it starts the next container.
func (r *run) probe(ctx context.Context, c *corev1.Container, s *started) error {
	p := c.StartupProbe
	if p == nil {
		return nil
	}
	if p.HTTPGet == nil {
		return fmt.Errorf("%w: container %s: only HTTP startup probes", ErrUnsupported, c.Name)
	}
	port := p.HTTPGet.Port.IntValue()
	if port == 0 {
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.StrVal {
				port = int(cp.ContainerPort)
			}
		}
	}
	if port == 0 {
		return fmt.Errorf("podrunner: container %s: probe port %s not found", c.Name, p.HTTPGet.Port.String())
	}
	url := "http://" + net.JoinHostPort(r.opts.Sandbox.NSIP().String(), strconv.Itoa(port)) + p.HTTPGet.Path
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(r.opts.StartupTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 400 {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("podrunner: container %s exited before its startup probe passed: %w", c.Name, s.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podrunner: container %s: startup probe %s not passed within %s", c.Name, url, r.opts.StartupTimeout)
		}
	}
}

// postStart runs c's exec postStart hook in c's environment and waits for
// it, as the kubelet does before it starts the next container; the hook is
// ended when the container s exits.
func (r *run) postStart(ctx context.Context, c *corev1.Container, s *started) error {
	h := c.Lifecycle.PostStart
	if h.Exec == nil {
		return fmt.Errorf("%w: container %s: only exec postStart hooks", ErrUnsupported, c.Name)
	}
	hctx, cancel := context.WithTimeout(ctx, r.opts.StartupTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-hctx.Done():
		}
	}()
	cmd, err := r.command(hctx, c, slices.Clone(h.Exec.Command))
	if err != nil {
		return err
	}
	if err := r.opts.Sandbox.Start(cmd); err != nil {
		return fmt.Errorf("container %s postStart: %w", c.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		select {
		case <-s.done:
			return fmt.Errorf("podrunner: container %s exited during its postStart hook: %w", c.Name, s.err)
		default:
		}
		return fmt.Errorf("podrunner: container %s postStart hook: %w", c.Name, err)
	}
	return nil
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	return -1
}
