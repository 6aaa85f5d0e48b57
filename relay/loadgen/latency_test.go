package loadgen

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	// Every value lands in a bucket whose range holds it, and buckets are
	// in order, contiguous and at most 1/16 of their value wide.
	for _, v := range []time.Duration{0, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 12345, time.Millisecond, 999 * time.Millisecond, time.Minute} {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v >= hi {
			t.Errorf("bucketOf(%v) = %d, range [%v, %v) does not hold it", v, i, lo, hi)
		}
		if v >= subBuckets && float64(hi-lo) > float64(lo)/subBuckets+1 {
			t.Errorf("bucket %d [%v, %v) wider than 1/%d of its value", i, lo, hi, subBuckets)
		}
	}
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		if lo, _ := bucketRange(i); lo != prevHi {
			t.Fatalf("bucket %d starts at %v, bucket %d ends at %v", i, lo, i-1, prevHi)
		}
	}
	if i := bucketOf(time.Hour); i != numBuckets-1 {
		t.Errorf("bucketOf(1h) = %d, want the last bucket %d", i, numBuckets-1)
	}
	if i := bucketOf(-time.Second); i != 0 {
		t.Errorf("bucketOf(-1s) = %d, want 0", i)
	}
}

func TestQuantile(t *testing.T) {
	within := func(got, want time.Duration) bool {
		return float64(got) >= 0.96*float64(want) && float64(got) <= 1.04*float64(want)
	}
	tests := []struct {
		name     string
		values   map[time.Duration]int // value -> times recorded
		p50, p99 time.Duration
	}{
		{"empty", nil, 0, 0},
		{"one sample", map[time.Duration]int{40 * time.Microsecond: 1}, 40 * time.Microsecond, 40 * time.Microsecond},
		{"uniform", func() map[time.Duration]int {
			m := map[time.Duration]int{}
			for i := 1; i <= 1000; i++ {
				m[time.Duration(i)*time.Microsecond] = 1
			}
			return m
		}(), 500 * time.Microsecond, 990 * time.Microsecond},
		{"tail of 2%", map[time.Duration]int{50 * time.Microsecond: 98, 20 * time.Millisecond: 2}, 50 * time.Microsecond, 20 * time.Millisecond},
		{"tail of exactly 1%", map[time.Duration]int{50 * time.Microsecond: 99, 20 * time.Millisecond: 1}, 50 * time.Microsecond, 50 * time.Microsecond},
		{"small exact values", map[time.Duration]int{3: 10, 9: 10}, 3, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			n := 0
			for v, k := range tt.values {
				for range k {
					h.Record(v)
					n++
				}
			}
			l := h.Snapshot()
			if got := l.Count(); got != uint64(n) {
				t.Errorf("Count() = %d, want %d", got, n)
			}
			if got := l.Quantile(0.5); !within(got, tt.p50) {
				t.Errorf("Quantile(0.5) = %v, want %v ±4%%", got, tt.p50)
			}
			if got := l.Quantile(0.99); !within(got, tt.p99) {
				t.Errorf("Quantile(0.99) = %v, want %v ±4%%", got, tt.p99)
			}
		})
	}
}

func TestLatenciesSubAdd(t *testing.T) {
	var h Histogram
	h.Record(time.Millisecond)
	before := h.Snapshot()
	h.Record(time.Microsecond)
	h.Record(time.Microsecond)
	after := h.Snapshot()
	d := after.Sub(&before)
	if d.Count() != 2 || d.Quantile(1) > 2*time.Microsecond {
		t.Errorf("Sub: %d samples, max %v; want the 2 samples of 1µs", d.Count(), d.Quantile(1))
	}
	d.Add(&before)
	if d != after {
		t.Errorf("Sub then Add did not give back the later snapshot")
	}
}

func TestStamp(t *testing.T) {
	c := clock{start: time.Now().Add(-time.Second)}
	tests := []struct {
		name   string
		packet []byte
		stamp  bool
		want   bool
	}{
		{"stamped", make([]byte, 100), true, true},
		{"shortest stamped", make([]byte, minStamped), true, true},
		{"too short", make([]byte, minStamped-1), true, false},
		{"unstamped", make([]byte, 100), false, false},
		{"from the future", []byte{0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stamp {
				c.stamp(tt.packet)
			}
			d, ok := c.elapsed(tt.packet)
			if ok != tt.want || d < 0 {
				t.Errorf("elapsed(%x) = %v, %v; want ok %v", tt.packet, d, ok, tt.want)
			}
		})
	}
}
