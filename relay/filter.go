package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// filterConn sits between a listening socket and pion. Its ReadFrom inspects each STUN
// request with pion/stun's decoder before pion sees it and enforces what pion does not:
// address-bound nonces (438), 401 rather than 400 for any credential problem, expiry only
// at Allocate, 437/441 on existing allocations, all-or-nothing CreatePermission with a
// 403, the permission cap, draining and the per-source limit on unauthenticated answers.
// Its WriteTo rewrites pion's challenges to carry our address-bound nonce.
//
// ChannelData and Send indications (the data path) pass straight through, undecoded.
//
// For UDP, inner is the listening socket; for TCP/TLS it is pion's STUNConn framing the
// stream, and tcp is the connection (see tcp.go). ReadFrom is called by one goroutine,
// pion's read loop for this socket; WriteTo by that loop and by allocation goroutines.
type filterConn struct {
	net.PacketConn
	s       *Server
	sock    *udpSocket // the listening socket's data path; nil for TCP
	tcp     *tcpConn   // nil for UDP
	local   net.Addr   // LocalAddr, with a 16-byte IP for UDP (see newUDPAddr)
	localAP netip.AddrPort

	// Owned by the ReadFrom goroutine.
	in, out stun.Message

	// pending is the error code for the challenge pion is about to send for one
	// transaction: we forward a stripped request to make pion issue a fresh nonce, and
	// WriteTo puts our code (401 or 438) on its answer.
	mu          sync.Mutex
	pendingTx   [stun.TransactionIDSize]byte
	pendingCode stun.ErrorCode // 0: none; guarded by mu

	doneOnce sync.Once

	fan fanBatch // UDP: the loop's writes to relay sockets, deferred (see sendbatch.go)
}

func newFilterConn(s *Server, inner net.PacketConn, tcp *tcpConn) (*filterConn, error) {
	c := &filterConn{PacketConn: inner, s: s, tcp: tcp, local: inner.LocalAddr()}
	c.localAP = addrPortOf(inner.LocalAddr())
	if u, ok := inner.(*net.UDPConn); ok {
		sock, err := newUDPSocket(u, listenerBatch, frameBuf)
		if err != nil {
			return nil, err
		}
		c.sock = sock
		sock.flush = func() { c.fan.flush(&s.stats) }
		c.local = newUDPAddr(u.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return c, nil
}

// isChannelData tells ChannelData from STUN by the first byte of a datagram: RFC 8656 §12,
// ChannelData starts with the bits 01 (channel numbers 0x4000-0x7FFF), STUN with 00.
func isChannelData(first byte) bool { return first&0xC0 == 0x40 }

// Close closes the socket (or the TCP framing); pion calls it from Server.Close.
func (c *filterConn) Close() error {
	if c.sock != nil {
		return c.sock.close()
	}
	return c.PacketConn.Close()
}

// udpAddrBox holds a *net.UDPAddr and its IP in one allocation.
type udpAddrBox struct {
	addr net.UDPAddr
	ip   [16]byte
}

// newUDPAddr returns ap as a *net.UDPAddr with a 16-byte IP, in one allocation. pion
// fingerprints addresses with IP.To16, which allocates for a 4-byte IP on every packet.
func newUDPAddr(ap netip.AddrPort) *net.UDPAddr {
	b := &udpAddrBox{ip: ap.Addr().As16()}
	b.addr.IP = b.ip[:]
	b.addr.Port = int(ap.Port())
	return &b.addr
}

// LocalAddr is the listening address (pion puts it in every 5-tuple).
func (c *filterConn) LocalAddr() net.Addr { return c.local }

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (c *filterConn) isTCP() bool { return c.tcp != nil }

// ReadFrom returns the next datagram pion should handle; datagrams the filter answered or
// dropped are not returned.
func (c *filterConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		var n int
		var addr net.Addr
		var err error
		if c.sock != nil {
			// A ChannelData datagram gets a reused address: pion/turn v5.1.1 only looks its
			// allocation up with it (handleChannelData) before reading the next datagram.
			// STUN requests get a fresh one: pion keeps it in the allocations it creates.
			c.fan.setReadBuf(p)
			n, addr, err = c.sock.readFrom(p, isChannelData)
		} else {
			n, addr, err = c.PacketConn.ReadFrom(p)
		}
		if err != nil {
			if c.tcp == nil && !errors.Is(err, net.ErrClosed) {
				// pion's loop would end for good on any error; a listening UDP socket only
				// fails for good when closed, so wait a moment (no spinning) and read on.
				time.Sleep(time.Millisecond)
				continue
			}
			if c.tcp == nil {
				c.doneOnce.Do(c.s.loops.Done)
			}
			return n, addr, err
		}
		if n > len(p) { // pion's TCP framing reports a frame larger than the buffer
			continue
		}
		if n, ok := c.admit(p, n, addr); ok {
			if c.sock != nil && n > 0 && !isChannelData(p[0]) {
				// pion writes a Send indication's data at once, not deferred (its payload
				// is a copy, not in our buffer): what waits goes first, so a client that
				// mixes both keeps its datagrams in order.
				c.fan.flush(&c.s.stats)
			}
			return n, addr, nil
		}
	}
}

// verdict is what admit decided for an authenticated request.
type verdict struct {
	code  stun.ErrorCode // 0: pass to pion
	chal  bool           // answer with a fresh challenge (code 401 or 438), else a signed error
	key   []byte         // long-term key that verified the request
	inner []byte         // pion's nonce, for the rewrite
	drop  stun.AttrType  // an attribute to leave out of what pion gets (0: none)
}

func (c *filterConn) admit(p []byte, n int, addr net.Addr) (int, bool) {
	b := p[:n]
	if !stun.IsMessage(b) {
		return n, true // ChannelData, or junk pion will drop
	}
	m := &c.in
	m.Raw = append(m.Raw[:0], b...)
	if err := m.Decode(); err != nil {
		return 0, false
	}
	switch m.Type.Class {
	case stun.ClassIndication:
		return n, true
	case stun.ClassRequest:
	default:
		return 0, false // responses have no business arriving at a server
	}
	src := addrPortOf(addr)
	if !m.Contains(stun.AttrMessageIntegrity) || m.Type.Method == stun.MethodBinding {
		// Unauthenticated: Binding, or the first request pion will challenge.
		if !c.s.limiter.allow(src.Addr()) {
			c.s.stats.rateLimited.Add(1)
			return 0, false
		}
		return n, true
	}
	v := c.s.authorize(m, src, c.localAP, c.isTCP())
	switch {
	case v.code == 0:
		if c.tcp != nil {
			c.tcp.authenticated()
		}
		return c.pass(p, v)
	case v.chal:
		if !c.s.limiter.allow(src.Addr()) {
			c.s.stats.rateLimited.Add(1)
			return 0, false
		}
		return c.challenge(p, v.code)
	default:
		c.respond(addr, v)
		return 0, false
	}
}

// pass hands pion the request with our nonce swapped for pion's own and re-signed with the
// key that verified it, so pion's nonce and integrity checks (which cannot be turned off)
// pass. Attributes after MESSAGE-INTEGRITY are dropped, as RFC 8489 §14.5 says to ignore
// them.
func (c *filterConn) pass(p []byte, v verdict) (int, bool) {
	m, out := &c.in, &c.out
	out.Reset()
	out.TransactionID = m.TransactionID
	out.Type = m.Type
	out.WriteHeader()
	for _, a := range m.Attributes {
		if a.Type == stun.AttrMessageIntegrity || a.Type == stun.AttrMessageIntegritySHA256 ||
			a.Type == stun.AttrFingerprint {
			break
		}
		if a.Type == stun.AttrNonce {
			out.Add(stun.AttrNonce, v.inner)
			continue
		}
		if v.drop != 0 && a.Type == v.drop {
			continue
		}
		out.Add(a.Type, a.Value)
	}
	if err := stun.MessageIntegrity(v.key).AddTo(out); err != nil || len(out.Raw) > len(p) {
		return 0, false
	}
	return copy(p, out.Raw), true
}

// challenge forwards an attribute-less copy of the request so pion answers it with a
// fresh nonce, and remembers which code that answer must carry.
func (c *filterConn) challenge(p []byte, code stun.ErrorCode) (int, bool) {
	m, out := &c.in, &c.out
	out.Reset()
	out.TransactionID = m.TransactionID
	out.Type = m.Type
	out.WriteHeader()
	c.mu.Lock()
	c.pendingTx, c.pendingCode = m.TransactionID, code
	c.mu.Unlock()
	return copy(p, out.Raw), true
}

// respond answers an authenticated request with a signed error (403, 437, 441, 508).
func (c *filterConn) respond(addr net.Addr, v verdict) {
	m := &c.in
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		v.code,
	}
	if c.s.cfg.Software != "" {
		setters = append(setters, stun.NewSoftware(c.s.cfg.Software))
	}
	setters = append(setters, stun.MessageIntegrity(v.key))
	resp, err := stun.Build(setters...)
	if err != nil {
		return
	}
	_, _ = c.PacketConn.WriteTo(resp.Raw, addr)
}

// WriteTo sends pion's output. Only error responses are decoded (to rewrite challenges);
// ChannelData and Data indications go straight out.
func (c *filterConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && c.sock != nil {
		// An allocation's loop writing to its client (see sendbatch.go): ChannelData waits
		// for the loop's next read; anything else it sends (a Data indication) goes after
		// what waits, so the client sees the peer's datagrams in order.
		if v, ok := c.s.clients.Load(ua); ok {
			if b := v.(*relayConn).out.Load(); b != nil && b.sock == c.sock {
				if len(p) > 0 && isChannelData(p[0]) {
					b.add(p)
					return len(p), nil
				}
				b.flush()
			}
		}
	}
	if stun.IsMessage(p) {
		var t stun.MessageType
		t.ReadValue(binary.BigEndian.Uint16(p[0:2]))
		switch {
		case t.Class == stun.ClassErrorResponse:
			return c.writeError(p, addr)
		case t == stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse):
			c.learnReservation(p)
		case t == stun.BindingSuccess && c.s.cfg.Software != "":
			return c.writeBinding(p, addr)
		}
	}
	return c.write(p, addr)
}

// write sends without the sockaddr allocation of UDPConn.WriteTo.
func (c *filterConn) write(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && c.sock != nil {
		return c.sock.writeTo(p, ua.AddrPort())
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *filterConn) writeError(p []byte, addr net.Addr) (int, error) {
	m := new(stun.Message)
	m.Raw = append(m.Raw, p...)
	var nonce stun.Nonce
	if m.Decode() != nil || nonce.GetFrom(m) != nil {
		return c.PacketConn.WriteTo(p, addr)
	}
	var ec stun.ErrorCodeAttribute
	_ = ec.GetFrom(m)
	code := ec.Code
	c.mu.Lock()
	if c.pendingCode != 0 && c.pendingTx == m.TransactionID {
		code = c.pendingCode
		c.pendingCode = 0
	}
	c.mu.Unlock()
	if ec.Code == stun.CodeStaleNonce && code == stun.CodeStaleNonce {
		c.s.stats.auth[authStaleNonce].Add(1) // pion's inner nonce aged out
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID),
		m.Type,
		code,
		stun.NewRealm(c.s.cfg.Realm),
		stun.Nonce(c.s.auth.seal(nonce, addrPortOf(addr), c.isTCP())),
	}
	if c.s.cfg.Software != "" {
		setters = append(setters, stun.NewSoftware(c.s.cfg.Software))
	}
	resp, err := stun.Build(setters...)
	if err != nil {
		return 0, err
	}
	if _, err := c.PacketConn.WriteTo(resp.Raw, addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *filterConn) writeBinding(p []byte, addr net.Addr) (int, error) {
	m := new(stun.Message)
	m.Raw = append(m.Raw, p...)
	var xma stun.XORMappedAddress
	if m.Decode() != nil || xma.GetFrom(m) != nil {
		return c.PacketConn.WriteTo(p, addr)
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess, &xma,
		stun.NewSoftware(c.s.cfg.Software), stun.Fingerprint)
	if err != nil {
		return 0, err
	}
	if _, err := c.PacketConn.WriteTo(resp.Raw, addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// authorize decides an authenticated request (one carrying MESSAGE-INTEGRITY).
func (s *Server) authorize(m *stun.Message, src, local netip.AddrPort, tcp bool) verdict {
	fail := func(r authReason, code stun.ErrorCode) verdict {
		s.stats.auth[r].Add(1)
		s.log.Debug("relay auth refused", "remote", src.String(), "reason", authReasonNames[r],
			"method", m.Type.Method.String())
		return verdict{code: code, chal: true}
	}
	now := time.Now()
	id, reason, code := s.auth.verify(m, src, tcp, now)
	if id.key == nil {
		return fail(reason, code)
	}
	key, user, expired := id.key, id.user, id.expired
	signed := func(code stun.ErrorCode) verdict { return verdict{code: code, key: key} }
	ak := allocKey{src: src, dst: local, tcp: tcp}

	switch m.Type.Method {
	case stun.MethodAllocate:
		if expired {
			return fail(authExpired, stun.CodeUnauthorized)
		}
		if s.draining.Load() && !s.hasAlloc(ak) {
			s.stats.refused[refuseDraining].Add(1)
			return signed(stun.CodeInsufficientCapacity)
		}
		if tok, err := m.Get(stun.AttrReservationToken); err == nil {
			// RFC 8656 §7.2 steps 5 and 6: a token excludes EVEN-PORT and
			// REQUESTED-ADDRESS-FAMILY (400); an unknown one gets 508.
			switch {
			case m.Contains(stun.AttrEvenPort), m.Contains(stun.AttrRequestedAddressFamily):
				return signed(stun.CodeBadRequest)
			case !s.resv.claim(tok, user, now):
				return signed(stun.CodeInsufficientCapacity)
			}
			s.auth.admit(src, tcp, id)
			return verdict{key: key, inner: id.inner, drop: stun.AttrReservationToken}
		}
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind:
		if v, refused := s.checkExisting(m, ak, user, expired, now); refused {
			v.key = key // signs the error response; unused by challenges
			return v
		}
	}
	s.auth.admit(src, tcp, id)
	return verdict{key: key, inner: id.inner}
}

// checkExisting applies the rules for requests on an existing allocation: Refresh,
// CreatePermission, ChannelBind. refused means the returned verdict stands.
func (s *Server) checkExisting(m *stun.Message, ak allocKey, user string, expired bool, now time.Time) (v verdict, refused bool) {
	var peers []netip.Addr
	if m.Type.Method != stun.MethodRefresh {
		err := m.ForEach(stun.AttrXORPeerAddress, func(m *stun.Message) error {
			var a stun.XORMappedAddress
			if err := a.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
				return err
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				return errors.New("bad peer address")
			}
			peers = append(peers, ip)
			return nil
		})
		if err != nil {
			// A peer we cannot read is a peer we cannot check: refuse the whole request.
			return verdict{code: stun.CodeBadRequest}, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.allocs[ak]
	switch {
	case info == nil:
		s.stats.auth[authNoAllocation].Add(1)
		return verdict{code: stun.CodeAllocMismatch}, true
	case info.user != user:
		s.stats.auth[authWrongUser].Add(1)
		return verdict{code: stun.CodeWrongCredentials}, true
	case expired && now.Sub(info.created) > s.cfg.MaxAllocationAge:
		s.stats.auth[authExpired].Add(1)
		return verdict{code: stun.CodeUnauthorized, chal: true}, true
	}
	fresh := 0
	for i, ip := range peers {
		if !s.policy.allowed(ip) {
			// One denied peer refuses the whole request, nothing installed (RFC 8656 §9.2).
			s.stats.permsRefused.Add(1)
			return verdict{code: stun.CodeForbidden}, true
		}
		key := ip.Unmap()
		if _, ok := info.perms[key]; ok {
			continue
		}
		dup := false
		for _, prev := range peers[:i] {
			dup = dup || prev.Unmap() == key
		}
		if !dup {
			fresh++
		}
	}
	if len(info.perms)+fresh > s.cfg.MaxPermissions {
		s.stats.permsRefused.Add(1)
		return verdict{code: stun.CodeInsufficientCapacity}, true
	}
	return verdict{}, false
}

// learnReservation records a RESERVATION-TOKEN pion hands out (see reservation.go). Only
// Allocate successes come here, once per allocation.
func (c *filterConn) learnReservation(p []byte) {
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if m.Decode() == nil {
		c.s.resv.learn(m, time.Now())
	}
}
