package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// defaultGCPercent is the GC target unless GOGC is set. The heap of a signaling
// hub is mostly idle sessions, and the runtime keeps the pages of its heap goal:
// with Go's default of 100, 10,000 idle sessions cost 17.6 KiB of RSS each, with
// 50 13.6 KiB (switchboard bench signaling). The price, twice the GC cycles, stays
// small because relayed signals reuse pooled buffers instead of making garbage.
const defaultGCPercent = 50

// gcFloor is the least heap goal the tuner allows. A relay keeps little alive but
// makes garbage at the packet rate (pion encodes each ChannelData into a fresh
// buffer): with a live heap of a few MiB, 50% would mean a GC cycle every MiB or
// two, dozens a second under load; bench turn with random packet sizes measured
// 17% more CPU per relayed packet at 50% than at 100%. The floor stays small
// because a heap of idle sessions pays for it: with 32 MiB they came out at 14.9
// instead of 13.7 KiB each (sessions made while the goal was high share their
// spans with more garbage), with 16 MiB at 13.7. Past ~10 MiB live (about 1,000
// sessions) the floor no longer matters.
const gcFloor = 16 << 20

// applyGCDefault starts a gcTuner with defaultGCPercent above gcFloor unless the
// environment env sets GOGC (which the runtime has applied already, and which
// wins). Empty counts as unset, as for every SWITCHBOARD_ variable. stop ends the
// tuner and waits for it.
func applyGCDefault(env map[string]string) (stop func()) {
	if env["GOGC"] != "" {
		return func() {}
	}
	t := newGCTuner(defaultGCPercent, gcFloor, debug.SetGCPercent)
	t.tune()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.run(ctx, gcTuneEvery)
	}()
	return func() {
		cancel()
		<-done
	}
}

// gcTuneEvery is how often the tuner looks at the live heap. The heap of idle
// sessions changes over seconds; a relay's live heap hardly at all.
const gcTuneEvery = time.Second

// gcTuner keeps the GC's heap goal at max(live×(100+base)/100, floor) by setting
// the GC percent from the live heap: base once the live heap is large enough,
// more while it is small. This is the floor Go's GC lacks (its own minimum heap
// is 4 MiB×GOGC/100); the memory limit, if GOMEMLIMIT sets one, still applies.
type gcTuner struct {
	base    int
	floor   uint64
	set     func(int) int // debug.SetGCPercent, or a test's
	current int
	sample  []metrics.Sample
}

func newGCTuner(base int, floor uint64, set func(int) int) *gcTuner {
	return &gcTuner{base: base, floor: floor, set: set,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// percentFor is the GC percent for a live heap of live bytes.
func (t *gcTuner) percentFor(live uint64) int {
	if live == 0 {
		live = 1 << 20 // before the first cycle the runtime reports 0
	}
	if live*uint64(100+t.base)/100 >= t.floor {
		return t.base
	}
	p := int(t.floor*100/live) - 100
	return min(p, 10_000) // a goal of 100× the live heap is floor enough
}

// tune reads the live heap and sets the percent if it changed by a tenth or more.
func (t *gcTuner) tune() {
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := t.percentFor(live)
	if d := p - t.current; t.current == 0 || d*10 >= t.current || -d*10 >= t.current {
		t.set(p)
		t.current = p
	}
}

func (t *gcTuner) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.tune()
		}
	}
}
