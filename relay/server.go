// Package relay is Switchboard's STUN responder and TURN relay, built on pion/turn.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// Server is a STUN/TURN server. Create it with New, start it with Listen, stop it with
// Shutdown or Close.
type Server struct {
	// Static after New.
	cfg     Config
	log     *slog.Logger // cfg.Logger behind logs, shut by Close
	logs    logGate
	auth    *authenticator
	limiter *sourceLimiter
	policy  peerPolicy // self is filled in by Listen, before any goroutine reads it
	flows   *flowTable // shadow of pion's channels and permissions for cfg.Offload

	stats    counters
	draining atomic.Bool
	tcpConns atomic.Int64
	unauth   unauthSources // TCP/TLS connections not yet authenticated, per source
	binding  bindingResponder
	resv     reservations // RESERVATION-TOKENs, across every listening socket

	// Set by Listen, read-only afterwards.
	turn *turn.Server
	udp  []*filterConn
	// clients maps the client address pion keeps in each UDP allocation (the very
	// *net.UDPAddr the Allocate request was read with) to the allocation's relay socket,
	// whose loop alone writes to it (see sendbatch.go).
	clients sync.Map
	// byClient finds a UDP client's relay socket by its address, for ChannelData
	// (datapath.go).
	byClient clientIndex
	tcpLn    *connListener
	tlsLns   []*connListener
	relays   *relays
	// pollers read the relay sockets of UDP clients (poller_linux.go); started by Listen,
	// stopped by Close once every relay socket is closed.
	pollers pollers

	// loops counts pion's read loops (one per UDP socket, per listener, per TCP conn): each
	// is Done when our wrapper sees its socket end.
	loops sync.WaitGroup

	mu       sync.Mutex
	started  bool                    // Listen was called; guarded by mu
	allocs   map[allocKey]*allocInfo // guarded by mu
	users    map[string]int          // live allocations per REST user; guarded by mu
	closed   bool                    // guarded by mu
	closeErr error                   // guarded by mu

	// bindHints, set by tests only, are the ports bindMain tries first when ListenAddr has
	// port 0, standing in for the kernel's choice.
	bindHints []int
	// now, set by tests only (before Listen), is the clock for credential expiry and
	// allocation age, so a test can pass hours without waiting; nil means time.Now.
	now func() time.Time
}

// clock reads the server's clock (see now).
func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// allocKey identifies an allocation by its 5-tuple (pion's FiveTuple, comparable).
type allocKey struct {
	src, dst netip.AddrPort
	tcp      bool
}

type allocInfo struct {
	user    string
	created time.Time
	perms   map[netip.Addr]struct{}
	// n counts pion allocations on this 5-tuple, normally 1. pion removes an expiring
	// allocation from its map before it reports the deletion, so a client re-allocating on
	// the same 5-tuple in between has its creation reported first; the deletion that
	// follows must not take the new allocation's entry, or quota slot, with it.
	n int
}

// New validates cfg and returns a Server. It does no I/O.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		auth:    newAuthenticator(cfg),
		limiter: newSourceLimiter(cfg.UnauthRate, cfg.UnauthBurst),
		policy:  peerPolicy{allow: cfg.PeerAllow, deny: cfg.PeerDeny},
		allocs:  map[allocKey]*allocInfo{},
		users:   map[string]int{},
	}
	s.log = slog.New(gatedHandler{inner: cfg.Logger.Handler(), gate: &s.logs})
	s.binding.s = s
	s.flows = newFlowTable(cfg.Offload, s.policy.isSelf, s.localRelayAddr, s.relayConnOf)
	return s, nil
}

// GeneratedSecret reports whether New generated the secret because none was configured; it
// changes on every restart, invalidating credentials minted before.
func (s *Server) GeneratedSecret() bool { return s.auth.generated }

// Mint returns a credential for user valid for ttl, signed with Secrets[0].
func (s *Server) Mint(user string, ttl time.Duration) Credential {
	return s.auth.mint(user, ttl)
}

// Socket buffers. A listening socket carries every client of its share of the server, so
// it gets room for bursts: 4 MiB is ~2700 full-size datagrams, about 40 ms at 70k packets/s.
// A relay socket carries one allocation: 512 KiB absorbs a video keyframe burst. The kernel
// caps both at net.core.rmem_max/wmem_max (often 208 KiB); raise those on a busy server.
const (
	listenerBuffer = 4 << 20
	relayBuffer    = 512 << 10
)

// Datagrams per recvmmsg (see udpSocket), each in a maxFrame buffer, for sockets read by
// pion's loops rather than a poller (TCP/TLS clients' relay sockets; other systems than
// Linux). A listening socket serves many clients and is often deeply queued under load: 8
// (72 KiB per socket). A relay socket serves one allocation: 2 (18 KiB per allocation, made
// on its first read); a slow flow rarely has more than one datagram waiting, and a fast one
// still halves its reads.
const (
	listenerBatch = 8
	relayBatch    = 2
)

// reusePort lets Sockets UDP sockets share one address; the kernel hashes each client's
// 4-tuple to one of them, so every core reads and a client always meets the same socket
// (and so the same pion allocation manager).
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// Listen binds every socket and starts serving. ctx bounds the binding only; the server
// runs until Shutdown or Close.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("relay: Listen called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()

	host, _, _ := net.SplitHostPort(s.cfg.ListenAddr)
	listenIP, _ := netip.ParseAddr(host)
	if err := s.setupRelays(listenIP.Unmap()); err != nil {
		return err
	}

	var conns []net.PacketConn
	var lns []net.Listener
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
		for _, l := range lns {
			_ = l.Close()
		}
	}
	// No host or "::" listens dual-stack; "0.0.0.0" or a specific address, that family only.
	udpNet, tcpNet := "udp", "tcp"
	switch {
	case listenIP.Unmap().Is4():
		udpNet, tcpNet = "udp4", "tcp4"
	case listenIP.IsValid() && !listenIP.IsUnspecified():
		udpNet, tcpNet = "udp6", "tcp6"
	}
	udpConns, tl, err := s.bindMain(ctx, udpNet, tcpNet)
	if err != nil {
		return err
	}
	lns = append(lns, tl)
	for _, c := range udpConns {
		conns = append(conns, c)
		_ = c.(*net.UDPConn).SetReadBuffer(listenerBuffer)
		_ = c.(*net.UDPConn).SetWriteBuffer(listenerBuffer)
	}
	for _, a := range s.cfg.TLSListenAddrs {
		tl, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("relay: listen tls %s: %w", a, err)
		}
		lns = append(lns, tl)
	}

	pcs := make([]turn.PacketConnConfig, 0, len(conns))
	for _, c := range conns {
		fc, err := newFilterConn(s, c, nil)
		if err != nil {
			closeAll()
			return fmt.Errorf("relay: listen udp %s: %w", c.LocalAddr(), err)
		}
		s.udp = append(s.udp, fc)
		pcs = append(pcs, turn.PacketConnConfig{
			PacketConn: fc, RelayAddressGenerator: s.relays, PermissionHandler: s.permit,
		})
	}
	if s.cfg.OtherAddr.IsValid() {
		if err := s.binding.listen(ctx, addrPortOf(conns[0].LocalAddr()), s.cfg.OtherAddr, s.udp[0].sendMain); err != nil {
			closeAll()
			return err
		}
	}
	lcs := make([]turn.ListenerConfig, 0, len(lns))
	for i, l := range lns {
		var cl *connListener
		if i == 0 {
			cl = newConnListener(s, l, nil)
			s.tcpLn = cl
		} else {
			cl = newConnListener(s, l, s.cfg.TLSConfig)
			s.tlsLns = append(s.tlsLns, cl)
		}
		lcs = append(lcs, turn.ListenerConfig{Listener: cl, RelayAddressGenerator: s.relays, PermissionHandler: s.permit})
	}
	if err := s.pollers.start(s, s.udp); err != nil {
		closeAll()
		return err
	}
	s.loops.Add(len(pcs) + len(lcs))
	ts, err := turn.NewServer(turn.ServerConfig{
		PacketConnConfigs: pcs,
		ListenerConfigs:   lcs,
		LoggerFactory:     newPionLogs(s.log),
		// pion drops what fills its read buffer: one more than the largest datagram.
		InboundMTU:   maxFrame + 1,
		Realm:        s.cfg.Realm,
		AuthHandler:  s.auth.handler,
		QuotaHandler: s.quota,
		// RFC 8656 §7.2: without REQUESTED-ADDRESS-FAMILY the relay is IPv4, whatever the
		// client's own family (pion would otherwise follow the listener's).
		StrictAddressFamily: true,
		EventHandler: turn.EventHandler{
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnPermissionCreated: s.onPermissionCreated,
			OnPermissionDeleted: s.onPermissionDeleted,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	})
	if err != nil {
		s.loops.Add(-(len(pcs) + len(lcs)))
		closeAll()
		return errors.Join(fmt.Errorf("relay: start turn server: %w", err), s.pollers.close())
	}
	s.mu.Lock()
	s.turn = ts
	closed := s.closed
	s.mu.Unlock()
	if closed { // Close ran while we were binding, with nothing to stop yet: stop it now
		s.mu.Lock()
		s.closed = false
		s.mu.Unlock()
		return errors.Join(errors.New("relay: closed during Listen"), s.Close())
	}
	s.log.Info("relay listening", "udp", conns[0].LocalAddr().String(), "sockets", len(conns),
		"public_ipv4", s.relays.v4.public, "public_ipv6", s.relays.v6.public,
		"relay_ports", fmt.Sprintf("%d-%d", s.cfg.RelayPortMin, s.cfg.RelayPortMax))
	if s.auth.generated {
		s.log.Warn("relay generated a random TURN secret; it changes on restart")
	}
	return nil
}

// maxBindAttempts bounds the search for a port free for both TCP and UDP when ListenAddr
// has port 0. The kernel searches the TCP space for a free port; its UDP side is taken only
// when another UDP socket holds that number, and UDP ports are few on any host, so a second
// attempt is already rare. 20 covers a loaded test machine (tens of thousands of TCP
// TIME-WAIT sockets on loopback) while a wrong address still fails at once.
const maxBindAttempts = 20

// bindMain binds one TCP listener and Sockets UDP sockets on ListenAddr, one port number
// for both. With port 0, a port whose UDP side is taken (or a TCP bind that finds the range
// full for a moment: EADDRINUSE) is dropped and the search starts again with a fresh port,
// up to maxBindAttempts times. A fixed port gets one attempt.
//
// TCP binds first because the TCP space is the crowded one: on a host with many TCP
// connections, TIME-WAIT included, most ephemeral ports are taken for TCP while free for
// UDP, so a port the kernel picked for UDP would often be busy for TCP.
func (s *Server) bindMain(ctx context.Context, udpNet, tcpNet string) ([]net.PacketConn, net.Listener, error) {
	host, portStr, err := net.SplitHostPort(s.cfg.ListenAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: listen %s: %w", s.cfg.ListenAddr, err)
	}
	port, err := net.LookupPort("udp", portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: listen %s: %w", s.cfg.ListenAddr, err)
	}
	for attempt := 0; ; attempt++ {
		p := port
		if port == 0 && attempt < len(s.bindHints) {
			p = s.bindHints[attempt]
		}
		conns, tl, err := s.bindPort(ctx, udpNet, tcpNet, host, p)
		if err == nil {
			return conns, tl, nil
		}
		if port != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt+1 >= maxBindAttempts {
			return nil, nil, err
		}
		s.log.Debug("relay listen port busy, trying another", "err", err)
	}
}

// bindPort binds the TCP listener on host:port (port 0: the kernel picks), then Sockets
// UDP sockets on the same port. On error nothing stays bound.
func (s *Server) bindPort(ctx context.Context, udpNet, tcpNet, host string, port int) (conns []net.PacketConn, tl net.Listener, err error) {
	defer func() {
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			if tl != nil {
				_ = tl.Close()
			}
			conns, tl = nil, nil
		}
	}()
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	tl, err = (&net.ListenConfig{}).Listen(ctx, tcpNet, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: listen tcp %s: %w", addr, err)
	}
	addr = net.JoinHostPort(host, strconv.Itoa(tl.Addr().(*net.TCPAddr).Port))
	// A UDP socket without SO_REUSEPORT binds only where no UDP socket is: with
	// SO_REUSEPORT alone, the bind would also succeed on a port that a reuseport group of
	// the same user holds (another Switchboard, a test server in a parallel process), and
	// the two servers would silently split each other's clients. What remains is the
	// moment between the probe's close and our binds: a plain bind there makes ours fail
	// (port 0 tries again); a reuseport one landing in those microseconds would still join.
	probe, err := net.ListenPacket(udpNet, addr)
	if err != nil {
		return nil, tl, fmt.Errorf("relay: listen udp %s: %w", addr, err)
	}
	_ = probe.Close()
	lc := net.ListenConfig{Control: reusePort}
	for range s.cfg.Sockets {
		c, err := lc.ListenPacket(ctx, udpNet, addr)
		if err != nil {
			return conns, tl, fmt.Errorf("relay: listen udp %s: %w", addr, err)
		}
		conns = append(conns, c)
	}
	return conns, tl, nil
}

// setupRelays decides, per family, where relay sockets bind and which address they
// advertise (see Config.PublicIPv4/PublicIPv6).
func (s *Server) setupRelays(listenIP netip.Addr) error {
	n := int(s.cfg.RelayPortMax) - int(s.cfg.RelayPortMin) + 1
	r := &relays{s: s, min: s.cfg.RelayPortMin, max: s.cfg.RelayPortMax}
	r.v4 = relayFamily{network: "udp4", bind: netip.IPv4Unspecified(), public: s.cfg.PublicIPv4}
	r.v6 = relayFamily{network: "udp6", bind: netip.IPv6Unspecified(), public: s.cfg.PublicIPv6}
	hostV6 := hostHasIPv6()
	switch {
	case listenIP.IsValid() && listenIP.Is4():
		r.v4.bind = listenIP
		if listenIP.IsLoopback() && hostV6 {
			r.v6.bind = netip.IPv6Loopback()
		} else if !r.v6.public.IsValid() {
			r.v6.bind = netip.Addr{} // v6 only with an explicit public v6 address
		}
	case listenIP.IsValid() && !listenIP.IsUnspecified():
		r.v6.bind = listenIP
		if listenIP.IsLoopback() {
			r.v4.bind = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else if !r.v4.public.IsValid() {
			r.v4.bind = netip.Addr{}
		}
	}
	for _, f := range []*relayFamily{&r.v4, &r.v6} {
		if !f.bind.IsValid() {
			continue
		}
		if !f.public.IsValid() {
			if !f.bind.IsUnspecified() {
				f.public = f.bind
			} else if ip, _, err := interfaceIP(f == &r.v6); err == nil {
				f.public = ip
			}
		}
		if !f.public.IsValid() || (f == &r.v6 && !hostV6) {
			continue
		}
		f.enabled = true
		f.pubIP = net.IP(f.public.AsSlice())
		f.hairpinDst = f.bind
		if f.bind.IsUnspecified() {
			f.hairpinDst = netip.IPv6Loopback()
			if f == &r.v4 {
				f.hairpinDst = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
		}
		f.ports = make([]atomic.Pointer[relayConn], n)
		s.policy.self = append(s.policy.self, f.public)
	}
	if !r.v4.enabled && !r.v6.enabled {
		return errors.New("relay: no relay address: set PublicIPv4 (no usable interface address found)")
	}
	s.relays = r
	// The host's other addresses are its own too, but not advertised: no peer can
	// legitimately be there (a second public IP, a global IPv6 address, its LAN address), so
	// refuse them as peers even when PeerAllow covers them (PeerAllow=192.168.1.0/24 opens
	// the LAN, not the relay's own HTTP, metrics and ssh ports on its LAN address); the
	// public addresses stay open to relay ports through self. Loopback is left to PeerAllow:
	// allowing it is an explicit choice for tests, made knowing it is the host itself.
	s.policy.deny = append([]netip.Prefix(nil), s.cfg.PeerDeny...)
	for _, ip := range hostAddrs() {
		if ip != r.v4.public && ip != r.v6.public {
			s.policy.deny = append(s.policy.deny, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return nil
}

// hostAddrs returns the host's interface addresses, loopback excepted.
func hostAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok && !ip.Unmap().IsLoopback() {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

func hostHasIPv6() bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && p.IP.To4() == nil && p.IP.To16() != nil {
			return true
		}
	}
	return false
}

// UDPAddr returns the bound UDP address (nil before Listen).
func (s *Server) UDPAddr() net.Addr {
	if len(s.udp) == 0 {
		return nil
	}
	return s.udp[0].LocalAddr()
}

// TCPAddr returns the bound TCP address (nil before Listen).
func (s *Server) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// TLSAddrs returns the bound TLS addresses, in TLSListenAddrs order.
func (s *Server) TLSAddrs() []net.Addr {
	out := make([]net.Addr, len(s.tlsLns))
	for i, l := range s.tlsLns {
		out[i] = l.Addr()
	}
	return out
}

// Drain makes the server refuse new allocations (508); existing ones go on.
func (s *Server) Drain() { s.draining.Store(true) }

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return int(s.stats.allocsActive.Load()) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.flows.fold(&s.stats)
	return s.stats.snapshot()
}

// drainPoll is how often Shutdown checks whether allocations have ended; allocations end on
// client Refresh(0) or expiry, so 100 ms adds nothing noticeable to a shutdown.
const drainPoll = 100 * time.Millisecond

// Shutdown drains, waits until no allocation is left or ctx is done, then closes. It
// returns ctx's error if allocations were cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	var ctxErr error
	for s.Allocations() > 0 && ctxErr == nil {
		select {
		case <-ctx.Done():
			ctxErr = ctx.Err()
		case <-t.C:
		}
	}
	return errors.Join(ctxErr, s.Close())
}

// closeWait bounds how long Close waits for pion's goroutines after closing their sockets;
// they exit on the next read error, which is immediate, so this only guards against a bug.
const closeWait = 5 * time.Second

// Close stops the server now: sockets, connections and allocations are closed, every
// goroutine's last call into the relay has returned (or closeWait passed), and nothing is
// logged any more when it returns (see logGate for what pion still runs after that).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	s.closed = true
	ts := s.turn
	s.mu.Unlock()
	if ts == nil {
		s.logs.close()
		return s.flows.close(&s.stats)
	}
	// The fast path stops first (its counts folded), so everything after is user space.
	offErr := s.flows.close(&s.stats)
	// pion closes the UDP sockets and listeners; our listeners close their connections;
	// the allocation managers, as their loops end, close the relay sockets.
	err := errors.Join(ts.Close(), offErr, s.binding.close())
	done := make(chan struct{})
	go func() {
		s.loops.Wait()          // listener read loops, accept loops, per-connection loops
		s.relays.live.Wait()    // relay sockets closed
		s.relays.readers.Wait() // allocation read loops saw their socket end
		close(done)
	}()
	timer := time.NewTimer(closeWait)
	select {
	case <-done:
	case <-timer.C:
		err = errors.Join(err, errors.New("relay: goroutines did not stop in time"))
	}
	timer.Stop()
	// Relay sockets are closed (unless the wait above timed out): the pollers have nothing
	// left to read.
	err = errors.Join(err, s.pollers.close())
	if err != nil {
		err = fmt.Errorf("relay: close: %w", err)
	}
	// pion closes allocations on shutdown; their deletion events come from its tails, before
	// or after this point: forget every allocation here, so a late event finds nothing.
	s.logs.close()
	s.mu.Lock()
	s.closeErr = err
	clear(s.allocs)
	clear(s.users)
	s.stats.allocsActive.Store(0)
	s.mu.Unlock()
	s.auth.reset()
	return err
}

// permit is pion's PermissionHandler; the filter has already refused denied peers with
// 403, this is the second line.
func (s *Server) permit(_ net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok && s.policy.allowed(ip) {
		return true
	}
	s.stats.permsRefused.Add(1)
	return false
}

// quota is pion's QuotaHandler (a refusal becomes 486). Counts move on the allocation
// events, so concurrent Allocates on different sockets may overshoot by at most Sockets-1.
func (s *Server) quota(user, _ string, _ net.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(s.allocs) >= s.cfg.TotalQuota:
		s.stats.refused[refuseQuotaTotal].Add(1)
		return false
	case s.users[user] >= s.cfg.UserQuota:
		s.stats.refused[refuseQuotaUser].Add(1)
		return false
	}
	return true
}

func allocKeyOf(src, dst net.Addr) allocKey {
	_, tcp := src.(*net.TCPAddr)
	return allocKey{src: addrPortOf(src), dst: addrPortOf(dst), tcp: tcp}
}

func (s *Server) hasAlloc(k allocKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocs[k] != nil
}

func (s *Server) onAllocationCreated(src, dst net.Addr, _, user, _ string, relayAddr net.Addr, _ int) {
	k := allocKeyOf(src, dst)
	s.mu.Lock()
	n := 1
	if old := s.allocs[k]; old != nil {
		n += old.n
	}
	s.allocs[k] = &allocInfo{user: user, created: s.clock(), perms: map[netip.Addr]struct{}{}, n: n}
	s.users[user]++
	s.mu.Unlock()
	s.stats.allocsActive.Add(1)
	s.stats.allocsCreated.Add(1)
	s.log.Debug("relay allocation created", "remote", src.String(), "relay", relayAddr.String())
	s.deferClientWrites(src, dst, relayAddr)
}

// deferClientWrites lets the allocation's loop batch what it sends to a UDP client (see
// sendbatch.go). dst is the listening socket's LocalAddr as pion read it: our filterConn's.
func (s *Server) deferClientWrites(src, dst, relayAddr net.Addr) {
	ra, ok := relayAddr.(*net.UDPAddr)
	if tc, tok := src.(*net.TCPAddr); ok && tok {
		s.tcpClientWrites(tc, dst, ra)
		return
	}
	client, cok := src.(*net.UDPAddr)
	if !ok || !cok {
		return
	}
	var l *filterConn
	for _, c := range s.udp {
		if c.local == dst {
			l = c
		}
	}
	if l == nil {
		return // a TCP client
	}
	fam := &s.relays.v4
	if ra.IP.To4() == nil {
		fam = &s.relays.v6
	}
	rc := s.relays.lookup(fam, ra.Port)
	if rc == nil {
		return // the allocation is already gone
	}
	if p := l.poller; p == nil || !p.add(rc, l.sock, addrPortOf(client), client) {
		rc.out.Store(&outBatch{sock: l.sock, dst: addrPortOf(client), key: client})
	}
	s.clients.Store(client, rc)
	s.byClient.put(addrPortOf(client), rc)
	if s.relays.lookup(fam, ra.Port) != rc { // closed meanwhile: its Close may have missed the entry
		s.clients.CompareAndDelete(client, rc)
		s.byClient.remove(addrPortOf(client), rc)
	}
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, _, user, _ string) {
	k := allocKeyOf(src, dst)
	s.mu.Lock()
	info, ok := s.allocs[k]
	if ok {
		if info.n--; info.n <= 0 {
			delete(s.allocs, k)
		}
		if s.users[user]--; s.users[user] <= 0 {
			delete(s.users, user)
		}
	}
	s.mu.Unlock()
	if ok {
		s.stats.allocsActive.Add(-1)
	}
	s.flows.allocationDeleted(src, dst, &s.stats)
	s.log.Debug("relay allocation deleted", "remote", src.String())
}

func (s *Server) onPermissionCreated(src, dst net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
	s.flows.permissionCreated(src, dst, relayAddr, peer)
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	s.mu.Lock()
	if a := s.allocs[allocKeyOf(src, dst)]; a != nil {
		a.perms[ip.Unmap()] = struct{}{}
	}
	s.mu.Unlock()
}

func (s *Server) onPermissionDeleted(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
	s.flows.permissionDeleted(src, dst, peer, &s.stats)
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	s.mu.Lock()
	if a := s.allocs[allocKeyOf(src, dst)]; a != nil {
		delete(a.perms, ip.Unmap())
	}
	s.mu.Unlock()
}

func (s *Server) onChannelCreated(src, dst net.Addr, _, _, _ string, relayAddr, peer net.Addr, ch uint16) {
	s.flows.channelCreated(src, dst, relayAddr, peer, ch)
}

func (s *Server) onChannelDeleted(src, dst net.Addr, _, _, _ string, _, peer net.Addr, ch uint16) {
	s.flows.channelDeleted(src, dst, peer, ch, &s.stats)
}

// relayConnOf finds the relay socket of an advertised relay address.
func (s *Server) relayConnOf(relayAddr net.Addr) *relayConn {
	ua, ok := relayAddr.(*net.UDPAddr) // a TCP relay (RFC 6062) has no relayConn
	if s.relays == nil || !ok {
		return nil
	}
	ap := addrPortOf(ua)
	fam := &s.relays.v4
	if ap.Addr().Is6() {
		fam = &s.relays.v6
	}
	return s.relays.lookup(fam, int(ap.Port()))
}

// localRelayAddr maps an advertised relay address to the address its socket is bound to.
func (s *Server) localRelayAddr(public netip.AddrPort) netip.AddrPort {
	if s.relays == nil {
		return public
	}
	fam := &s.relays.v4
	if public.Addr().Is6() {
		fam = &s.relays.v6
	}
	return netip.AddrPortFrom(fam.bind, public.Port())
}

// tcpClientWrites lets the allocation's loop write ChannelData to its TCP/TLS client itself
// (relayConn.ReadFrom): the connection is found by its two addresses among the listeners'.
func (s *Server) tcpClientWrites(src *net.TCPAddr, dst net.Addr, ra *net.UDPAddr) {
	fam := &s.relays.v4
	if ra.IP.To4() == nil {
		fam = &s.relays.v6
	}
	rc := s.relays.lookup(fam, ra.Port)
	if rc == nil {
		return
	}
	remote, local := addrPortOf(src), addrPortOf(dst)
	for _, l := range append([]*connListener{s.tcpLn}, s.tlsLns...) {
		if l == nil {
			continue
		}
		l.mu.Lock()
		for c := range l.conns {
			if addrPortOf(c.Conn.RemoteAddr()) == remote && addrPortOf(c.Conn.LocalAddr()) == local {
				rc.tcpOut.Store(c)
			}
		}
		l.mu.Unlock()
	}
}
