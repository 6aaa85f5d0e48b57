package main

import (
	"context"
	"sync"
	"time"
)

// trafficClock remembers when a relayed-packet count last changed.
type trafficClock struct {
	mu   sync.Mutex // guards the fields below
	last uint64
	at   time.Time
}

// observe records count n seen at now and returns when it last changed.
func (c *trafficClock) observe(n uint64, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || n != c.last {
		c.last, c.at = n, now
	}
	return c.at
}

// trafficWatchEvery is how often the running server samples the relay's
// counters for the drain: a fraction of drainIdle, and a Stats call (a few
// atomic loads and small maps) every 2 s costs nothing.
const trafficWatchEvery = 2 * time.Second

// relayedPackets is the relay's relayed-packet count, both directions.
func (a *app) relayedPackets() uint64 {
	st := a.relay.Stats()
	return st.PacketsToPeer + st.PacketsFromPeer
}

// watchTraffic samples the relay's counters until close.
func (a *app) watchTraffic() {
	t := time.NewTicker(trafficWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stopWatch:
			return
		case now := <-t.C:
			a.quiet.observe(a.relayedPackets(), now)
		}
	}
}

// drainEnd is why the drain ended.
type drainEnd int

// drainRelay waits until allocs() is 0, traffic() (a relayed-packet count)
// stays unchanged for idle, or ctx ends, checking every poll. quietSince is
// when the count last moved before the drain (zero: now).
func drainRelay(ctx context.Context, allocs func() int, traffic func() uint64, quietSince time.Time, idle, poll time.Duration) drainEnd {
	t := time.NewTicker(poll)
	defer t.Stop()
	last, since := traffic(), time.Now()
	if !quietSince.IsZero() && quietSince.Before(since) {
		since = quietSince
	}
	for {
		if allocs() == 0 {
			return drainEndDone
		}
		if n := traffic(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= idle {
			return drainEndIdle
		}
		select {
		case <-ctx.Done():
			return drainEndTimeout
		case <-t.C:
		}
	}
}

// stopSummary is what the closing log line reports.
type stopSummary struct {
	Sessions    int      // signaling sessions told to reconnect
	Allocations int      // TURN allocations when the drain began
	Ended       int      // of those, ended by their clients during the drain
	Closed      int      // closed by the stop (timeout or idle)
	End         drainEnd // why the drain ended
}

func (s stopSummary) attrs() []any {
	return []any{"sessions", s.Sessions, "allocations", s.Allocations,
		"allocations_ended", s.Ended, "allocations_closed", s.Closed}
}
