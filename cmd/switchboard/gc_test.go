package main

import (
	"runtime/debug"
	"testing"
)

func TestApplyGCDefault(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		tuned bool
	}{
		{name: "unset", env: map[string]string{}, tuned: true},
		{name: "GOGC set", env: map[string]string{"GOGC": "100"}}, // left as the runtime has it
		{name: "GOGC empty", env: map[string]string{"GOGC": ""}, tuned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := debug.SetGCPercent(77) // stands for whatever GOGC made it
			defer debug.SetGCPercent(old)
			stop := applyGCDefault(tt.env)
			got := debug.SetGCPercent(77)
			stop()
			// The tuner sets defaultGCPercent or more (more while the live heap is
			// under the floor, as in a test binary).
			if tuned := got >= defaultGCPercent && got != 77; tuned != tt.tuned {
				t.Errorf("GC percent after applyGCDefault(%v) = %d; tuned %v, want %v", tt.env, got, tuned, tt.tuned)
			}
		})
	}
}

func TestGCTunerPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		live uint64
		want int
	}{
		{live: 0, want: 3100},        // no cycle yet: taken as 1 MiB
		{live: 1 * mib, want: 3100},  // goal 32 MiB
		{live: 4 * mib, want: 700},   // goal 32 MiB
		{live: 16 * mib, want: 100},  // goal 32 MiB
		{live: 21 * mib, want: 52},   // just under: goal still 32 MiB
		{live: 22 * mib, want: 50},   // 22×1.5 = 33 MiB: past the floor
		{live: 1024 * mib, want: 50}, // a large heap of sessions
		{live: 1024, want: 10_000},   // capped: 100× the live heap
	}
	tu := newGCTuner(50, 32*mib, func(int) int { return 0 })
	for _, tt := range tests {
		if got := tu.percentFor(tt.live); got != tt.want {
			t.Errorf("percentFor(%d) = %d, want %d", tt.live, got, tt.want)
		}
	}
}

func TestGCTunerSetsOnChange(t *testing.T) {
	var sets []int
	tu := newGCTuner(50, 32<<20, func(p int) int { sets = append(sets, p); return 0 })
	tu.tune()
	tu.tune() // the live heap has not moved by a tenth: no second call
	if len(sets) != 1 || sets[0] < 50 {
		t.Fatalf("SetGCPercent calls %v, want one call with 50 or more", sets)
	}
	tu.current = sets[0] * 2 // as if the heap had changed since
	tu.tune()
	if len(sets) != 2 {
		t.Fatalf("SetGCPercent calls %v, want a second call after a change", sets)
	}
}
