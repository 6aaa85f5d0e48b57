// Package signaling is the WebSocket signaling hub: names, presence, rooms, calls and
// resumable sessions, with TURN credentials minted per session (see PROTOCOL.md).
package signaling

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// Hub is the signaling server core of one node. It never listens: ServeHTTP is
// mounted by the caller at /ws and ICEServersHandler at /api/ice-servers.
//
// The hub owns the node's connections and the lifecycle of its sessions
// (hello, resume, grace, end) and drives their timers. Sessions own their
// state (queue, room, their half of a call) and reach each other only through
// the Router (router.go).
//
// Lock order: a session's handling, then Hub.mu, then the Router's lock, then a
// session's mu. Under any of them: map/slice operations and non-blocking work
// only (no I/O, no JSON, no waiting); goroutines may be started. Hub.mu
// serializes the node's connection and session sets; no Router method is
// called with it held, and relaying a signal or answering a ping never takes it.
type Hub struct {
	*env // static after New

	// Static after New.
	accept    *websocket.AcceptOptions
	creds     *ipLimiter // nil with AuthSecret (tokens gate issuance instead)
	heartbeat heartbeat
	handlers  handlers

	cancel    context.CancelFunc
	startOnce sync.Once
	// frames pools *inbound: a reader takes one when a frame arrives and gives it
	// back once the frame is handled, so an idle session holds no read buffer.
	frames sync.Pool

	mu      sync.Mutex
	closing bool               // guarded by mu
	links   map[*link]struct{} // guarded by mu: every open connection
	pending map[*link]struct{} // guarded by mu: connections before hello
	// pendingIP counts pending links (and upgrades in progress) by netKey of the
	// client IP; guarded by mu. Bounded by pending: zero entries are deleted.
	pendingIP map[netip.Addr]int
	live      []*link               // guarded by mu: links with a session attached (l.liveIdx)
	cursor    int                   // guarded by mu: where the tick's scan of live resumes
	nextSweep time.Time             // guarded by mu: when the tick next walks the small sets
	sessions  map[string]*session   // guarded by mu: this node's sessions by id, attached or in grace
	away      map[*session]struct{} // guarded by mu: sessions in resume grace
}

// New validates cfg and returns a Hub. It starts nothing.
func New(cfg Config) (*Hub, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, log: cfg.Logger, router: cfg.Router, dir: cfg.Directory}
	if e.router == nil {
		e.router = NewLocalRouter()
	}
	if mv, ok := e.router.(Mover); ok {
		e.keeper = mv
	}
	if d, ok := e.router.(Directory); ok && e.dir == nil {
		e.dir = d // a cluster's router knows every node's sessions
	}
	if e.dir == nil {
		e.dir = NewLocalDirectory()
	}
	e.epoch = time.Now().Add(-time.Nanosecond) // mono is > 0 from New on: 0 stays free for "never"
	e.work = make(chan func())
	e.seqBufs.New = func() any { return new([]byte) }
	e.bodies.New = func() any { return new([]byte) }
	e.ring.m = make(map[*half]*session)
	h := &Hub{
		env:       e,
		links:     make(map[*link]struct{}),
		pending:   make(map[*link]struct{}),
		pendingIP: make(map[netip.Addr]int),
		away:      make(map[*session]struct{}),
		sessions:  make(map[string]*session),
		heartbeat: heartbeat{
			Interval: cfg.PingInterval.Milliseconds(),
			Timeout:  cfg.PongTimeout.Milliseconds(),
		},
		handlers: newHandlers(),
	}
	h.accept = &websocket.AcceptOptions{
		OriginPatterns:  cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled, // JSON this small gains little; flate state costs ~50 KiB a link
	}
	if len(cfg.AuthSecret) == 0 {
		h.creds = newIPLimiter(rate.Limit(cfg.CredentialRate), cfg.CredentialBurst, cfg.MaxTrackedIPs)
	}
	e.ctx, h.cancel = context.WithCancel(context.Background())
	h.frames.New = func() any {
		in := &inbound{h: h, done: make(chan struct{}, 1)}
		in.fn = in.handle
		return in
	}
	if h.keeper != nil {
		h.keeper.Serve(h)
	}
	return h, nil
}

// Stats is a snapshot for metrics.
type Stats struct {
	Sessions    int // gauge: sessions, attached or in resume grace
	Detached    int // gauge: sessions in resume grace
	Connections int // gauge: open WebSocket connections (incl. before hello)
	Rooms       int // gauge: non-empty rooms
	Calls       int // gauge: calls ringing or active (counted at the caller's side)

	MessagesIn        uint64            // client messages read
	MessagesOut       uint64            // messages written (incl. replays)
	RateLimited       uint64            // client messages refused by the rate limit
	AuthRefused       uint64            // hellos and /api/ice-servers requests refused for a bad token
	CredentialsIssued uint64            // ICE credential sets minted (welcome, refresh, HTTP)
	TokensRenewed     uint64            // sign-in tokens pushed to sessions before theirs expired
	Resumed           uint64            // successful resumes
	StaleResumes      uint64            // resumes refused as older than one already accepted (hello.attempt)
	Replayed          uint64            // messages unacked at a resume, written again on the new link
	Undeliverable     uint64            // messages that could not be delivered
	SlowConsumers     uint64            // links closed because the client did not read
	OriginRefused     uint64            // upgrades refused (origin or bad handshake)
	PendingRefused    uint64            // upgrades refused: MaxPendingPerIP connections before hello from one address
	Disconnects       map[string]uint64 // links closed, by reason

	// Cluster mode (a Mover router); see handoff.go.
	HandedOff uint64 // sessions released to another node for a resume there
	HandedIn  uint64 // sessions claimed from another node for a resume here
	Adopted   uint64 // sessions taken over from a node that died
	Fenced    uint64 // times this node cut everything for losing the cluster's majority
}

// Stats returns a snapshot of the hub's gauges and counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{
		Sessions:    len(h.sessions),
		Detached:    len(h.away),
		Connections: len(h.links),
	}
	h.mu.Unlock()
	s.Calls = int(h.calls.Load())
	s.Rooms = h.router.Rooms()
	s.MessagesIn = h.st.messagesIn.Load()
	s.MessagesOut = h.st.messagesOut.Load()
	s.RateLimited = h.st.rateLimited.Load()
	s.AuthRefused = h.st.authRefused.Load()
	s.CredentialsIssued = h.st.credentialsIssued.Load()
	s.TokensRenewed = h.st.tokensRenewed.Load()
	s.Resumed = h.st.resumed.Load()
	s.StaleResumes = h.st.staleResumes.Load()
	s.Replayed = h.st.replayed.Load()
	s.Undeliverable = h.st.undeliverable.Load()
	s.SlowConsumers = h.st.slowConsumers.Load()
	s.OriginRefused = h.st.originRefused.Load()
	s.PendingRefused = h.st.pendingRefused.Load()
	s.HandedOff, s.HandedIn = h.st.handedOff.Load(), h.st.handedIn.Load()
	s.Adopted, s.Fenced = h.st.adopted.Load(), h.st.fenced.Load()
	s.Disconnects = make(map[string]uint64, numReasons)
	for r := range reason(numReasons) {
		if n := h.st.disconnects[r].Load(); n > 0 && r != reasonNone {
			s.Disconnects[r.String()] = n
		}
	}
	return s
}

// Shutdown stops accepting, tells every client to reconnect (1012) and waits for
// the hub's goroutines, or for ctx; then it cuts what is left.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for l := range h.links {
		l.setReason(reasonShutdown)
		h.kickLocked(l, websocket.StatusServiceRestart, "server restarting", nil)
	}
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.closeNowAll()
		<-done
		return fmt.Errorf("signaling: shutdown: %w", ctx.Err())
	}
}

// Close cuts every connection now and waits for the hub's goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.cancel()
	h.closeNowAll()
	h.wg.Wait()
	return nil
}

func (h *Hub) closeNowAll() {
	h.mu.Lock()
	ls := make([]*link, 0, len(h.links))
	for l := range h.links {
		l.setReason(reasonShutdown)
		ls = append(ls, l)
	}
	h.mu.Unlock()
	for _, l := range ls {
		l.nc.Close() // not CloseNow: it only waits when a Close is under way
	}
}
