package http1

import "time"

// workerIdle is how long a recording worker waits for more work before it
// exits.
const workerIdle = 2 * time.Second

// workers runs the recording of requests and responses on goroutines that
// outlive one record. A fresh goroutine per record would start on a small
// stack and grow it on every record (masking, encoding and the spool
// write go deep), and creating and ending it costs scheduler work; a
// worker that stays a while keeps its grown stack. A function is never
// queued behind another: it goes to a worker that is idle right now, or
// to a new one, so records that wait for each other cannot deadlock.
type workers struct {
	idle chan func() // unbuffered: a send succeeds only to a waiting worker
}

func newWorkers() *workers { return &workers{idle: make(chan func())} }

// run runs f on an idle worker or a new one.
func (w *workers) run(f func()) {
	select {
	case w.idle <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		f = nil // let the finished record be collected while waiting
		t.Reset(workerIdle)
		select {
		case f = <-w.idle:
		case <-t.C:
			return
		}
	}
}
