package loadgen

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"time"
)

// One-way latency: every data packet carries the time it was sent, and
// the generator, which both sends and receives on this host, reads one
// clock at both ends. The client stamps a packet before it goes to the
// relay; the peer measures client→peer on arrival and restamps the echo;
// the client measures peer→client. Both directions go into one histogram.

// stampOffset and stampEnd place the timestamp in the payload: after the
// 0x80 marker byte and three bytes of padding, so that packets of at least
// minStamped bytes carry one. Smaller payloads are sent unstamped and give
// no latency samples.
const (
	stampOffset = 4
	stampEnd    = stampOffset + 8
	minStamped  = stampEnd
)

// clock is a run's time base: nanoseconds since the run started, on Go's
// monotonic clock, so a stamp of 0 can mean "not stamped".
type clock struct{ start time.Time }

func (c clock) now() int64 { return int64(time.Since(c.start)) + 1 }

// stamp writes the send time into p when it is long enough.
func (c clock) stamp(p []byte) {
	if len(p) >= minStamped {
		binary.LittleEndian.PutUint64(p[stampOffset:stampEnd], uint64(c.now()))
	}
}

// elapsed returns the time since the stamp in p, false if p carries none
// (too short, unstamped, or a stamp from the future: not ours).
func (c clock) elapsed(p []byte) (time.Duration, bool) {
	if len(p) < minStamped {
		return 0, false
	}
	ts := int64(binary.LittleEndian.Uint64(p[stampOffset:stampEnd]))
	now := c.now()
	if ts <= 0 || ts > now {
		return 0, false
	}
	return time.Duration(now - ts), true
}

// Histogram buckets: values below subBuckets nanoseconds exactly, then
// each power of two split into subBuckets equal parts, so a bucket is at
// most 1/subBuckets (6%) wide relative to its value. Values at or above
// 2^maxExp ns (about 68.7 s, far beyond any loopback delay) go into the
// last bucket.
const (
	subBits    = 4
	subBuckets = 1 << subBits
	maxExp     = 36
	numBuckets = (maxExp - subBits + 1) * subBuckets
)

// Histogram counts latencies. Record is safe for concurrent use (one
// atomic add); Snapshot reads it while writers run.
type Histogram struct {
	buckets [numBuckets]atomic.Uint64
}

// Latencies is a snapshot of a Histogram: counts per bucket.
type Latencies struct {
	Counts [numBuckets]uint64
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [subBuckets, 2*subBuckets)
	i := (e+1)*subBuckets + int(v>>e) - subBuckets
	return min(i, numBuckets-1)
}

// bucketRange is the smallest and one past the largest value of bucket i.
func bucketRange(i int) (lo, hi time.Duration) {
	if i < subBuckets {
		return time.Duration(i), time.Duration(i + 1)
	}
	e := i/subBuckets - 1
	m := uint64(i%subBuckets + subBuckets)
	return time.Duration(m << e), time.Duration((m + 1) << e)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) { h.buckets[bucketOf(d)].Add(1) }

// Snapshot returns the current counts.
func (h *Histogram) Snapshot() Latencies {
	var l Latencies
	for i := range h.buckets {
		l.Counts[i] = h.buckets[i].Load()
	}
	return l
}

// Add adds o's counts to l.
func (l *Latencies) Add(o *Latencies) {
	for i, n := range o.Counts {
		l.Counts[i] += n
	}
}

// Sub returns l minus an earlier snapshot of the same histogram.
func (l *Latencies) Sub(earlier *Latencies) Latencies {
	var d Latencies
	for i, n := range l.Counts {
		d.Counts[i] = n - min(n, earlier.Counts[i])
	}
	return d
}

// Count is the number of latencies recorded.
func (l *Latencies) Count() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Quantile returns the q-quantile (0 < q <= 1) as the middle of the bucket
// that holds it, within 3% of the true value; 0 without samples.
func (l *Latencies) Quantile(q float64) time.Duration {
	total := l.Count()
	if total == 0 {
		return 0
	}
	// The rank of the q-quantile, 1-based: the smallest value with at
	// least q of all samples at or below it.
	rank := uint64(q * float64(total))
	if float64(rank) < q*float64(total) || rank == 0 {
		rank++
	}
	rank = min(rank, total)
	var seen uint64
	for i, c := range l.Counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return lo + (hi-lo-1)/2
		}
	}
	return 0 // not reached: seen ends at total
}
