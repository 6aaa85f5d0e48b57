// Package loadgen drives relayed UDP traffic through any TURN server with a REST shared secret and measures it.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// Config describes one load run. The zero value of every optional field is its default.
type Config struct {
	// Server is the TURN server's UDP address. Required. It must be a loopback
	// address: this tool floods its target and must never point at a real network.
	Server string
	// Secret is the REST shared secret (coturn's static-auth-secret). Required.
	Secret string
	// User is the user part of the REST username "<expiry>:<user>-<i>",
	// where i numbers the allocations: a distinct user each, so a server's
	// per-user quota does not cap the run. Default "loadgen".
	User string
	// Allocations is the number of TURN allocations, each with its own client
	// UDP socket, so the server sees that many 5-tuples (a server that spreads
	// work by socket or by flow needs several). Default 16.
	Allocations int
	// PeerIP is the loopback address the peer sockets bind to. Default
	// 127.0.0.2: not the server's own address, because a relay that guards
	// itself (as Switchboard does) only relays to its own address's relay
	// ports, never to other sockets there.
	PeerIP netip.Addr
	// ClientIP is the loopback address the client sockets bind to. Default: a
	// random one in 127.0.0.0/8 (not 127.0.0.1 or 127.0.0.2), fresh for every
	// Run, so a later run never reuses an earlier run's 5-tuple: a server may
	// still hold that allocation (a Refresh of 0 at the end is not waited for),
	// and coturn answers an unauthenticated Allocate on it with 437, no nonce.
	ClientIP netip.Addr
	// Peers is the number of UDP peer sockets on PeerIP; allocation i sends
	// to peer i%Peers. Default min(Allocations, 4): enough that one peer
	// goroutine is not the generator's bottleneck on a 2-core box.
	Peers int
	// PayloadSize is the bytes of application data per packet. Default 100,
	// about one Opus audio frame with its RTP header, the packet a relay sees most.
	PayloadSize int
	// PayloadMax, when above PayloadSize, makes every packet's size random:
	// uniform in PayloadSize..PayloadMax, drawn per packet. Real media is not
	// one size; a server that batches runs of equal-sized packets is measured
	// here without them. Default 0: every packet PayloadSize bytes.
	PayloadMax int
	// Rate is the total packets per second the clients send (open loop); with
	// echo peers the server relays twice that. Default 0: closed loop, each allocation keeps Window packets in flight,
	// which measures the most the server sustains without overrunning buffers.
	Rate int
	// Window is, in closed-loop mode, the packets each allocation keeps in
	// flight. Default 32: enough to keep both server cores busy on loopback
	// with 16 allocations, small enough not to overflow default socket buffers.
	Window int
	// Duration is the length of the measured phase. Default 5s.
	Duration time.Duration
	// Warmup is the untimed traffic before the measured phase, which lets every
	// channel binding complete so the measured phase is all ChannelData.
	// Default 500ms.
	Warmup time.Duration
	// MaxPackets caps the packets the clients send in the measured phase, so the
	// run is bounded by count as well as by time. Default 20,000,000.
	MaxPackets uint64
	// SinkOnly makes peers count packets without echoing them, so only the
	// client→peer direction is relayed. Needs Rate > 0. Default false (echo).
	SinkOnly bool
	// Meter measures the machine around the measured phase (CPU time of
	// the server, of this process and of the whole machine; kernel drop
	// counters): Run calls it just before the phase and the function it
	// returns just after, and puts the Usage into Result. The load
	// generator only counts packets; reading /proc is the caller's.
	// Default nil: Result.Usage stays zero.
	Meter Meter
	// Logger receives progress messages. Default nil: discard.
	Logger *slog.Logger
}

const (
	defaultUser        = "loadgen"
	defaultAllocations = 16
	defaultPayload     = 100
	defaultWindow      = 32
	defaultDuration    = 5 * time.Second
	defaultWarmup      = 500 * time.Millisecond
	defaultMaxPackets  = 20_000_000
	// maxAllocations and maxPayload keep a typo from opening thousands of
	// sockets or sending datagrams that would be fragmented.
	maxAllocations = 1024
	maxPayload     = 1200
	// setupTimeout bounds allocation, permission and first-packet round trip
	// for all allocations; on loopback each takes well under a millisecond,
	// so setupPerAllocation more each leaves a busy machine ample room
	// (1,000 allocations: 30 s).
	setupTimeout       = 10 * time.Second
	setupPerAllocation = 20 * time.Millisecond
	// After a phase, counters are read once no packet has arrived for
	// drainQuiet (loopback delivers in microseconds; 100ms of silence means
	// nothing is in flight), or after drainMax: a server descheduled by
	// other load can sit on queued packets for a while, and those are late,
	// not lost.
	drainQuiet = 100 * time.Millisecond
	drainMax   = 2 * time.Second
	// stallTimeout: in closed-loop mode, an allocation that hears nothing back
	// for this long writes its outstanding window off as lost and sends again,
	// so one lost burst never stops it for the rest of the run.
	stallTimeout = 50 * time.Millisecond
	// socketBuffer is SO_RCVBUF/SO_SNDBUF for the generator's sockets, so the
	// generator is not the one dropping packets (the kernel caps it at rmem_max).
	socketBuffer = 4 << 20
	// maxBurst bounds the packets a paced sender writes at once after a late
	// wake-up, so pacing stays smooth.
	maxBurst = 64
)

func (c *Config) setDefaults() error {
	if c.Server == "" {
		return errors.New("loadgen: Server is required")
	}
	if c.Secret == "" {
		return errors.New("loadgen: Secret is required")
	}
	addr, err := netip.ParseAddrPort(c.Server)
	if err != nil {
		return fmt.Errorf("loadgen: Server %q: want ip:port: %w", c.Server, err)
	}
	if !addr.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("loadgen: Server %s is not a loopback address; this tool only loads local servers", c.Server)
	}
	if c.User == "" {
		c.User = defaultUser
	}
	if !c.PeerIP.IsValid() {
		c.PeerIP = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	}
	if !c.PeerIP.Is4() || !c.PeerIP.IsLoopback() {
		return fmt.Errorf("loadgen: PeerIP %v is not an IPv4 loopback address", c.PeerIP)
	}
	if !c.ClientIP.IsValid() {
		b := [4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))}
		c.ClientIP = netip.AddrFrom4(b)
	}
	if !c.ClientIP.Is4() || !c.ClientIP.IsLoopback() {
		return fmt.Errorf("loadgen: ClientIP %v is not an IPv4 loopback address", c.ClientIP)
	}
	if c.Allocations == 0 {
		c.Allocations = defaultAllocations
	}
	if c.Allocations < 0 || c.Allocations > maxAllocations {
		return fmt.Errorf("loadgen: Allocations %d out of range 1-%d", c.Allocations, maxAllocations)
	}
	if c.Peers == 0 {
		c.Peers = min(c.Allocations, 4)
	}
	if c.Peers < 0 || c.Peers > c.Allocations {
		return fmt.Errorf("loadgen: Peers %d out of range 1-%d", c.Peers, c.Allocations)
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = defaultPayload
	}
	// 4 bytes minimum: a payload must not look like STUN or ChannelData to the
	// client's demultiplexer, and its first byte is set to make sure.
	if c.PayloadSize < 4 || c.PayloadSize > maxPayload {
		return fmt.Errorf("loadgen: PayloadSize %d out of range 4-%d", c.PayloadSize, maxPayload)
	}
	if c.PayloadMax != 0 && (c.PayloadMax <= c.PayloadSize || c.PayloadMax > maxPayload) {
		return fmt.Errorf("loadgen: PayloadMax %d out of range %d-%d", c.PayloadMax, c.PayloadSize+1, maxPayload)
	}
	if c.Rate < 0 {
		return fmt.Errorf("loadgen: Rate %d is negative", c.Rate)
	}
	if c.Rate == 0 && c.SinkOnly {
		return errors.New("loadgen: closed-loop mode (Rate 0) needs echo; set Rate with SinkOnly")
	}
	if c.Window == 0 {
		c.Window = defaultWindow
	}
	if c.Window < 0 {
		return fmt.Errorf("loadgen: Window %d is negative", c.Window)
	}
	if c.Duration == 0 {
		c.Duration = defaultDuration
	}
	if c.Duration < 0 {
		return fmt.Errorf("loadgen: Duration %v is negative", c.Duration)
	}
	if c.Warmup == 0 {
		c.Warmup = defaultWarmup
	}
	if c.MaxPackets == 0 {
		c.MaxPackets = defaultMaxPackets
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// allocation is one TURN client with its relayed connection.
type allocation struct {
	conn  *net.UDPConn // client socket; closed last
	tc    *turn.Client
	relay net.PacketConn
	peer  *net.UDPAddr
	clock clock

	// latency records peer→client delays, written by readRelay.
	latency Histogram
	// buf is this allocation's copy of the payload, stamped per packet;
	// owned by the sender goroutine.
	buf []byte

	// Counters written by the sender and reader goroutines, read by Run.
	sent, sendErrs, received atomic.Uint64
	// recvNotify wakes a closed-loop sender blocked on a full window;
	// capacity 1 so the reader never blocks.
	recvNotify chan struct{}
	// sizeLo..len(payload) is the range of packet sizes (Config.PayloadMax);
	// rng draws them. Both owned by the sender goroutine.
	sizeLo int
	rng    uint64
}

// peer is one UDP sink/echo socket on a loopback address.
type peer struct {
	conn             *net.UDPConn
	clock            clock
	received, echoed atomic.Uint64
	// latency records client→peer delays, written by serve.
	latency Histogram
}

type counts struct {
	sent, sendErrs, peerRecv, echoed, received uint64
}

// Run sets up the allocations, warms them up, runs the measured phase and
// tears everything down. It blocks for about Warmup+Duration plus set-up;
// cancelling ctx ends it early with ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	log := cfg.Logger

	// Every socket and goroutine below is owned by this function: readers
	// stop when their socket closes, and wg waits for them before returning.
	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		wg.Wait()
	}()

	clk := clock{start: time.Now()}
	peers := make([]*peer, cfg.Peers)
	for i := range peers {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.PeerIP, 0)))
		if err != nil {
			return Result{}, fmt.Errorf("loadgen: peer socket: %w", err)
		}
		setBuffers(c)
		p := &peer{conn: c, clock: clk}
		peers[i] = p
		closers = append(closers, func() { _ = c.Close() })
		wg.Go(func() { p.serve(!cfg.SinkOnly) })
	}

	events := &clientEvents{}
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout+time.Duration(cfg.Allocations)*setupPerAllocation)
	defer cancel()
	allocs := make([]*allocation, cfg.Allocations)
	for i := range allocs {
		a, err := newAllocation(setupCtx, cfg, i, peers[i%len(peers)].conn.LocalAddr().(*net.UDPAddr), clk, events, &wg, &closers)
		if err != nil {
			return Result{}, fmt.Errorf("loadgen: allocation %d: %w", i, err)
		}
		allocs[i] = a
	}
	log.Debug("allocations ready", "n", len(allocs))

	payload := make([]byte, max(cfg.PayloadSize, cfg.PayloadMax))
	// 0x80 in the first byte: neither a STUN message (top bits 00) nor
	// ChannelData (0x40-0x7f), so the echoed copy is unambiguously data.
	payload[0] = 0x80
	for i := 1; i < len(payload); i++ {
		payload[i] = byte(i)
	}
	// Unstamped (the first-contact probes): a zero time reads as none.
	clear(payload[stampOffset:min(stampEnd, len(payload))])
	for _, a := range allocs {
		a.buf = slices.Clone(payload)
	}

	// First contact: each allocation sends until its first packet is relayed
	// back (or, sink-only, arrives at the peer). That proves the permission
	// and starts the ChannelBind.
	if err := firstContact(setupCtx, cfg, allocs, peers, payload); err != nil {
		return Result{}, err
	}

	// Warm-up: the same traffic as the measured phase, untimed, so every
	// channel binding is in place and both processes reach a steady state.
	if _, err := phase(ctx, cfg, allocs, peers, payload, cfg.Warmup, cfg.MaxPackets); err != nil {
		return Result{}, err
	}

	res, err := measure(ctx, cfg, allocs, peers, payload, events)
	if err != nil {
		return Result{}, err
	}
	log.Debug("run done", "pps", res.PPS(), "loss", res.Loss())
	return res, nil
}

func measure(ctx context.Context, cfg Config, allocs []*allocation, peers []*peer, payload []byte, events *clientEvents) (Result, error) {
	latBefore := latencies(allocs, peers)
	before := snapshot(allocs, peers)
	queueBefore := events.queueDrops.Load()
	end := func() (Usage, error) { return Usage{}, nil }
	if cfg.Meter != nil {
		var err error
		if end, err = cfg.Meter(); err != nil {
			return Result{}, err
		}
	}

	elapsed, err := phase(ctx, cfg, allocs, peers, payload, cfg.Duration, cfg.MaxPackets)
	if err != nil {
		return Result{}, err
	}

	usage, err := end()
	if err != nil {
		return Result{}, err
	}
	after := snapshot(allocs, peers)
	latAfter := latencies(allocs, peers)
	return Result{
		Allocations:  cfg.Allocations,
		PayloadSize:  cfg.PayloadSize,
		PayloadMax:   cfg.PayloadMax,
		Rate:         cfg.Rate,
		Elapsed:      elapsed,
		Sent:         after.sent - before.sent,
		SendErrors:   after.sendErrs - before.sendErrs,
		PeerReceived: after.peerRecv - before.peerRecv,
		Echoed:       after.echoed - before.echoed,
		Received:     after.received - before.received,

		Usage:          usage,
		GeneratorDrops: events.queueDrops.Load() - queueBefore,
		// Counted over the whole run: a binding that failed in the warm-up
		// means Send indications in the measured phase too.
		BindFailures: events.bindFailures.Load(),
		Latency:      latAfter.Sub(&latBefore),
	}, nil
}

// latencies sums every allocation's and peer's histogram.
func latencies(allocs []*allocation, peers []*peer) Latencies {
	var l Latencies
	for _, a := range allocs {
		s := a.latency.Snapshot()
		l.Add(&s)
	}
	for _, p := range peers {
		s := p.latency.Snapshot()
		l.Add(&s)
	}
	return l
}

// phase runs one sender goroutine per allocation for d (or until budget
// packets are sent in total), then drains the packets in flight.
// It returns how long the senders ran.
func phase(ctx context.Context, cfg Config, allocs []*allocation, peers []*peer, payload []byte, d time.Duration, budget uint64) (time.Duration, error) {
	perAlloc := max(budget/uint64(len(allocs)), 1)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for _, a := range allocs {
		wg.Go(func() {
			if cfg.Rate > 0 {
				a.sendPaced(ctx, a.buf, float64(cfg.Rate)/float64(len(allocs)), deadline, perAlloc)
			} else {
				a.sendWindowed(ctx, a.buf, cfg.Window, deadline, perAlloc)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := drain(ctx, allocs, peers); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// drain waits until nothing has arrived for drainQuiet, at most drainMax.
func drain(ctx context.Context, allocs []*allocation, peers []*peer) error {
	const poll = 10 * time.Millisecond
	last, quiet := snapshot(allocs, peers), time.Duration(0)
	for waited := time.Duration(0); waited < drainMax && quiet < drainQuiet; waited += poll {
		if err := sleepCtx(ctx, poll); err != nil {
			return err
		}
		now := snapshot(allocs, peers)
		if now == last {
			quiet += poll
		} else {
			last, quiet = now, 0
		}
	}
	return nil
}

func snapshot(allocs []*allocation, peers []*peer) counts {
	var c counts
	for _, a := range allocs {
		c.sent += a.sent.Load()
		c.sendErrs += a.sendErrs.Load()
		c.received += a.received.Load()
	}
	for _, p := range peers {
		c.peerRecv += p.received.Load()
		c.echoed += p.echoed.Load()
	}
	return c
}

// firstContact sends one packet per allocation every 20ms until it is seen
// relayed, bounded by ctx (the set-up timeout).
func firstContact(ctx context.Context, cfg Config, allocs []*allocation, peers []*peer, payload []byte) error {
	const retry = 20 * time.Millisecond // several loopback round trips; a lost probe is retried soon
	pending := make(map[*allocation]bool, len(allocs))
	for _, a := range allocs {
		pending[a] = true
	}
	peerBase := snapshot(nil, peers).peerRecv
	for len(pending) > 0 {
		for a := range pending {
			if !cfg.SinkOnly && a.received.Load() > 0 {
				delete(pending, a)
				continue
			}
			if _, err := a.relay.WriteTo(payload, a.peer); err != nil {
				return fmt.Errorf("loadgen: first send via %s: %w", a.relay.LocalAddr(), err)
			}
		}
		if cfg.SinkOnly && snapshot(nil, peers).peerRecv-peerBase >= uint64(len(allocs)) {
			// Sink-only peers cannot tell which allocation a packet came
			// from; once each allocation's worth has arrived, the warm-up
			// covers the rest.
			break
		}
		if err := sleepCtx(ctx, retry); err != nil {
			return fmt.Errorf("loadgen: no packet relayed for %d of %d allocations: %w", len(pending), len(allocs), err)
		}
	}
	return nil
}

func newAllocation(ctx context.Context, cfg Config, i int, peerAddr *net.UDPAddr, clk clock, events *clientEvents, wg *sync.WaitGroup, closers *[]func()) (*allocation, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.ClientIP, 0)))
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	setBuffers(conn)
	*closers = append(*closers, func() { _ = conn.Close() })

	// Expiry one hour ahead: far longer than any run, well under any
	// server's maximum credential TTL.
	username, password, err := turn.GenerateLongTermTURNRESTCredentials(cfg.Secret, fmt.Sprintf("%s-%d", cfg.User, i), time.Hour)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	tc, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: cfg.Server,
		STUNServerAddr: cfg.Server,
		Username:       username,
		Password:       password,
		Conn:           conn,
		LoggerFactory:  events,
	})
	if err != nil {
		return nil, fmt.Errorf("turn client: %w", err)
	}
	*closers = append(*closers, tc.Close)

	a := &allocation{conn: conn, tc: tc, peer: peerAddr, clock: clk, recvNotify: make(chan struct{}, 1),
		rng: uint64(i)*0x9E3779B97F4A7C15 | 1}
	if cfg.PayloadMax > 0 {
		a.sizeLo = cfg.PayloadSize
	}
	// Our own read loop instead of tc.Listen, so this function owns the
	// goroutine and can wait for it; it ends when conn is closed.
	wg.Go(func() { a.readSocket() })

	relay, err := tc.AllocateWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocate at %s: %w", cfg.Server, err)
	}
	a.relay = relay
	// Closing the relayed conn sends a zero-lifetime Refresh (without
	// waiting) so the server frees the allocation at once; it also ends readRelay.
	*closers = append(*closers, func() { _ = relay.Close() })
	wg.Go(func() { a.readRelay() })
	return a, nil
}

// readSocket feeds every datagram from the server to the TURN client, which
// answers transactions and hands ChannelData/Data payloads to the relayed conn.
func (a *allocation) readSocket() {
	buf := make([]byte, 64<<10) // the largest UDP datagram
	for {
		n, from, err := a.conn.ReadFromUDP(buf)
		if err != nil {
			return // socket closed
		}
		_, _ = a.tc.HandleInbound(buf[:n], from) // a malformed datagram is dropped, not fatal
	}
}

// readRelay counts payloads relayed back from peers.
func (a *allocation) readRelay() {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := a.relay.ReadFrom(buf)
		if err != nil {
			return // relayed conn closed
		}
		if d, ok := a.clock.elapsed(buf[:n]); ok {
			a.latency.Record(d)
		}
		a.received.Add(1)
		select {
		case a.recvNotify <- struct{}{}:
		default:
		}
	}
}

// packet is the next packet to send: all of payload, or with Config.PayloadMax
// its first sizeLo..len(payload) bytes, drawn at random.
func (a *allocation) packet(payload []byte) []byte {
	if a.sizeLo <= 0 || a.sizeLo >= len(payload) {
		return payload
	}
	// xorshift64: cheap enough not to load the generator; a nonzero seed stays nonzero
	a.rng ^= a.rng << 13
	a.rng ^= a.rng >> 7
	a.rng ^= a.rng << 17
	return payload[:a.sizeLo+int(a.rng%uint64(len(payload)-a.sizeLo+1))]
}

// send sends the next packet from a.buf, stamped with its send time; the
// payload argument of the senders is a.buf.
func (a *allocation) send(payload []byte) {
	p := a.packet(payload)
	a.clock.stamp(p)
	if _, err := a.relay.WriteTo(p, a.peer); err != nil {
		a.sendErrs.Add(1)
		return
	}
	a.sent.Add(1)
}

// sendWindowed keeps up to window packets in flight until deadline or budget.
func (a *allocation) sendWindowed(ctx context.Context, payload []byte, window int, deadline time.Time, budget uint64) {
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	// base is what sent-received would be with nothing in flight: sends
	// before this phase, and packets written off as lost.
	sent0 := a.sent.Load() + a.sendErrs.Load()
	base := int64(a.sent.Load()) - int64(a.received.Load())
	for {
		done := a.sent.Load() + a.sendErrs.Load() - sent0
		if done >= budget || ctx.Err() != nil || !time.Now().Before(deadline) {
			return
		}
		inflight := int64(a.sent.Load()) - int64(a.received.Load()) - base
		if free := int64(window) - inflight; free > 0 {
			for range min(uint64(free), budget-done) {
				a.send(payload)
			}
			continue
		}
		stall.Reset(stallTimeout)
		select {
		case <-a.recvNotify:
		case <-stall.C:
			base += inflight // presumed lost
		case <-ctx.Done():
			return
		}
	}
}

// sendPaced sends at rate packets/s until deadline or budget.
func (a *allocation) sendPaced(ctx context.Context, payload []byte, rate float64, deadline time.Time, budget uint64) {
	start := time.Now()
	var n uint64
	for n < budget && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			return
		}
		due := uint64(now.Sub(start).Seconds()*rate) + 1
		if due > budget {
			due = budget
		}
		if due > n {
			for range min(due-n, maxBurst) {
				a.send(payload)
				n++
			}
			continue
		}
		next := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
		time.Sleep(min(time.Until(next), time.Until(deadline)))
	}
}

// serve counts datagrams and, when echo is set, returns each to its sender
// (always a relay address, which is local since this socket is bound to loopback).
func (p *peer) serve(echo bool) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // socket closed
		}
		if d, ok := p.clock.elapsed(buf[:n]); ok {
			p.latency.Record(d)
		}
		p.received.Add(1)
		if !echo || !from.Addr().Unmap().IsLoopback() {
			continue
		}
		p.clock.stamp(buf[:n]) // the echo's own one-way trip starts now
		if _, err := p.conn.WriteToUDPAddrPort(buf[:n], from); err == nil {
			p.echoed.Add(1)
		}
	}
}

func setBuffers(c *net.UDPConn) {
	// Best effort: the kernel silently caps these at net.core.[rw]mem_max.
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
