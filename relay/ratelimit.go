package relay

import (
	"hash/maphash"
	"net/netip"

	"golang.org/x/time/rate"
)

// sourceLimiter rate-limits responses to unauthenticated requests per source IP, so the
// server is a poor amplifier for spoofed traffic. It is a fixed array of limiters indexed
// by a keyed hash of the IP: memory is bounded whatever the number of sources, there is
// nothing to evict, and the random seed keeps an attacker from aiming collisions at a
// victim. Two sources sharing a bucket share a budget, which at 4096 buckets only matters
// under an attack that the limit is there to blunt anyway.
type sourceLimiter struct {
	seed    maphash.Seed
	buckets []*rate.Limiter
}

// limiterBuckets: 4096 × ~100 B ≈ 400 KB, enough that real clients rarely share a bucket.
const limiterBuckets = 4096

func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	l := &sourceLimiter{seed: maphash.MakeSeed(), buckets: make([]*rate.Limiter, limiterBuckets)}
	for i := range l.buckets {
		l.buckets[i] = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return l
}

// allow takes a token for ip's bucket. IPv6 sources count per /64: one host (or one
// victim network of a spoofed reflection) holds a whole /64 and could otherwise spread its
// requests over 2^64 addresses, i.e. over every bucket, and multiply its budget by 4096.
func (l *sourceLimiter) allow(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		ip = netip.PrefixFrom(ip.WithZone(""), 64).Masked().Addr()
	}
	a := ip.As16()
	h := maphash.Bytes(l.seed, a[:])
	return l.buckets[h%limiterBuckets].Allow()
}
