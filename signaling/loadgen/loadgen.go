// Package loadgen drives a signaling server with many WebSocket sessions and
// measures how fast and how evenly it relays signals between pairs of them.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Protocol selects the wire protocol the sessions speak.
type Protocol string

const (
	// Switchboard speaks signaling/PROTOCOL.md: hello → welcome, then
	// signal {to, data} relayed as signal {from, data}; ping {ack} acks.
	Switchboard Protocol = "switchboard"
	// PeerJS speaks the peerjs-server protocol (npm "peer"): id and token in
	// the URL, OPEN on register, CANDIDATE {dst, payload} relayed as
	// {type, src, dst, payload}, client-sent HEARTBEAT keeps the id alive.
	PeerJS Protocol = "peerjs"
)

// Config describes one load run. The zero value of every field except URL
// means its documented default.
type Config struct {
	// URL is the WebSocket endpoint: ws://127.0.0.1:8080/ws for Switchboard,
	// ws://127.0.0.1:9000/peerjs for PeerJS. Required. Its host must be a
	// loopback address or "localhost": load runs never leave the machine.
	// Not needed when Nodes is set.
	URL string
	// Nodes, if set, are the WebSocket endpoints of a cluster's nodes (same
	// rules as URL), used instead of URL: pair k's sessions 2k and 2k+1 connect
	// to nodes k mod N and k+1 mod N, so with two or more nodes every signal
	// crosses from one node to another. Switchboard only.
	Nodes []string
	// Protocol defaults to Switchboard.
	Protocol Protocol
	// Sessions to open; sessions 2k and 2k+1 form pair k. Default 1000.
	// Must be even.
	Sessions int
	// Origin header sent on every upgrade. Default "http://" + the host of
	// the URL the session dials, which passes a same-origin check.
	Origin string
	// ConnectRate is new sessions per second during Connect. Default 1000:
	// 10,000 sessions in 10 s while the accept backlog (4096 by default on
	// Linux) never sees a burst big enough to drop SYNs.
	ConnectRate float64
	// ConnectConcurrency bounds handshakes in flight. Default 64: enough to
	// hide the round trips on loopback, small enough not to starve the
	// server's other work on a 2-core machine.
	ConnectConcurrency int
	// Token returns the hello token of session i (Switchboard with an auth
	// secret). Nil: no token.
	Token func(i int) string
	// PeerJSKey is the PeerJS server key. Default "peerjs", the CLI default.
	PeerJSKey string
	// Heartbeat is the client application heartbeat period. Zero: the
	// protocol's own — Switchboard: the interval its welcome announces;
	// PeerJS: 5 s, the peerjs browser client's pingInterval. Negative: none.
	Heartbeat time.Duration
	// AckEvery (Switchboard) sends ping {ack} as soon as this many server
	// messages are unacknowledged, so the hub can drop its replay copies
	// under load rather than only at each heartbeat. Every signal a session
	// sends carries its ack too. Default 32; negative: ack only in
	// heartbeats and signals.
	AckEvery int
	// PayloadSize is the padding carried in every signal, in bytes.
	// Default 200: about one ICE candidate line.
	PayloadSize int
	// WriteTimeout bounds every write. Default 5 s: far above any healthy
	// loopback write, short enough that a wedged server ends a run.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds dial + upgrade + hello/welcome (or OPEN).
	// Default 10 s.
	HandshakeTimeout time.Duration
	// Logger gets per-session failures at Debug. Nil: discard.
	Logger *slog.Logger
}

// relayWorkers is the number of paced sender goroutines. Four keeps one
// slow write from stalling the whole schedule while adding little
// scheduling overhead on a 2-core machine.
const relayWorkers = 4

// drainTimeout is how long Relay waits for in-flight signals after the
// last send; anything later counts as lost.
const drainTimeout = 5 * time.Second

// Runner owns the sessions of one load run.
type Runner struct {
	// static after New
	cfg    Config
	nodes  []*url.URL // Config.Nodes, or Config.URL alone
	client *http.Client
	epoch  time.Time // latency timestamps are monotonic offsets from here
	pad    string
	log    *slog.Logger

	ctx    context.Context // lifetime of all sessions; Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup // readers and the heartbeat goroutine

	mu       sync.Mutex
	sessions []*session // guarded by mu; index = session number, nil until connected
	hbOnce   sync.Once
	wdOnce   sync.Once
	hbEvery  atomic.Int64 // heartbeat period in ns, learned from the first welcome

	run       atomic.Uint32             // current relay run; 0 = none
	hist      atomic.Pointer[histogram] // latency of the current run
	delivered atomic.Uint64             // signals of the current run received
	stray     atomic.Uint64             // signals from no or an earlier run
	dropped   atomic.Int64              // sessions whose link ended before Close
	errMu     sync.Mutex                // guards errCodes
	errCodes  map[string]uint64         // server error messages by code
	closed    atomic.Bool
}

// New validates cfg and applies defaults; it opens nothing.
func New(cfg Config) (*Runner, error) {
	if cfg.Protocol == "" {
		cfg.Protocol = Switchboard
	}
	if cfg.Protocol != Switchboard && cfg.Protocol != PeerJS {
		return nil, fmt.Errorf("loadgen: unknown protocol %q", cfg.Protocol)
	}
	if cfg.Sessions == 0 {
		cfg.Sessions = 1000
	}
	if cfg.Sessions < 2 || cfg.Sessions%2 != 0 {
		return nil, fmt.Errorf("loadgen: sessions %d: want an even number >= 2", cfg.Sessions)
	}
	urls := cfg.Nodes
	if len(urls) == 0 {
		urls = []string{cfg.URL}
	} else if cfg.Protocol != Switchboard {
		return nil, fmt.Errorf("loadgen: nodes: the %s protocol has no cluster", cfg.Protocol)
	}
	nodes := make([]*url.URL, 0, len(urls))
	for _, raw := range urls {
		u, err := parseURL(raw)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, u)
	}
	if cfg.ConnectRate <= 0 {
		cfg.ConnectRate = 1000
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = 64
	}
	if cfg.PeerJSKey == "" {
		cfg.PeerJSKey = "peerjs"
	}
	if cfg.AckEvery == 0 {
		cfg.AckEvery = 32
	}
	if cfg.PayloadSize <= 0 {
		cfg.PayloadSize = 200
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: cfg.HandshakeTimeout}
	r := &Runner{
		cfg:   cfg,
		nodes: nodes,
		client: &http.Client{Transport: &http.Transport{
			Proxy:       nil, // never route a benchmark through an environment proxy
			DialContext: dialer.DialContext,
			// Every upgrade hijacks its connection; nothing is pooled.
			DisableKeepAlives: true,
		}},
		epoch:    time.Now(),
		pad:      strings.Repeat("x", cfg.PayloadSize),
		log:      log,
		sessions: make([]*session, cfg.Sessions),
		errCodes: map[string]uint64{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if cfg.Heartbeat > 0 {
		r.hbEvery.Store(int64(cfg.Heartbeat))
	} else if cfg.Heartbeat == 0 && cfg.Protocol == PeerJS {
		r.hbEvery.Store(int64(5 * time.Second))
	}
	return r, nil
}

// parseURL checks one WebSocket endpoint: ws or http, on loopback.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("loadgen: url: %w", err)
	}
	switch u.Scheme {
	case "ws", "http":
	default:
		return nil, fmt.Errorf("loadgen: url %q: scheme must be ws or http", raw)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return nil, fmt.Errorf("loadgen: url %q: %w", raw, err)
	}
	return u, nil
}

// Home is the node session i connects to: pair k (sessions 2k and 2k+1)
// spans nodes k mod N and k+1 mod N.
func (r *Runner) Home(i int) int { return (i/2 + i%2) % len(r.nodes) }

// checkLoopback refuses any host that is not a loopback literal or
// "localhost".
func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback address", host)
	}
	return nil
}

// ConnectResult reports the connect phase.
type ConnectResult struct {
	Attempted, Connected, Failed int
	Elapsed                      time.Duration
	Handshake                    Latency        // dial + upgrade + welcome/OPEN
	Errors                       map[string]int // failure reasons, shortened
	Heartbeat                    time.Duration  // client heartbeat in use (0: none)
}

// Connect opens the sessions, paced at ConnectRate with at most
// ConnectConcurrency handshakes in flight. It stops launching when ctx is
// done and returns once every launched handshake has finished (each is
// bounded by HandshakeTimeout). Connect is called once per Runner.
func (r *Runner) Connect(ctx context.Context) (ConnectResult, error) {
	res := ConnectResult{Errors: map[string]int{}}
	var (
		hs    histogram
		errMu sync.Mutex
		wg    sync.WaitGroup
		ok    atomic.Int64
		sem   = make(chan struct{}, r.cfg.ConnectConcurrency)
	)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / r.cfg.ConnectRate)
launch:
	for i := range r.cfg.Sessions {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				break launch
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			break launch
		case sem <- struct{}{}:
		}
		res.Attempted++
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			s, err := r.dial(ctx, i)
			if err != nil {
				r.log.Debug("session failed", "peer", i, "err", err)
				errMu.Lock()
				res.Errors[shortReason(err)]++
				errMu.Unlock()
				return
			}
			hs.record(time.Since(t0))
			ok.Add(1)
			// Under mu, so that Close either sees the session and its
			// reader or this sees closed: r.wg.Go never races r.wg.Wait.
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.closed.Load() {
				s.conn.CloseNow()
				return
			}
			r.sessions[i] = s
			r.wg.Go(s.readLoop)
			r.wdOnce.Do(func() { r.wg.Go(r.watchdog) })
		})
	}
	wg.Wait()
	res.Connected = int(ok.Load())
	res.Failed = res.Attempted - res.Connected
	res.Elapsed = time.Since(start)
	res.Handshake = hs.summary()
	if hb := time.Duration(r.hbEvery.Load()); hb > 0 && r.cfg.Heartbeat >= 0 {
		res.Heartbeat = hb
		r.mu.Lock()
		if !r.closed.Load() {
			r.hbOnce.Do(func() { r.wg.Go(r.heartbeatLoop) })
		}
		r.mu.Unlock()
	}
	if res.Connected == 0 {
		return res, fmt.Errorf("loadgen: no session connected (%s)", FormatCounts(res.Errors))
	}
	return res, ctx.Err()
}

// Active reports how many sessions are connected now.
func (r *Runner) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sessions {
		if s != nil && s.alive.Load() {
			n++
		}
	}
	return n
}

// Dropped reports how many sessions lost their link before Close.
func (r *Runner) Dropped() int { return int(r.dropped.Load()) }

// ServerErrors returns a snapshot of the error messages the server sent,
// by code, since New.
func (r *Runner) ServerErrors() map[string]uint64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	m := make(map[string]uint64, len(r.errCodes))
	for k, v := range r.errCodes {
		m[k] = v
	}
	return m
}

// RelayResult reports one relay run.
type RelayResult struct {
	TargetRate  float64       // signals/s asked for
	Senders     int           // sessions sending (both ends of every live pair)
	Window      time.Duration // first send to last send
	Sent        uint64        // signals written
	Delivered   uint64        // signals received by their pair peer
	Lost        uint64        // Sent − Delivered after the drain wait
	Skipped     uint64        // scheduled on a session whose link had ended
	Abandoned   uint64        // not sent: the schedule ran more than WriteTimeout late
	WriteErrors uint64
	Stray       uint64  // signals of an earlier run arriving late
	Rate        float64 // Delivered / Window
	Latency     Latency // one-way: sender's write → receiver's read
	SendLag     Latency // how late each send was against its schedule
	// ServerErrors counts error messages received during the run, by code.
	ServerErrors map[string]uint64
	Dropped      int // sessions that lost their link during the run
}

// Relay sends signals between the members of every connected pair at rate
// signals/s in total for d, open loop (each send has a scheduled time,
// independent of replies), then waits up to drainTimeout for stragglers.
// Both members of a pair send, alternating across pairs round robin.
func (r *Runner) Relay(ctx context.Context, rate float64, d time.Duration) (RelayResult, error) {
	res := RelayResult{TargetRate: rate}
	if rate <= 0 || d <= 0 {
		return res, fmt.Errorf("loadgen: relay rate %v for %v: both must be positive", rate, d)
	}
	var senders []*session
	r.mu.Lock()
	for i := 0; i < len(r.sessions); i += 2 {
		a, b := r.sessions[i], r.sessions[i+1]
		if a != nil && b != nil && a.alive.Load() && b.alive.Load() {
			senders = append(senders, a, b)
		}
	}
	r.mu.Unlock()
	if len(senders) == 0 {
		return res, errors.New("loadgen: relay: no connected pair")
	}
	res.Senders = len(senders)

	errsBefore := r.ServerErrors()
	droppedBefore := r.dropped.Load()
	h := new(histogram)
	r.hist.Store(h)
	r.delivered.Store(0)
	run := r.run.Add(1)

	var (
		lag                     histogram
		sent, skipped, writeErr atomic.Uint64
		late                    atomic.Uint64
		firstSend, lastSend     atomic.Int64
		wg                      sync.WaitGroup
	)
	firstSend.Store(-1)
	total := uint64(rate * d.Seconds())
	perWorker := max(rate/relayWorkers, 1e-9)
	start := time.Now()
	// The schedule ends at d; sends may run late by up to one write
	// timeout, then the rest is abandoned, so Relay always ends.
	stopAt := start.Add(d + r.cfg.WriteTimeout)
	for w := range relayWorkers {
		// Worker w sends messages w, w+W, w+2W, ... of the global schedule,
		// so together the workers interleave evenly across senders.
		var mine []*session
		for i := w; i < len(senders); i += relayWorkers {
			mine = append(mine, senders[i])
		}
		if len(mine) == 0 {
			continue
		}
		n := total / relayWorkers
		if uint64(w) < total%relayWorkers {
			n++
		}
		wg.Go(func() {
			var buf []byte
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for k := uint64(0); k < n; k++ {
				due := start.Add(time.Duration(float64(k) / perWorker * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				if ctx.Err() != nil {
					return
				}
				if time.Now().After(stopAt) {
					// Writes stalled so long that the schedule cannot be
					// kept: give up on the rest rather than run on.
					late.Add(n - k)
					return
				}
				s := mine[k%uint64(len(mine))]
				peer := s.peer()
				if !s.alive.Load() || peer == nil || !peer.alive.Load() {
					skipped.Add(1)
					continue
				}
				now := time.Now()
				lag.record(now.Sub(due))
				buf = r.appendSignal(buf[:0], s, peer, run, uint64(w)+k*relayWorkers, int64(now.Sub(r.epoch)))
				if err := s.write(buf); err != nil {
					writeErr.Add(1)
					r.log.Debug("signal write failed", "peer", s.idx, "err", err)
					continue
				}
				ns := int64(time.Since(start))
				firstSend.CompareAndSwap(-1, ns)
				for {
					l := lastSend.Load()
					if ns <= l || lastSend.CompareAndSwap(l, ns) {
						break
					}
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	res.Sent = sent.Load()

	// Drain: wait for in-flight signals, bounded by drainTimeout.
	deadline := time.Now().Add(drainTimeout)
	for r.delivered.Load() < res.Sent && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	r.run.Store(0) // later arrivals count as stray, not delivered
	res.Delivered = r.delivered.Load()
	if res.Delivered < res.Sent {
		res.Lost = res.Sent - res.Delivered
	}
	res.Skipped = skipped.Load()
	res.Abandoned = late.Load()
	res.WriteErrors = writeErr.Load()
	res.Stray = r.stray.Load()
	if firstSend.Load() >= 0 {
		res.Window = time.Duration(lastSend.Load() - firstSend.Load())
	}
	if res.Window > 0 {
		res.Rate = float64(res.Delivered) / res.Window.Seconds()
	}
	res.Latency = h.summary()
	res.SendLag = lag.summary()
	res.ServerErrors = map[string]uint64{}
	for k, v := range r.ServerErrors() {
		if v > errsBefore[k] {
			res.ServerErrors[k] = v - errsBefore[k]
		}
	}
	res.Dropped = int(r.dropped.Load() - droppedBefore)
	return res, ctx.Err()
}

// Close ends every session at once (no close handshake: the server sees a
// dropped link) and waits for the runner's goroutines.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed.Store(true)
	sessions := r.sessions
	r.mu.Unlock()
	r.cancel()
	for _, s := range sessions {
		if s != nil {
			s.conn.CloseNow()
		}
	}
	r.wg.Wait()
	return nil
}

// heartbeatLoop sends every live session one heartbeat per period, spread
// evenly over the period so 10,000 sessions do not ping in one burst.
func (r *Runner) heartbeatLoop() {
	// tick is the granularity of the spread: 50 batches a second.
	const tick = 20 * time.Millisecond
	period := time.Duration(r.hbEvery.Load())
	t := time.NewTicker(tick)
	defer t.Stop()
	n := len(r.sessions)
	perTick := float64(n) * float64(tick) / float64(period)
	cursor, owed := 0, 0.0
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		owed += perTick
		for ; owed >= 1; owed-- {
			r.mu.Lock()
			s := r.sessions[cursor]
			r.mu.Unlock()
			cursor = (cursor + 1) % n
			if s != nil && s.alive.Load() {
				s.heartbeat()
			}
		}
	}
}

// watchdog cuts every link whose write has been under way for more than
// WriteTimeout: the write fails, the reader ends, the session counts as
// dropped. A wedged server thus ends a run instead of hanging it.
func (r *Runner) watchdog() {
	t := time.NewTicker(max(r.cfg.WriteTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		limit := int64(time.Since(r.epoch) - r.cfg.WriteTimeout)
		var stuck []*session
		r.mu.Lock()
		for _, s := range r.sessions {
			if s != nil {
				if ws := s.writeSince.Load(); ws != 0 && ws < limit {
					stuck = append(stuck, s)
				}
			}
		}
		r.mu.Unlock()
		for _, s := range stuck { // outside mu: closing is I/O
			r.log.Debug("write stuck, cutting the link", "peer", s.idx)
			s.conn.CloseNow()
		}
	}
}

// shortReason reduces an error to a stable, countable phrase.
func shortReason(err error) string {
	var ce *codeError
	switch {
	case errors.As(err, &ce):
		return "server error " + ce.code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	// The last two parts of a wrapped error name the failure without the
	// per-connection addresses that the outer parts carry.
	parts := strings.Split(err.Error(), ": ")
	msg := strings.Join(parts[max(0, len(parts)-2):], ": ")
	if len(msg) > 100 {
		msg = msg[:100]
	}
	return msg
}

// FormatCounts renders counts by reason as "a ×2, b ×1" in key order, "none" if empty.
func FormatCounts[V int | uint64](m map[string]V) string {
	keys := slices.Sorted(maps.Keys(m))
	if len(keys) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// dialURL is the upgrade URL of session i on node n.
func (r *Runner) dialURL(i, n int, token string) string {
	if r.cfg.Protocol != PeerJS {
		return r.nodes[n].String()
	}
	u := *r.nodes[n]
	q := u.Query()
	q.Set("key", r.cfg.PeerJSKey)
	q.Set("id", peerJSID(i))
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String()
}

// dialOptions are the upgrade options for node n.
func (r *Runner) dialOptions(n int) *websocket.DialOptions {
	origin := r.cfg.Origin
	if origin == "" {
		origin = "http://" + r.nodes[n].Host
	}
	return &websocket.DialOptions{
		HTTPClient: r.client,
		HTTPHeader: http.Header{"Origin": {origin}},
	}
}
