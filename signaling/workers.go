package signaling

import "time"

// workerIdle is how long a worker waits for more work before it exits: long
// enough to carry a burst (a call start) without respawning, short enough that an
// idle hub holds no workers.
const workerIdle = time.Second

// run runs f on an idle worker, or else on a new goroutine that stays a worker
// for workerIdle afterwards. Workers keep their grown stacks, so a message does
// not pay for growing a fresh 2 KiB stack, and there are never more of them than
// the work in flight needs. Blocking work (a write to a slow client) just
// occupies one worker.
func (e *env) run(f func()) {
	select {
	case e.work <- f:
	default:
		e.wg.Go(func() {
			f()
			e.worker()
		})
	}
}

func (e *env) worker() {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		select {
		case f := <-e.work:
			f()
			t.Reset(workerIdle)
		case <-t.C:
			return
		case <-e.ctx.Done():
			return
		}
	}
}
