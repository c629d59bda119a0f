package http1

import (
	"sync"
	"testing"
	"time"
)

// TestWorkersNeverQueue runs records that wait for later ones: each must
// get a goroutine of its own, or the chain would deadlock.
func TestWorkersNeverQueue(t *testing.T) {
	w := newWorkers()
	const n = 50
	gates := make([]chan struct{}, n+1)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		w.run(func() {
			defer wg.Done()
			<-gates[i+1] // the next record opens this one
			close(gates[i])
		})
	}
	close(gates[n])
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("records waiting for later records deadlocked")
	}
	// Idle workers take the next records.
	var ran sync.WaitGroup
	for range 3 * n {
		ran.Add(1)
		w.run(ran.Done)
	}
	ran.Wait()
}
