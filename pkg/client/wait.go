package client

import (
	"context"
	"fmt"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/store"
)

// WaitEnded polls until the server has stored the session's end (its
// session.end event and everything before it in the producer's spool order),
// or until timeout. A session the server does not know yet is waited for.
func (c *Client) WaitEnded(ctx context.Context, id string, timeout time.Duration) (store.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s, err := c.Session(ctx, id)
		switch {
		case err == nil && s.Ended:
			return s, nil
		case err != nil && !IsNotFound(err) && ctx.Err() == nil:
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("session %s not complete on the server within %s", id, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
