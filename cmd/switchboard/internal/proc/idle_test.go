package proc

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitIdleRealElapsed: a machine whose CPUs are all fully busy reads as
// 100% busy even when the sample ends late (a timer that fires late, a slow
// read of /proc/stat), because the busy time is divided by the time that
// really passed. Dividing by the nominal 500ms read such a machine as 120%
// busy, and WaitIdle(1) never returned true on a loaded machine.
func TestWaitIdleRealElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const cpus = 2
		t0 := time.Now()
		reads := 0
		busy := func() (time.Duration, int, error) {
			reads++
			if reads%2 == 0 {
				time.Sleep(100 * time.Millisecond) // the "after" read comes 100ms late
			}
			return cpus * time.Since(t0), cpus, nil
		}
		ok, err := waitIdle(t.Context(), 1, time.Minute, busy)
		if !ok || err != nil || reads != 2 {
			t.Errorf("waitIdle(1) on a fully busy machine = %v, %v after %d reads; want true, nil after 2", ok, err, reads)
		}
	})
}

// TestWaitIdleTimeout: a machine busier than the limit is waited for until the
// timeout, then WaitIdle reports that it saw no quiet moment.
func TestWaitIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		busy := func() (time.Duration, int, error) { return 2 * time.Since(t0), 2, nil }
		ok, err := waitIdle(t.Context(), 0.5, 3*time.Second, busy)
		if ok || err != nil {
			t.Errorf("waitIdle(0.5) on a fully busy machine = %v, %v; want false, nil", ok, err)
		}
		if took := time.Since(t0); took < 3*time.Second {
			t.Errorf("waitIdle gave up after %v, before its 3s timeout", took)
		}
	})
}

func TestWaitIdleErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := waitIdle(t.Context(), 1, time.Second, func() (time.Duration, int, error) { return 0, 0, boom }); !errors.Is(err, boom) {
			t.Errorf("waitIdle with a failing read = %v, want %v", err, boom)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := waitIdle(ctx, 1, time.Second, func() (time.Duration, int, error) { return 0, 1, nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("waitIdle with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

func TestBusyShare(t *testing.T) {
	tests := []struct {
		name          string
		busy, elapsed time.Duration
		cpus          int
		want          float64
	}{
		{"all busy, late sample", 1200 * time.Millisecond, 600 * time.Millisecond, 2, 1},
		{"one of two busy", 500 * time.Millisecond, 500 * time.Millisecond, 2, 0.5},
		{"idle", 0, 500 * time.Millisecond, 4, 0},
		{"no time passed", time.Second, 0, 2, 0},
		{"no cpus", time.Second, time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := busyShare(tt.busy, tt.elapsed, tt.cpus); got != tt.want {
				t.Errorf("busyShare(%v, %v, %d) = %v, want %v", tt.busy, tt.elapsed, tt.cpus, got, tt.want)
			}
		})
	}
}
