package proc

import (
	"fmt"
	"os"
	"testing"
)

func TestRSSOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// A Go test binary maps its runtime and heap: at least 1 MiB resident.
	if rss, err := RSS(os.Getpid()); err != nil || rss < 1<<20 || rss > 64<<30 {
		t.Errorf("RSS(self) = %d, %v; want a plausible size", rss, err)
	}
	if _, err := RSS(-1); err == nil {
		t.Error("RSS(-1): want an error")
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"real", "Name:\tnode\nVmPeak:\t  200 kB\nVmRSS:\t   51236 kB\nRssAnon:\t 40000 kB\n", 51236 << 10, false},
		{"zero", "VmRSS:\t0 kB\n", 0, false},
		{"kernel thread", "Name:\tkthreadd\nState:\tS\n", 0, true},
		{"no unit", "VmRSS:\t51236\n", 0, true},
		{"not a number", "VmRSS:\tabc kB\n", 0, true},
		{"negative", "VmRSS:\t-5 kB\n", 0, true},
		{"huge", "VmRSS:\t9223372036854775807 kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusRSS([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatusRSS(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// FuzzParseStatusRSS: any input parses to a non-negative size or errors
// without panicking, and a VmRSS line written in the kernel's format reads back.
func FuzzParseStatusRSS(f *testing.F) {
	f.Add([]byte("Name:\tx\nVmRSS:\t  1024 kB\n"), uint32(7))
	f.Add([]byte("VmRSS:"), uint32(0))
	f.Fuzz(func(t *testing.T, raw []byte, kb uint32) {
		if n, err := parseStatusRSS(raw); err == nil && n < 0 {
			t.Errorf("parseStatusRSS(%q) = %d, negative", raw, n)
		}
		in := fmt.Sprintf("Name:\tx\nVmRSS:\t%8d kB\nRssAnon:\t1 kB\n", kb)
		if got, err := parseStatusRSS([]byte(in)); err != nil || got != int64(kb)<<10 {
			t.Errorf("parseStatusRSS(%q) = %d, %v; want %d", in, got, err, int64(kb)<<10)
		}
	})
}
