package loadgen

import (
	"os"
	"testing"
	"time"
)

func TestRSSAndCPUOfSelf(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 || rss > 64<<30 {
		t.Errorf("RSS(self) = %d, %v; want a plausible size", rss, err)
	}
	// Burn CPU until the kernel's 10 ms accounting shows some, bounded.
	var cpu time.Duration
	deadline := time.Now().Add(2 * time.Second)
	for cpu == 0 && time.Now().Before(deadline) {
		for n := 0; n < 1e6; n++ {
			_ = n * n
		}
		if cpu, err = CPUTime(os.Getpid()); err != nil {
			t.Fatalf("CPUTime(self): %v", err)
		}
	}
	if cpu <= 0 {
		t.Errorf("CPUTime(self) = %v after 2s of spinning; want > 0", cpu)
	}
	if _, err := RSS(-1); err == nil {
		t.Error("RSS(-1): want an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
		ok   bool
	}{
		{"plain", "42 (node) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 100 0 0", 3 * time.Second, true},
		{"name with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0", 30 * time.Millisecond, true},
		{"truncated", "7 (x) R 1 2 3", 0, false},
		{"no parens", "7 x R 1 2 3 4 5 6 7 8 9 10 11 12 13", 0, false},
		{"not numbers", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a b 0 0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseStatCPU(%q) = %v, %v; want %v, ok=%v", tt.stat, got, err, tt.want, tt.ok)
			}
		})
	}
}
