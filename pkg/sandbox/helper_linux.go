package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// helperRegistered records that this binary calls MaybeRunHelper, so a
// re-exec of /proc/self/exe in helper mode is understood.
var helperRegistered atomic.Bool

// droppedCaps are taken from processes started with DropNetAdmin.
var droppedCaps = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// MaybeRunHelper must be called first thing in main (and TestMain) of any
// binary that starts sandboxed commands with DropNetAdmin. In a normal run
// it only records the opt-in and returns. When the process was started as
// the helper it drops the capabilities and execs the real command; it does
// not return.
func MaybeRunHelper() {
	helperRegistered.Store(true)
	if len(os.Args) < 3 || os.Args[1] != helperArg {
		return
	}
	// Capabilities are per thread, and execve keeps the calling thread's:
	// everything below must happen on one thread.
	runtime.LockOSThread()
	path, argv := os.Args[2], append([]string{os.Args[0]}, os.Args[3:]...)
	if err := dropCaps(droppedCaps); err != nil {
		fmt.Fprintf(os.Stderr, "chaperone sandbox: %v\n", err)
		os.Exit(126)
	}
	err := unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "chaperone sandbox: exec %s: %v\n", path, err)
	os.Exit(127)
}

// dropCaps removes caps from the calling thread's bounding set, ambient
// set, and inheritable, permitted and effective sets.
func dropCaps(caps []uintptr) error {
	for _, c := range caps {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range caps {
		i, bit := c/32, uint32(1)<<(c%32)
		data[i].Effective &^= bit
		data[i].Permitted &^= bit
		data[i].Inheritable &^= bit
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
