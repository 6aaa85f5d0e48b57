package signaling

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// tickLoop drives every timer of the hub from one ticker: an idle session costs a
// few map entries, not a goroutine and a timer.
func (h *Hub) tickLoop() {
	t := time.NewTicker(h.scanTick())
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.tick(now)
		}
	}
}

// maxScanTick bounds the period of the scan of attached links. A coarse tick
// would start every ping due in the last Tick at once: at 10,000 sessions and a
// 5 s ping interval that is 1,000 pings (and 1,000 pongs) every 500 ms, and every
// signal of that moment waited behind them (a p99 of 25 ms at 20,000 msg/s,
// measured with `switchboard bench signaling`). At 20 ms the pings trickle out
// 40 at a time. Tick still paces the small sets, which are walked whole.
const maxScanTick = 20 * time.Millisecond

// scanTick is the period of the hub's ticker.
func (h *Hub) scanTick() time.Duration { return min(h.cfg.Tick, maxScanTick) }

func (h *Hub) tick(now time.Time) {
	var pings *pingBatch
	defer func() {
		if pings != nil {
			pings.done() // the tick held a reference until all pings were started
		}
	}()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	var ended []*session
	sweep := !now.Before(h.nextSweep)
	if sweep {
		ended = h.sweepLocked(now)
	}
	share := h.scanShare(len(h.live))
	h.mu.Unlock()
	if sweep {
		// Told through the Router, so without Hub.mu.
		for _, s := range ended {
			s.end(wire.ReasonTimeout, false)
		}
		ss, hs := h.ring.due(h.mono(now))
		for i, s := range ss {
			s.ringTimeout(hs[i])
			s.replicate()
		}
	}

	// The attached links, the big set: each tick visits its share (so that every
	// link is seen at least every scanPeriod), scanBatch per hold of the lock, so a
	// tick never stalls message handling for more than a few microseconds.
	const scanBatch = 256
	for done := 0; done < share; {
		h.mu.Lock()
		for i := 0; i < scanBatch && done < share && len(h.live) > 0; i++ {
			if h.cursor >= len(h.live) {
				h.cursor = 0
			}
			l := h.live[h.cursor]
			h.cursor++
			done++
			pings = h.checkLinkLocked(l, now, pings)
		}
		if len(h.live) == 0 {
			done = share
		}
		h.mu.Unlock()
	}
}

// sweepLocked walks the small sets whole: connections before hello, sessions in
// grace. It runs every Tick (ringing calls are swept right after, see tick) and
// returns the sessions whose grace ran out, to be ended without Hub.mu.
func (h *Hub) sweepLocked(now time.Time) (ended []*session) {
	// Half a scan tick early, so that ticker jitter never makes a sweep skip a Tick.
	h.nextSweep = now.Add(h.cfg.Tick - h.scanTick()/2)
	for l := range h.pending {
		if !l.kicked.Load() && h.mono(now) > l.helloBy {
			l.setReason(reasonHelloTimeout)
			h.kickLocked(l, websocket.StatusPolicyViolation, "hello timeout", nil)
		}
	}
	for s := range h.away {
		if h.mono(now) > s.graceUntil && h.endLocked(s) {
			ended = append(ended, s)
		}
	}
	return ended
}

// scanPeriod is how often each attached link is looked at: a quarter of the ping
// interval (pings go out at most 25 % late) or of the write timeout.
func (h *Hub) scanPeriod() time.Duration {
	return min(h.cfg.PingInterval, h.cfg.WriteTimeout) / 4
}

// scanShare is how many of n attached links one tick visits.
func (h *Hub) scanShare(n int) int {
	p, tick := h.scanPeriod(), h.scanTick()
	if p <= tick {
		return n
	}
	ticks := int(p / tick)
	return (n + ticks - 1) / ticks
}

// checkLinkLocked does an attached link's timed work: stalled-write cut, ping,
// credential refresh.
func (h *Hub) checkLinkLocked(l *link, now time.Time, pings *pingBatch) *pingBatch {
	if l.kicked.Load() {
		return pings
	}
	if ws := l.writeSince.Load(); ws != 0 && now.Sub(time.Unix(0, ws)) > h.cfg.WriteTimeout {
		// A write stuck this long: the client is not reading (or is gone).
		if l.why.Load() == 0 {
			l.setReason(reasonSlowConsumer)
			h.st.slowConsumers.Add(1)
			h.wg.Go(func() { l.nc.Close() }) // unblocks the write; the reader ends the link
		}
		return pings
	}
	if !l.pinging.Load() && now.UnixNano() > l.nextPing.Load() {
		l.pinging.Store(true)
		if pings == nil {
			pings = newPingBatch(now.Add(h.cfg.PongTimeout))
		}
		pings.n.Add(1)
		// A goroutine of its own rather than a worker: it mostly waits (a round
		// trip), and a fresh goroutine's stack is half a worker's.
		h.wg.Go(func() { h.ping(l, pings) })
	}
	s := l.s
	if s == nil {
		return pings
	}
	if s.refreshAt != 0 && !s.refreshing && h.mono(now) > s.refreshAt {
		s.refreshing = true
		h.run(func() { h.refresh(s) })
	}
	if g := s.grant; g != nil && g.renewAt != 0 && !g.renewing && h.mono(now) > g.renewAt {
		g.renewing = true
		h.run(func() { h.renew(s) })
	}
	return pings
}

// pingBatch shares one deadline context among the pings started in one tick: a
// context and timer per ping would be most of the keepalive's garbage.
type pingBatch struct {
	ctx    context.Context
	cancel context.CancelFunc
	n      atomic.Int32 // pings still waiting; the last one cancels
}

func newPingBatch(deadline time.Time) *pingBatch {
	b := &pingBatch{}
	b.ctx, b.cancel = context.WithDeadline(context.Background(), deadline)
	b.n.Store(1)
	return b
}

func (b *pingBatch) done() {
	if b.n.Add(-1) == 0 {
		b.cancel()
	}
}

// ping sends one WebSocket ping and waits for its pong; a missing pong ends the link.
func (h *Hub) ping(l *link, b *pingBatch) {
	err := l.c.Ping(b.ctx)
	b.done()
	if err != nil {
		l.setReason(reasonPongTimeout)
		if !l.kicked.Load() {
			l.c.CloseNow() // the reader wakes up and moves the session into its grace
		}
		return
	}
	l.nextPing.Store(time.Now().Add(h.cfg.PingInterval).UnixNano())
	l.pinging.Store(false)
}

// refresh mints fresh ICE servers for s and queues them before the old ones expire.
func (h *Hub) refresh(s *session) {
	servers, exp, err := h.cfg.ICE.ICEServers(h.ctx, s.id)
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s.refreshing = false
	if err != nil {
		h.log.Warn("refresh ice servers", "peer", s.id, "err", err)
		s.refreshAt = h.mono(now.Add(max(h.cfg.Tick, time.Second))) // retry soon: the old ones run out
		return
	}
	h.st.credentialsIssued.Add(1)
	s.refreshAt = h.refreshTime(now, exp)
	if s.ended {
		return
	}
	_ = s.push(wire.Credentials{Type: wire.TypeICEServers, ICEServers: servers, TTL: ttlSeconds(now, exp)})
}

// renew pushes the successor of s's renewable sign-in token before it expires
// and keeps its claims for the next push.
func (h *Hub) renew(s *session) {
	h.mu.Lock()
	g := s.grant
	cl := g.renew
	h.mu.Unlock()
	now := time.Now()
	tok, exp, ok := renewToken(h.cfg.AuthSecret, cl, now)
	var next *claims
	if ok {
		var err error
		if next, err = verifyToken(h.cfg.AuthSecret, tok); err != nil {
			h.log.Error("renewed token does not verify", "peer", s.id, "err", err)
			ok = false
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	g.renewing = false
	if g.renew != cl {
		return // a resume brought a newer token meanwhile
	}
	if !ok {
		g.renewAt = 0
		return
	}
	g.renew = next
	g.renewAt = h.refreshTime(now, exp)
	if s.ended {
		return
	}
	h.st.tokensRenewed.Add(1)
	_ = s.push(wire.Token{Type: wire.TypeToken, Token: tok, TTL: ttlSeconds(now, exp)})
}

// Shutdown stops accepting, tells every client to reconnect (1012) and waits for
// the hub's goroutines, or for ctx; then it cuts what is left.
