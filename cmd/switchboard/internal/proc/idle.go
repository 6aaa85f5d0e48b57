package proc

import (
	"context"
	"time"
)

// WaitIdle waits until the machine's CPUs were at most maxBusy busy (0-1,
// all CPUs together) over a sample of about 500ms, so that a run on a shared
// machine starts in a quiet moment. It gives up after timeout and reports
// whether it saw one.
func WaitIdle(ctx context.Context, maxBusy float64, timeout time.Duration) (bool, error) {
	return waitIdle(ctx, maxBusy, timeout, MachineBusy)
}

// waitIdle is WaitIdle reading the machine's busy time with busyTime.
func waitIdle(ctx context.Context, maxBusy float64, timeout time.Duration, busyTime func() (time.Duration, int, error)) (bool, error) {
	const sample = 500 * time.Millisecond // long enough to average over scheduler ticks
	deadline := time.Now().Add(timeout)
	for {
		before, cpus, err := busyTime()
		if err != nil {
			return false, err
		}
		start := time.Now()
		t := time.NewTimer(sample)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		after, _, err := busyTime()
		if err != nil {
			return false, err
		}
		// The timer fires late on a busy machine, and the CPUs keep
		// working meanwhile: divide by the time that really passed, not by
		// the nominal sample, or a loaded machine reads as over 100% busy.
		if busyShare(after-before, time.Since(start), cpus) <= maxBusy {
			return true, nil
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
	}
}

// busyShare is the fraction of the capacity of cpus CPUs over elapsed that
// busy CPU time used. /proc/stat counts in 10ms ticks, so a short sample may
// read a little above 1.
func busyShare(busy, elapsed time.Duration, cpus int) float64 {
	if elapsed <= 0 || cpus < 1 {
		return 0
	}
	return busy.Seconds() / (elapsed.Seconds() * float64(cpus))
}
