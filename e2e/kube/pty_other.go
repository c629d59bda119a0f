//go:build !linux

package kube

import (
	"errors"
	"os"
)

// errNoPTY is returned for a TTY exec where pseudo-terminals are not
// implemented.
var errNoPTY = errors.New("tty exec needs Linux")

func openPTY() (master, tty *os.File, err error) { return nil, nil, errNoPTY }

func setWinsize(*os.File, uint16, uint16) error { return errNoPTY }
