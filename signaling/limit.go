package signaling

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per client IP with a bounded number of IPs. IPv6
// clients are counted by /64 (netKey): one host or home network holds a whole /64
// and could otherwise pick a fresh address, and a full bucket, per request.
type ipLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Addr]*ipBucket // guarded by mu
}

type ipBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPLimiter(limit rate.Limit, burst, max int) *ipLimiter {
	return &ipLimiter{limit: limit, burst: burst, max: max, m: make(map[netip.Addr]*ipBucket)}
}

// allow takes one token for ip. When the map is full, buckets idle long enough to
// be full again are dropped first (forgetting them changes nothing), then random
// ones (an evicted IP starts over with a full bucket).
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	ip = netKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[ip]
	if b == nil {
		if len(l.m) >= l.max {
			l.evictLocked(now)
		}
		b = &ipBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[ip] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

func (l *ipLimiter) evictLocked(now time.Time) {
	refill := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	for ip, b := range l.m {
		if now.Sub(b.last) > refill {
			delete(l.m, ip)
		}
	}
	// Still full: drop about a tenth. Map order is random, so an attacker cannot
	// choose which entries survive.
	for ip := range l.m {
		if len(l.m) < l.max*9/10 {
			break
		}
		delete(l.m, ip)
	}
}

func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
