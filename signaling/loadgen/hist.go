package loadgen

import (
	"sync/atomic"
	"time"
)

// histogram records durations in fixed buckets with lock-free counters, so
// thousands of reader goroutines can record without contending on a lock.
//
// Resolution: 1 µs buckets below fineLimit (where the 5 ms target lives),
// 100 µs buckets up to coarseLimit, 10 ms buckets up to hugeLimit and one
// overflow bucket above; the exact maximum is kept separately. 26,000
// buckets × 8 bytes = 208 KB, allocated once per run.
type histogram struct {
	fine   [fineBuckets]atomic.Uint64
	coarse [coarseBuckets]atomic.Uint64
	huge   [hugeBuckets]atomic.Uint64
	over   atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Int64 // nanoseconds, for the mean
	max    atomic.Int64 // nanoseconds
}

const (
	fineBuckets   = 10_000 // 1 µs each → 0..10 ms
	fineLimit     = fineBuckets * time.Microsecond
	coarseStep    = 100 * time.Microsecond // → 10 ms..1.01 s
	coarseBuckets = 10_000
	coarseLimit   = fineLimit + coarseBuckets*coarseStep
	hugeStep      = 10 * time.Millisecond // → 1.01 s..61.01 s: an overloaded server
	hugeBuckets   = 6_000
	hugeLimit     = coarseLimit + hugeBuckets*hugeStep
)

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		// Same process, monotonic clock: negative is impossible unless the
		// payload was corrupted; count it as zero rather than lose it.
		d = 0
	}
	switch {
	case d < fineLimit:
		h.fine[d/time.Microsecond].Add(1)
	case d < coarseLimit:
		h.coarse[(d-fineLimit)/coarseStep].Add(1)
	case d < hugeLimit:
		h.huge[(d-coarseLimit)/hugeStep].Add(1)
	default:
		h.over.Add(1)
	}
	h.count.Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// Latency summarises a histogram. Percentiles report the upper edge of the
// bucket holding that rank (1 µs resolution below 10 ms).
type Latency struct {
	Count                    uint64
	Mean, P50, P90, P99, Max time.Duration
	P999                     time.Duration
}

func (h *histogram) summary() Latency {
	n := h.count.Load()
	l := Latency{Count: n, Max: time.Duration(h.max.Load())}
	if n == 0 {
		return l
	}
	l.Mean = time.Duration(h.sum.Load() / int64(n))
	l.P50 = h.quantile(n, 0.50)
	l.P90 = h.quantile(n, 0.90)
	l.P99 = h.quantile(n, 0.99)
	l.P999 = h.quantile(n, 0.999)
	// A bucket's upper edge can lie above the largest sample in it.
	for _, p := range []*time.Duration{&l.P50, &l.P90, &l.P99, &l.P999} {
		*p = min(*p, l.Max)
	}
	return l
}

// quantile returns the upper edge of the bucket containing rank ceil(q·n).
func (h *histogram) quantile(n uint64, q float64) time.Duration {
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) || rank == 0 {
		rank++
	}
	var seen uint64
	for i := range h.fine {
		seen += h.fine[i].Load()
		if seen >= rank {
			return time.Duration(i+1) * time.Microsecond
		}
	}
	for i := range h.coarse {
		seen += h.coarse[i].Load()
		if seen >= rank {
			return fineLimit + time.Duration(i+1)*coarseStep
		}
	}
	for i := range h.huge {
		seen += h.huge[i].Load()
		if seen >= rank {
			return coarseLimit + time.Duration(i+1)*hugeStep
		}
	}
	return time.Duration(h.max.Load())
}
