//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
)

// ErrUnsupported is returned on systems without Linux network namespaces.
var ErrUnsupported = errors.New("sandbox: network namespaces need Linux")

// Sandbox is only functional on Linux.
type Sandbox struct{}

// New is only available on Linux.
func New(ctx context.Context, opts Options) (*Sandbox, error) { return nil, ErrUnsupported }

// MaybeRunHelper does nothing outside Linux.
func MaybeRunHelper() {}

// HostIP is only available on Linux.
func (sb *Sandbox) HostIP() netip.Addr { return netip.Addr{} }

// NSIP is only available on Linux.
func (sb *Sandbox) NSIP() netip.Addr { return netip.Addr{} }

// HostIP6 is only available on Linux.
func (sb *Sandbox) HostIP6() netip.Addr { return netip.Addr{} }

// NSIP6 is only available on Linux.
func (sb *Sandbox) NSIP6() netip.Addr { return netip.Addr{} }

// HostLink is only available on Linux.
func (sb *Sandbox) HostLink() string { return "" }

// Path is only available on Linux.
func (sb *Sandbox) Path() string { return "" }

// InNamespace is only available on Linux.
func (sb *Sandbox) InNamespace(fn func() error) error { return ErrUnsupported }

// Command is only available on Linux.
func (sb *Sandbox) Command(ctx context.Context, opts ExecOptions) (*exec.Cmd, error) {
	return nil, ErrUnsupported
}

// Start is only available on Linux.
func (sb *Sandbox) Start(cmd *exec.Cmd) error { return ErrUnsupported }

// Close is only available on Linux.
func (sb *Sandbox) Close() error { return nil }
