package relay

import (
	"net/netip"
	"testing"
)

// TestSourceLimiterKeys: IPv4 sources have a budget each; IPv6 sources share one per /64,
// so a host or a spoofed victim network cannot multiply its budget by varying the low bits.
func TestSourceLimiterKeys(t *testing.T) {
	tests := []struct {
		name        string
		first, then string
		want        bool // whether then still gets an answer once first spent the budget
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", false},
		{"other IPv4", "192.0.2.1", "192.0.2.2", true},
		{"IPv4 and its mapped form", "192.0.2.1", "::ffff:192.0.2.1", false},
		{"same IPv6 /64", "2001:db8::1", "2001:db8::ffff:1234", false},
		{"same IPv6 /64, zone", "fe80::1", "fe80::2%eth0", false},
		{"other IPv6 /64", "2001:db8::1", "2001:db8:0:1::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two keys may share a bucket by chance (1 in 4096 per random seed): a separate
			// budget is shown by any of three fresh limiters.
			var got bool
			for range 3 {
				// A tiny rate, burst 1: the first answer spends the bucket for the test.
				l := newSourceLimiter(1e-9, 1)
				if !l.allow(netip.MustParseAddr(tt.first)) {
					t.Fatalf("allow(%s) = false on a fresh limiter", tt.first)
				}
				if got = l.allow(netip.MustParseAddr(tt.then)); got {
					break
				}
			}
			if got != tt.want {
				t.Errorf("allow(%s) after allow(%s) = %v, want %v", tt.then, tt.first, got, tt.want)
			}
		})
	}
}
