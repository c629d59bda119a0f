package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
)

// Command prepares a process that Start runs inside the sandbox. The
// returned Cmd is not started; the caller may adjust it (ExtraFiles,
// SysProcAttr fields other than Credential) before calling Start. ctx kills
// the process when done, as with exec.CommandContext.
func (sb *Sandbox) Command(ctx context.Context, opts ExecOptions) (*exec.Cmd, error) {
	if opts.Path == "" {
		return nil, errors.New("sandbox: command path is empty")
	}
	path, err := exec.LookPath(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var cmd *exec.Cmd
	asRoot := opts.UID == nil || *opts.UID == 0
	if opts.DropNetAdmin && asRoot {
		if !helperRegistered.Load() {
			return nil, ErrHelperNotRegistered
		}
		// /proc/self/exe is resolved by the forked child, so it names the
		// calling binary even if that file was replaced on disk.
		cmd = exec.CommandContext(ctx, "/proc/self/exe", append([]string{helperArg, path}, opts.Args...)...)
		cmd.Args[0] = path
	} else {
		cmd = exec.CommandContext(ctx, path, opts.Args...)
	}
	cmd.Env = opts.Env
	cmd.Dir = opts.Dir
	cmd.Stdin = opts.Stdin
	cmd.Stdout = opts.Stdout
	cmd.Stderr = opts.Stderr
	if opts.UID != nil || opts.GID != nil {
		cred := &syscall.Credential{}
		if opts.UID != nil {
			cred.Uid, cred.Gid = *opts.UID, *opts.UID
		}
		if opts.GID != nil {
			cred.Gid = *opts.GID
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd, nil
}

// Start starts cmd inside the sandbox's network namespace. Any exec.Cmd
// works, not only those from Command.
func (sb *Sandbox) Start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		// The fork happens on this thread, so the child starts in the
		// namespace the thread is in.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("sandbox: current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(sb.ns); err != nil {
			errc <- fmt.Errorf("sandbox: enter netns: %w", err)
			return
		}
		startErr := cmd.Start()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(startErr, fmt.Errorf("sandbox: restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		if startErr != nil {
			startErr = fmt.Errorf("sandbox: start %s: %w", cmd.Path, startErr)
		}
		errc <- startErr
	}()
	return <-errc
}
