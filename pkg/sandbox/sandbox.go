package sandbox

import (
	"errors"
	"io"
	"log/slog"
)

// ErrHelperNotRegistered is returned when ExecOptions.DropNetAdmin needs the
// re-exec helper but the binary never called MaybeRunHelper.
var ErrHelperNotRegistered = errors.New("sandbox: DropNetAdmin needs sandbox.MaybeRunHelper() at the top of main")

// helperArg is the hidden argv[1] that switches a binary into helper mode.
const helperArg = "__chaperone_exec"

// Log keys.
const (
	logKeyName    = "sandbox"
	logKeyHostIP  = "host_ip"
	logKeyNSIP    = "ns_ip"
	logKeyHostIP6 = "host_ip6"
	logKeyNSIP6   = "ns_ip6"
	logKeyLink    = "link"
)

// Options configures New.
type Options struct {
	// Name, when set, also publishes the namespace as /run/netns/<Name> so
	// `ip netns exec` and other processes can find it. Empty keeps it
	// private to this process.
	Name string
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// ExecOptions describes a process to run inside a Sandbox.
type ExecOptions struct {
	// Path is the program; without a slash it is looked up in PATH.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the environment; nil inherits the caller's.
	Env []string
	// Dir is the working directory; empty inherits the caller's.
	Dir string
	// UID and GID, when set, run the process as that user and group (with
	// no supplementary groups). A nil GID with a set UID uses the UID.
	UID, GID *uint32
	// DropNetAdmin removes CAP_NET_ADMIN and CAP_NET_RAW from a process that
	// runs as root. A process with a non-root UID has no capabilities anyway.
	DropNetAdmin bool
	// Stdin, Stdout and Stderr are wired as in exec.Cmd.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
