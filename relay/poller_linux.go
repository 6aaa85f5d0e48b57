//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// The peer → client direction for UDP clients, served by a few pollers instead of one
// goroutine per allocation. With pion's loop per relay socket, every datagram of a slow
// flow (a call's 50-150 packets/s) was a goroutine wake-up of its own: the netpoller's
// readiness, a park and an unpark through the scheduler, a recvmmsg that found the datagram
// and one more that found nothing. A poller holds many relay sockets in an epoll set of
// its own (level-triggered) and its goroutine parks on that set's descriptor in Go's
// netpoller; one wake-up then serves every socket that became readable meanwhile, one
// recvmmsg each, and everything bound for clients leaves as one sendmmsg per listening
// socket (runs of equal-sized datagrams to one client as one GSO message).
//
// pion keeps all control: a relay socket in a poller is read by nobody else, and pion's
// loop for it only waits for the socket to close (relayConn.ReadFrom). What pion's loop
// would have done with a datagram the poller does with the same state, the shadow tables
// the flow table keeps from pion's events (datapath.go): a live channel → ChannelData; a
// live permission → a Data indication; else dropped. TCP/TLS clients stay on pion's loop
// (a stream write may block; one slow client must not stall the poller).

// pollBatch is the datagrams one recvmmsg takes from a relay socket, and pollEvents the
// sockets one epoll_wait reports. A socket with more waiting stays readable and is served
// again in the next round, so a busy flow cannot starve the others.
const (
	pollBatch  = 8
	pollEvents = 128
	// pollFlushBytes bounds what a round holds before it is sent: 256 KiB, a few hundred
	// datagrams, well inside a listening socket's send buffer.
	pollFlushBytes = 256 << 10
	// mmsgMax is the messages per sendmmsg (the kernel caps vlen at 1,024).
	mmsgMax = 64
	// A GSO message stays under the kernel's limits: 64 segments (UDP_MAX_SEGMENTS on older
	// kernels) and an IP datagram's 64 KiB with headers.
	gsoMaxSegs  = 64
	gsoMaxBytes = 65000
)

// poller serves the peer → client direction of the relay sockets added to it.
type poller struct {
	// Static after newPoller.
	s    *Server
	epfd int
	file *os.File // epfd, in Go's netpoller; closing it ends run
	stop atomic.Bool

	// lns are the listening sockets the poller reads (listenerToken); set before run.
	lns []*filterConn

	// Owned by run's goroutine.
	events    []unix.EpollEvent
	hdrs      []mmsghdr
	iovs      []unix.Iovec
	names     []unix.RawSockaddrInet6
	bufs      [][]byte
	out       []*mmsgBatch // one per listening socket, in first-use order
	di        stun.Message // Data indications
	nFrom     uint64
	bytesFrom uint64
	waitFn    func(fd uintptr) bool
	full      bool // a read this round filled its batch: the socket may still be readable
	err       error
}

// newPoller makes a poller; run serves it until close.
func newPoller(s *Server) (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	p := &poller{s: s, epfd: fd, file: os.NewFile(uintptr(fd), "relay-epoll")}
	p.events = make([]unix.EpollEvent, pollEvents)
	p.hdrs = make([]mmsghdr, pollBatch)
	p.iovs = make([]unix.Iovec, pollBatch)
	p.names = make([]unix.RawSockaddrInet6, pollBatch)
	p.bufs = make([][]byte, pollBatch)
	all := make([]byte, pollBatch*maxFrame)
	for i := range pollBatch {
		p.bufs[i] = all[i*maxFrame : (i+1)*maxFrame : (i+1)*maxFrame]
		p.iovs[i].Base = &p.bufs[i][0]
		p.iovs[i].SetLen(maxFrame)
		p.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&p.names[i]))
		p.hdrs[i].hdr.Iov = &p.iovs[i]
		p.hdrs[i].hdr.SetIovlen(1)
	}
	p.waitFn = p.round
	return p, nil
}

// pollToken names a relay socket in the epoll set: its port, and bit 16 for IPv6. The
// socket is found again through relays.lookup, lock-free.
func pollToken(rc *relayConn) int32 {
	t := int32(rc.port)
	if rc.fam == &rc.r.v6 {
		t |= 1 << 16
	}
	return t
}

// listenerToken names the poller's listening socket i: bit 17 set.
func listenerToken(i int) int32 { return 1<<17 | int32(i) }

// addListener hands the listening socket's reads to the poller: ChannelData is relayed
// here, STUN goes to pion's loop through the socket's inbox. Called by Listen before pion
// reads.
func (p *poller) addListener(c *filterConn) error {
	s := c.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: listenerToken(len(p.lns))}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev); err != nil {
		return fmt.Errorf("relay: epoll add listener: %w", err)
	}
	s.epfd, s.inSet = p.epfd, true
	c.poller, c.inbox = p, newInbox()
	p.lns = append(p.lns, c)
	return nil
}

// add hands rc's reads to the poller, its client being dst on the listening socket sock.
// False if rc is closed: nothing was changed.
func (p *poller) add(rc *relayConn, sock *udpSocket, dst netip.AddrPort, key *net.UDPAddr) bool {
	rc.polled.Store(&pollClient{p: p, sock: sock, dst: dst, key: key})
	s := rc.sock
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		rc.polled.Store(nil)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: pollToken(rc)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev); err != nil {
		rc.polled.Store(nil)
		return false
	}
	s.epfd, s.inSet = p.epfd, true
	return true
}

// run serves the poller until close. Owned by the Server (Server.pollWG).
func (p *poller) run() {
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.s.log.Error("relay poller stopped", "err", err)
		return
	}
	for {
		err := rc.Read(p.waitFn)
		if err == nil && p.err != nil {
			err = p.err
		}
		if err != nil {
			if !p.stop.Load() {
				p.s.log.Error("relay poller stopped", "err", err)
			}
			return
		}
	}
}

// close ends run; sockets still in the set are left to their own Close.
func (p *poller) close() error {
	p.stop.Store(true)
	return p.file.Close()
}

// round serves every readable socket, as long as any is, then sends what it made and
// returns false to park until the set is readable again (Go's netpoller, edge-triggered
// there: every datagram arriving on a socket of the set wakes it, also while the round
// runs, so nothing is missed; only a socket left readable by a full batch needs another
// look before parking).
func (p *poller) round(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&p.events[0])),
			uintptr(len(p.events)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			p.err = os.NewSyscallError("epoll_pwait", e)
			return true
		}
		if n == 0 {
			p.flush()
			return false
		}
		p.full = false
		for i := range int(n) {
			p.serve(p.events[i].Fd)
		}
		p.flush()
		if int(n) < len(p.events) && !p.full {
			// Every socket reported was drained: what arrived meanwhile has woken the set
			// again in the netpoller, so the empty epoll_wait that would end the round is
			// skipped (a system call per wake-up).
			return false
		}
	}
}

// recv reads one batch from s into the poller's buffers; 0 when there is none.
func (p *poller) recv(s *udpSocket) int {
	for i := range p.hdrs {
		p.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		p.hdrs[i].hdr.Flags = 0
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, s.fd, uintptr(unsafe.Pointer(&p.hdrs[0])),
		uintptr(len(p.hdrs)), 0, 0, 0)
	s.mu.RUnlock()
	if e != 0 {
		p.full = true // EINTR (or EAGAIN): look again before parking
		return 0
	}
	if int(r) == len(p.hdrs) {
		p.full = true // more may wait
	}
	return int(r)
}

// datagram returns the poller's datagram i and its source; false to skip it (truncated,
// or no usable source address).
func (p *poller) datagram(i int) ([]byte, netip.AddrPort, bool) {
	h := &p.hdrs[i]
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, netip.AddrPort{}, false
	}
	from, ok := decodeSockaddr(&p.names[i], h.hdr.Namelen)
	return p.bufs[i][:h.n], from, ok
}

// serveListener reads one batch from a listening socket: ChannelData is relayed (in the
// listener's fan batch, sent at the end of the round), STUN is queued for pion's loop.
func (p *poller) serveListener(c *filterConn) {
	n := p.recv(c.sock)
	for i := range n {
		b, src, ok := p.datagram(i)
		if !ok || len(b) == 0 {
			continue
		}
		if isChannelData(b[0]) {
			c.serveChannelData(b, src)
			if len(c.fan.buf) >= pollFlushBytes {
				c.fan.flush(&p.s.stats)
			}
			continue
		}
		// A Send indication pion relays at once: what waits goes first, so a client that
		// mixes both keeps its datagrams in order.
		c.fan.flush(&p.s.stats)
		_ = c.inbox.put(b, src) // full: dropped, as by a full socket buffer
	}
}

// serve reads one batch from the relay socket (or listening socket) named tok and relays
// it.
func (p *poller) serve(tok int32) {
	if tok&(1<<17) != 0 {
		if i := int(tok &^ (1 << 17)); i < len(p.lns) {
			p.serveListener(p.lns[i])
		}
		return
	}
	fam := &p.s.relays.v4
	if tok&(1<<16) != 0 {
		fam = &p.s.relays.v6
	}
	rc := p.s.relays.lookup(fam, int(uint16(tok)))
	if rc == nil {
		return
	}
	cl := rc.polled.Load()
	if cl == nil || cl.p != p {
		return // a socket that took a closed one's port after this round's epoll_wait
	}
	n := p.recv(rc.sock)
	t := rc.chans.Load()
	var out *mmsgBatch
	for i := range n {
		b, from, ok := p.datagram(i)
		if !ok {
			continue
		}
		p.nFrom++
		p.bytesFrom += uint64(len(b))
		from = rc.unhairpin(from)
		if t == nil {
			continue
		}
		if out == nil {
			out = p.batch(cl.sock)
		}
		if en, ok := t.byPeer[from]; ok {
			if en.live { // else the permission ended: nothing is relayed (RFC 8656 §9)
				out.addChannelData(cl.dst, en.ch, b)
			}
			continue
		}
		if _, ok := t.perms[from.Addr()]; ok {
			// A peer with a permission but no channel: a Data indication, as pion sends.
			if err := p.di.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
				xorPeerAddress(from), stun.RawAttribute{Type: stun.AttrData, Value: b}); err == nil {
				out.add(cl.dst, p.di.Raw)
			}
		}
	}
	if out != nil && len(out.buf) >= pollFlushBytes {
		p.flush()
	}
}

// batch returns the round's batch for the listening socket sock.
func (p *poller) batch(sock *udpSocket) *mmsgBatch {
	for _, b := range p.out {
		if b.sock == sock {
			return b
		}
	}
	b := &mmsgBatch{sock: sock}
	p.out = append(p.out, b)
	return b
}

// flush sends the round's datagrams and publishes its counts.
func (p *poller) flush() {
	for _, c := range p.lns {
		c.fan.flush(&p.s.stats)
	}
	for _, b := range p.out {
		b.flush()
	}
	if p.nFrom > 0 {
		st := &p.s.stats
		st.pktsFrom.Add(p.nFrom)
		st.bytesFrom.Add(p.bytesFrom)
		p.nFrom, p.bytesFrom = 0, 0
	}
}

// mmsgBatch is a round's datagrams for one listening socket, sent with sendmmsg: each
// message one datagram, or a run of equal-sized datagrams to one client with UDP_SEGMENT.
// Owned by the poller's goroutine.
type mmsgBatch struct {
	sock *udpSocket
	buf  []byte
	msgs []mmsgMsg

	// sendmmsg's arguments, rebuilt on each flush (buf may have moved).
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []rawSockaddr
	ctls  []gsoControl
}

// mmsgMsg is one message: n datagrams of seg bytes (the last may be shorter) at off.
type mmsgMsg struct {
	dst         netip.AddrPort
	off, len    int
	seg, n      int
	short, open bool // short: the last datagram is shorter, closing the run; open: more may join
}

// add appends one datagram for dst, joining the previous message when it is a run to the
// same client that a GSO send can extend.
func (b *mmsgBatch) add(dst netip.AddrPort, p []byte) {
	off := len(b.buf)
	b.buf = append(b.buf, p...)
	b.join(dst, off, len(p))
}

// addChannelData appends p as ChannelData on channel ch for dst.
func (b *mmsgBatch) addChannelData(dst netip.AddrPort, ch uint16, p []byte) {
	off := len(b.buf)
	b.buf = appendChannelData(b.buf, ch, p)
	b.join(dst, off, len(b.buf)-off)
}

func (b *mmsgBatch) join(dst netip.AddrPort, off, n int) {
	if k := len(b.msgs) - 1; k >= 0 && b.sock.gso && !gsoOff.Load() {
		m := &b.msgs[k]
		if m.dst == dst && !m.short && m.off+m.len == off && n <= m.seg && m.len+n <= gsoMaxBytes && m.n < gsoMaxSegs {
			m.len += n
			m.n++
			m.short = n < m.seg
			return
		}
	}
	b.msgs = append(b.msgs, mmsgMsg{dst: dst, off: off, len: n, seg: n, n: 1})
}

// flush sends the batch, mmsgMax messages per sendmmsg. A message the kernel refuses goes
// again through sendSegments, which falls back datagram by datagram and waits for room in
// a full buffer, as the per-allocation path does.
func (b *mmsgBatch) flush() {
	if len(b.msgs) == 0 {
		return
	}
	for start := 0; start < len(b.msgs); {
		end := min(start+mmsgMax, len(b.msgs))
		start += b.send(b.msgs[start:end])
	}
	b.buf, b.msgs = b.buf[:0], b.msgs[:0]
}

// send makes one sendmmsg of msgs and returns how many it dealt with (at least one).
func (b *mmsgBatch) send(msgs []mmsgMsg) int {
	k := len(msgs)
	if cap(b.hdrs) < k {
		b.hdrs = make([]mmsghdr, mmsgMax)
		b.iovs = make([]unix.Iovec, mmsgMax)
		b.names = make([]rawSockaddr, mmsgMax)
		b.ctls = make([]gsoControl, mmsgMax)
	}
	s := b.sock
	for i := range msgs {
		m := &msgs[i]
		h := &b.hdrs[i]
		*h = mmsghdr{}
		sa, salen, ok := s.fillSockaddr(m.dst, &b.names[i])
		if !ok { // a case left to the standard library: on its own, after those before it
			if i == 0 {
				return b.fallback(m)
			}
			k = i
			break
		}
		b.iovs[i].Base = &b.buf[m.off]
		b.iovs[i].SetLen(m.len)
		h.hdr.Name = (*byte)(sa)
		h.hdr.Namelen = salen
		h.hdr.Iov = &b.iovs[i]
		h.hdr.SetIovlen(1)
		if m.n > 1 {
			c := &b.ctls[i]
			c.hdr.Level = unix.SOL_UDP
			c.hdr.Type = unix.UDP_SEGMENT
			c.hdr.SetLen(unix.CmsgLen(2))
			c.seg = uint16(m.seg)
			h.hdr.Control = (*byte)(unsafe.Pointer(c))
			h.hdr.SetControllen(unix.CmsgSpace(2))
		}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return len(msgs)
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, s.fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(k), 0, 0, 0)
	s.mu.RUnlock()
	if e == 0 && int(r) == k {
		return k
	}
	if e == 0 && r > 0 {
		return int(r) // the next call starts at the one that failed, and reports its error
	}
	switch e {
	case syscall.EIO:
		gsoOff.Store(true)
	case syscall.EAGAIN, syscall.EINTR, syscall.ENOBUFS, syscall.EINVAL, syscall.EMSGSIZE:
	default:
		if msgs[0].n == 1 {
			return 1 // this datagram is refused (as pion's loop does: not retried)
		}
	}
	return b.fallback(&msgs[0])
}

// fallback sends m on its own, through sendSegments, and reports one message dealt with.
func (b *mmsgBatch) fallback(m *mmsgMsg) int {
	_, _, _ = b.sock.sendSegments(b.buf[m.off:m.off+m.len], m.seg, m.dst)
	return 1
}

// pollers are a Server's pollers; a relay socket goes to one by its port.
type pollers struct {
	ps []*poller
	wg sync.WaitGroup
}

// start makes a poller per listening socket and starts them. Each reads its listening
// socket and the relay sockets of the clients that came in on it, so one wake-up serves
// both directions of those clients and a round's datagrams to clients leave in one
// sendmmsg.
func (x *pollers) start(s *Server, lns []*filterConn) error {
	for _, c := range lns {
		p, err := newPoller(s)
		if err == nil {
			err = p.addListener(c)
		}
		if err != nil {
			if p != nil {
				_ = p.close()
			}
			for _, c := range lns {
				c.poller, c.inbox = nil, nil
			}
			return errors.Join(err, x.close())
		}
		x.ps = append(x.ps, p)
	}
	for _, p := range x.ps {
		x.wg.Go(p.run)
	}
	return nil
}

// close stops the pollers and waits for them.
func (x *pollers) close() error {
	var err error
	for _, p := range x.ps {
		err = errors.Join(err, p.close())
	}
	x.wg.Wait()
	return err
}
