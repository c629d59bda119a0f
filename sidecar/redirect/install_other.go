//go:build !linux

package redirect

import (
	"context"
	"errors"
)

// ErrUnsupported is returned on systems without nftables.
var ErrUnsupported = errors.New("redirect: nftables redirection needs Linux")

// Install is only available on Linux.
func Install(ctx context.Context, cfg Config) (RuleSet, error) {
	if err := cfg.Validate(); err != nil {
		return RuleSet{}, err
	}
	return RuleSet{}, ErrUnsupported
}

// Uninstall is only available on Linux.
func Uninstall(ctx context.Context) error { return ErrUnsupported }

// Installed is only available on Linux.
func Installed(ctx context.Context) (bool, error) { return false, ErrUnsupported }
