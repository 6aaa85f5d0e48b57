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
	// lastTx and lastKey are the last request handed to pion and the key that verified it,
	// so an error response pion sends for it without MESSAGE-INTEGRITY gets one (writeError).
	lastTx  [stun.TransactionIDSize]byte // guarded by mu
	lastKey []byte                       // guarded by mu

	doneOnce sync.Once

	fan fanBatch // UDP: the loop's writes to relay sockets, deferred (see sendbatch.go)
	// poller, for a UDP listening socket on Linux, reads the socket, relays its ChannelData
	// and owns fan; pion's loop then takes the STUN datagrams from inbox. Set by Listen
	// before pion starts.
	poller *poller
	inbox  *inbox
}

func newFilterConn(s *Server, inner net.PacketConn, tcp *tcpConn) (*filterConn, error) {
	c := &filterConn{PacketConn: inner, s: s, tcp: tcp, local: inner.LocalAddr()}
	c.localAP = addrPortOf(inner.LocalAddr())
	if u, ok := inner.(*net.UDPConn); ok {
		sock, err := newUDPSocket(u, listenerBatch, maxFrame)
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
	if c.inbox != nil {
		c.inbox.close()
	}
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

// sendMain sends a Binding answer from this listener (bindingResponder).
func (c *filterConn) sendMain(p []byte, dst netip.AddrPort) { _, _ = c.sock.writeTo(p, dst) }

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
			// ChannelData is relayed here and never reaches pion (datapath.go). STUN gets a
			// fresh address: pion keeps it in the allocations it creates.
			var b []byte
			var src netip.AddrPort
			if c.inbox != nil {
				b, src, err = c.inbox.take()
			} else {
				b, src, err = c.sock.readView()
			}
			if err == nil {
				if len(b) > 0 && isChannelData(b[0]) {
					c.serveChannelData(b, src)
					continue
				}
				if len(b) > len(p) {
					continue
				}
				n, addr = copy(p, b), newUDPAddr(src)
			}
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
			if c.sock != nil && c.inbox == nil && n > 0 && !isChannelData(p[0]) {
				// (With an inbox the poller did this before queueing the datagram.)
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
	// Rewrites of what pion gets (see pass).
	dropToken, dropDF bool
	lifetime          uint32 // seconds; 0: LIFETIME unchanged
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
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(m) != nil {
		return 0, false // RFC 8489 §7.3: a wrong FINGERPRINT is not a STUN message; discard
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
		if m.Type.Method == stun.MethodBinding && c.sock != nil {
			c.s.binding.answer(m, src, 0, 0, c.sendMain) // RFC 5780 (binding.go)
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
		switch {
		case a.Type == stun.AttrReservationToken && v.dropToken, a.Type == stun.AttrDontFragment && v.dropDF:
			continue
		case a.Type == stun.AttrLifetime && v.lifetime != 0:
			out.Add(stun.AttrLifetime, binary.BigEndian.AppendUint32(nil, v.lifetime))
			continue
		}
		out.Add(a.Type, a.Value)
	}
	if err := stun.MessageIntegrity(v.key).AddTo(out); err != nil || len(out.Raw) > len(p) {
		return 0, false
	}
	c.mu.Lock()
	c.lastTx, c.lastKey = m.TransactionID, v.key
	c.mu.Unlock()
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
	if m.Decode() != nil {
		return c.PacketConn.WriteTo(p, addr)
	}
	if nonce.GetFrom(m) != nil {
		return c.writeSignedError(m, p, addr)
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

// writeSignedError sends an error response pion built for a request the filter passed: with
// the code's reason phrase (pion leaves it empty) and, for an authenticated request,
// MESSAGE-INTEGRITY (RFC 8489 §9.2.4; pion signs only some).
func (c *filterConn) writeSignedError(m *stun.Message, p []byte, addr net.Addr) (int, error) {
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return c.PacketConn.WriteTo(p, addr)
	}
	var key []byte
	c.mu.Lock()
	if c.lastTx == m.TransactionID {
		key = c.lastKey
	}
	c.mu.Unlock()
	if len(ec.Reason) > 0 && (key == nil || m.Contains(stun.AttrMessageIntegrity)) {
		return c.PacketConn.WriteTo(p, addr)
	}
	out := new(stun.Message)
	out.TransactionID = m.TransactionID
	out.Type = m.Type
	out.WriteHeader()
	if len(ec.Reason) == 0 {
		ec.Reason = reasonPhrase(ec.Code)
	}
	if err := ec.AddTo(out); err != nil {
		return 0, err
	}
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrErrorCode, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrFingerprint,
			stun.AttrSoftware:
			continue
		}
		out.Add(a.Type, a.Value)
	}
	if c.s.cfg.Software != "" {
		if err := stun.NewSoftware(c.s.cfg.Software).AddTo(out); err != nil {
			return 0, err
		}
	}
	if key != nil {
		if err := stun.MessageIntegrity(key).AddTo(out); err != nil {
			return 0, err
		}
	}
	if _, err := c.PacketConn.WriteTo(out.Raw, addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// reasonPhrase is RFC 8489/8656's phrase for code, or a generic one.
func reasonPhrase(code stun.ErrorCode) []byte {
	var m stun.Message
	if code.AddTo(&m) == nil {
		var ec stun.ErrorCodeAttribute
		if ec.GetFrom(&m) == nil {
			return ec.Reason
		}
	}
	switch code {
	case 442:
		return []byte("Unsupported Transport Protocol")
	case 437:
		return []byte("Allocation Mismatch")
	}
	return []byte("Error")
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
	now := s.clock()
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
		v := s.checkAllocate(m, user, tcp, now)
		if v.code != 0 {
			return signed(v.code)
		}
		s.auth.admit(src, tcp, id)
		v.key, v.inner = key, id.inner
		return v
	case stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind, stun.MethodConnect:
		if v, refused := s.checkExisting(m, ak, user, expired, now); refused {
			v.key = key // signs the error response; unused by challenges
			return v
		}
	}
	s.auth.admit(src, tcp, id)
	v := verdict{key: key, inner: id.inner}
	if m.Type.Method == stun.MethodRefresh {
		// pion gives a LIFETIME of an hour or more the default 10 minutes; RFC 8656 §7.3
		// says min(requested, maximum).
		if lt, ok := lifetimeOf(m); ok && lt > maxLifetime {
			v.lifetime = maxLifetime
		}
	}
	return v
}

// checkExisting applies the rules for requests on an existing allocation: Refresh,
// CreatePermission, ChannelBind. refused means the returned verdict stands.
func (s *Server) checkExisting(m *stun.Message, ak allocKey, user string, expired bool, now time.Time) (v verdict, refused bool) {
	if m.Type.Method == stun.MethodChannelBind {
		// Channel numbers 0x4000-0x7FFF (see maxChannel); pion accepts any number.
		ch, err := m.Get(stun.AttrChannelNumber)
		if err != nil || len(ch) != 4 {
			return verdict{code: stun.CodeBadRequest}, true
		}
		if n := binary.BigEndian.Uint16(ch); n < minChannel || n > maxChannel {
			return verdict{code: stun.CodeBadRequest}, true
		}
	}
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

// Channel numbers: RFC 8656 §12 narrowed them to 0x4000-0x4FFF, but RFC 5766 allowed up to
// 0x7FFF and coturn's server and clients (turnutils_uclient picks any of them) still use
// the whole range, so that is what is accepted; 0x3FFF, 0x8000 and above are refused.
// Allocation lifetimes (§7.2: the default lifetime is
// also the least an Allocate gets; pion takes a LIFETIME of an hour or more as a request
// for its default, so the maximum stays just under it).
const (
	minChannel      = 0x4000
	maxChannel      = 0x7FFF
	defaultLifetime = 600
	maxLifetime     = 3599
)

// Address families in REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18).
const (
	familyIPv4 = 0x01
	familyIPv6 = 0x02
)

func lifetimeOf(m *stun.Message) (uint32, bool) {
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// attrAdditionalAddressFamily is ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.13), which
// pion/stun does not name.
const attrAdditionalAddressFamily stun.AttrType = 0x8000

// checkAllocate applies RFC 8656 §7.2 where pion answers differently: 442 for a transport
// other than UDP or TCP (TCP over UDP: 400, RFC 6062 §5.1), 440 for a family the server does not
// relay (pion said 508), 400 for ADDITIONAL-ADDRESS-FAMILY=IPv4 or together with
// REQUESTED-ADDRESS-FAMILY (pion ignored it), the LIFETIME floor and ceiling, a
// RESERVATION-TOKEN from any socket (reservation.go) and DONT-FRAGMENT (pion refused it
// with 420; the relay socket gets IP_PMTUDISC_DO). It returns the rewrites pass makes.
func (s *Server) checkAllocate(m *stun.Message, user string, tcp bool, now time.Time) verdict {
	var v verdict
	tr, err := m.Get(stun.AttrRequestedTransport)
	switch {
	case err != nil || len(tr) != 4:
		return verdict{code: stun.CodeBadRequest}
	case tr[0] == 6 && !tcp: // RFC 6062 §5.1: TCP relays over TCP or TLS only
		return verdict{code: stun.CodeBadRequest}
	case tr[0] == 6 && (m.Contains(stun.AttrEvenPort) || m.Contains(stun.AttrReservationToken) || m.Contains(stun.AttrDontFragment)):
		return verdict{code: stun.CodeBadRequest} // ibid.: port pairs and DF are UDP things
	case tr[0] != 17 && tr[0] != 6:
		return verdict{code: stun.CodeUnsupportedTransProto}
	}
	family := byte(familyIPv4) // RFC 8656 §7.2: IPv4 unless asked, whatever the client's own family
	raf, rafErr := m.Get(stun.AttrRequestedAddressFamily)
	aaf, aafErr := m.Get(attrAdditionalAddressFamily)
	switch {
	case rafErr == nil && aafErr == nil:
		return verdict{code: stun.CodeBadRequest}
	case aafErr == nil && (len(aaf) != 4 || aaf[0] != familyIPv6):
		return verdict{code: stun.CodeBadRequest}
	case rafErr == nil && len(raf) != 4:
		return verdict{code: stun.CodeBadRequest}
	case rafErr == nil && raf[0] != familyIPv4 && raf[0] != familyIPv6:
		return verdict{code: stun.CodeAddrFamilyNotSupported}
	case rafErr == nil:
		family = raf[0]
	}
	if s.relays != nil && !s.relays.familyEnabled(family == familyIPv6) {
		return verdict{code: stun.CodeAddrFamilyNotSupported}
	}
	if lt, ok := lifetimeOf(m); ok {
		v.lifetime = min(max(lt, defaultLifetime), maxLifetime)
	}
	port := 0
	if tok, err := m.Get(stun.AttrReservationToken); err == nil {
		// Steps 5 and 6: a token excludes EVEN-PORT and REQUESTED-ADDRESS-FAMILY (400); an
		// unknown one gets 508.
		if m.Contains(stun.AttrEvenPort) || rafErr == nil {
			return verdict{code: stun.CodeBadRequest}
		}
		p, ok := s.resv.claim(tok, now)
		if !ok {
			return verdict{code: stun.CodeInsufficientCapacity}
		}
		port, v.dropToken = p, true
	}
	v.dropDF = dontFragmentSupported && m.Contains(stun.AttrDontFragment)
	if port != 0 || v.dropDF {
		s.resv.setAside(user, pendingAlloc{port: port, df: v.dropDF}, now)
	}
	return v
}
