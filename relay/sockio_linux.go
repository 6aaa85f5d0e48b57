//go:build linux

package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSocket is the data path of one UDP socket (a listening socket or a relay socket):
// batched reads with recvmmsg, sends with sendto or, for runs of datagrams to one destination,
// sendmsg with UDP GSO (sendSegments); all as raw system calls.
//
// Why raw: a relayed packet costs one sendto and a share of a recvmmsg, and on loopback the
// sendto alone is most of the server's CPU. Go's syscall.Syscall brackets every call with
// entersyscall/exitsyscall, which releases the P; the runtime's monitor thread then sees
// Ps "in a system call" at every tick and, on a busy machine, hands them to other threads
// (futex wake-ups, thread switches) and keeps polling at its fastest rate. These sockets
// are non-blocking, so neither call ever blocks: holding the P for the few microseconds
// they take is what a C server does. A read that finds nothing still parks the goroutine
// in the netpoller (RawConn.Read), and a send that finds the buffer full (EAGAIN) falls
// back to net.UDPConn, which waits for room.
//
// Reads: one goroutine only (pion's read loop for the socket), up to len(hdrs) datagrams
// per call handed out one at a time; the first lands straight in the caller's buffer.
// Sends: any goroutine; mu keeps Close from closing the descriptor (which the kernel could
// then hand to another socket) under a send.
type udpSocket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	fd    uintptr // the socket's descriptor, valid until close
	inet6 bool    // AF_INET6 socket (dual-stack or IPv6); else AF_INET
	gso   bool    // the kernel takes UDP_SEGMENT on this socket (see sendSegments)

	mu     sync.RWMutex
	closed bool // guarded by mu
	epfd   int  // the poller's epoll set holding the socket, if inSet; guarded by mu
	inSet  bool // guarded by mu

	// Owned by the reading goroutine.
	size   int // datagrams per recvmmsg
	bufLen int // bytes per datagram buffer
	hdrs   []mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	bufs   [][]byte                // one buffer per datagram of a batch
	addr   udpAddrBox              // the address reusedAddr hands out
	n      int                     // datagrams in the current batch
	next   int                     // next one to hand out
	errno  syscall.Errno           // result of the last recvmmsg
	recvFn func(fd uintptr) bool   // s.recv, bound once so reads do not allocate
	// flush, when set, runs on the reading goroutine before each recvmmsg: what the owner
	// deferred while handling the last batch goes out before it takes a new one or waits.
	flush func()
}

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it like C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// newUDPSocket prepares c for batches of size datagrams of up to bufLen bytes.
func newUDPSocket(c *net.UDPConn, size, bufLen int) (*udpSocket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &udpSocket{conn: c, rc: rc}
	var domain int
	var serr error
	err = rc.Control(func(fd uintptr) {
		s.fd = fd
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		_, gerr := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		s.gso = gerr == nil
	})
	if err = errors.Join(err, serr); err != nil {
		return nil, err
	}
	s.inet6 = domain == unix.AF_INET6
	s.size, s.bufLen = size, bufLen
	s.recvFn = s.recv
	return s, nil
}

// allocBufs makes the read buffers, on the first read: a relay socket served by a poller
// never reads on its own, and its size*bufLen bytes would be held for nothing.
func (s *udpSocket) allocBufs() {
	size, bufLen := s.size, s.bufLen
	s.hdrs = make([]mmsghdr, size)
	s.iovs = make([]unix.Iovec, size)
	s.names = make([]unix.RawSockaddrInet6, size)
	s.bufs = make([][]byte, size)
	all := make([]byte, size*bufLen)
	for i := range size {
		s.bufs[i] = all[i*bufLen : (i+1)*bufLen : (i+1)*bufLen]
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(bufLen)
		s.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
}

// recv is one recvmmsg; false asks RawConn.Read to wait for the socket to be readable.
func (s *udpSocket) recv(fd uintptr) bool {
	for i := range s.hdrs {
		s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		s.hdrs[i].hdr.Flags = 0
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
		uintptr(len(s.hdrs)), 0, 0, 0)
	for e == syscall.EINTR {
		r, _, e = syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
			uintptr(len(s.hdrs)), 0, 0, 0)
	}
	if e == syscall.EAGAIN {
		return false
	}
	s.n, s.errno = int(r), e
	return true
}

// readView returns the next datagram as a view into the socket's own buffer, valid until
// the next readView or readFrom. Truncated datagrams (larger than the buffers) are skipped.
func (s *udpSocket) readView() ([]byte, netip.AddrPort, error) {
	for {
		for s.next < s.n {
			i := s.next
			s.next++
			h := &s.hdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				continue
			}
			ap, ok := s.sockaddr(i)
			if !ok {
				continue
			}
			return s.bufs[i][:h.n], ap, nil
		}
		s.n, s.next = 0, 0
		if s.flush != nil {
			s.flush()
		}
		if s.hdrs == nil {
			s.allocBufs()
		}
		err := s.rc.Read(s.recvFn)
		if err == nil && s.errno != 0 {
			s.n, err = 0, os.NewSyscallError("recvmmsg", s.errno)
		}
		if err != nil {
			return nil, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Source: s.conn.LocalAddr(), Err: err}
		}
	}
}

// readFrom returns the next datagram that fits in p, copied there. With reuseAddr the
// returned address belongs to the socket and is overwritten by a later read: only for
// callers that do not keep it past their next read.
func (s *udpSocket) readFrom(p []byte, reuseAddr func(first byte) bool) (int, net.Addr, error) {
	if len(p) == 0 {
		return 0, nil, io.ErrShortBuffer
	}
	for {
		b, ap, err := s.readView()
		if err != nil {
			return 0, nil, err
		}
		if len(b) > len(p) {
			continue
		}
		n := copy(p, b)
		if n > 0 && reuseAddr != nil && reuseAddr(p[0]) {
			return n, s.reusedAddr(ap), nil
		}
		return n, newUDPAddr(ap), nil
	}
}

// reusedAddr returns ap in the socket's own address box, overwritten by the next call.
func (s *udpSocket) reusedAddr(ap netip.AddrPort) *net.UDPAddr {
	b := &s.addr
	b.ip = ap.Addr().As16()
	b.addr = net.UDPAddr{IP: b.ip[:], Port: int(ap.Port())}
	return &b.addr
}

// sockaddr decodes datagram i's source address. The kernel reports how much of the name
// it wrote: a shorter name than its family needs (or none) would leave bytes of an earlier
// datagram's address in place, so such a datagram is skipped rather than attributed to
// whoever sent that one.
func (s *udpSocket) sockaddr(i int) (netip.AddrPort, bool) {
	return decodeSockaddr(&s.names[i], s.hdrs[i].hdr.Namelen)
}

// decodeSockaddr decodes a source address recvmmsg wrote, namelen bytes of it (see
// sockaddr).
func decodeSockaddr(sa *unix.RawSockaddrInet6, namelen uint32) (netip.AddrPort, bool) {
	switch {
	case sa.Family == unix.AF_INET && namelen >= unix.SizeofSockaddrInet4:
	case sa.Family == unix.AF_INET6 && namelen >= unix.SizeofSockaddrInet6:
	default:
		return netip.AddrPort{}, false
	}
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(port[0])<<8|uint16(port[1])), true
	case unix.AF_INET6:
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := netip.AddrFrom16(sa.Addr).Unmap()
		return netip.AddrPortFrom(ip, uint16(port[0])<<8|uint16(port[1])), true
	}
	return netip.AddrPort{}, false
}

// rawSockaddr is room for either family's socket address, on the caller's stack.
type rawSockaddr struct {
	sa4 unix.RawSockaddrInet4
	sa6 unix.RawSockaddrInet6
}

// fillSockaddr encodes ap for this socket in rsa; false for the cases left to the standard
// library (a zone, or an IPv6 address on an IPv4 socket).
func (s *udpSocket) fillSockaddr(ap netip.AddrPort, rsa *rawSockaddr) (unsafe.Pointer, uint32, bool) {
	ip := ap.Addr()
	if ip.Zone() != "" || (!s.inet6 && !ip.Unmap().Is4()) {
		return nil, 0, false
	}
	if s.inet6 {
		rsa.sa6.Family = unix.AF_INET6
		rsa.sa6.Addr = ip.As16() // an IPv4 address comes out IPv4-mapped, as a dual-stack socket wants
		port := (*[2]byte)(unsafe.Pointer(&rsa.sa6.Port))
		port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
		return unsafe.Pointer(&rsa.sa6), unix.SizeofSockaddrInet6, true
	}
	rsa.sa4.Family = unix.AF_INET
	rsa.sa4.Addr = ip.Unmap().As4()
	port := (*[2]byte)(unsafe.Pointer(&rsa.sa4.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	return unsafe.Pointer(&rsa.sa4), unix.SizeofSockaddrInet4, true
}

// writeTo sends p to ap.
func (s *udpSocket) writeTo(p []byte, ap netip.AddrPort) (int, error) {
	var rsa rawSockaddr
	sa, salen, ok := s.fillSockaddr(ap, &rsa)
	if len(p) == 0 || !ok {
		return s.conn.WriteToUDPAddrPort(p, ap) // rare cases: the standard path
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.conn.LocalAddr(), Err: net.ErrClosed}
	}
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, s.fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		0, uintptr(sa), uintptr(salen))
	s.mu.RUnlock()
	switch e {
	case 0:
		return int(r), nil
	case syscall.EAGAIN, syscall.EINTR:
		return s.conn.WriteToUDPAddrPort(p, ap) // waits for room in the send buffer, retries
	}
	return 0, &net.OpError{Op: "write", Net: "udp", Source: s.conn.LocalAddr(),
		Addr: net.UDPAddrFromAddrPort(ap), Err: os.NewSyscallError("sendto", e)}
}

// gsoOff is set once a send with UDP_SEGMENT has failed with EIO, which says an outgoing
// device cannot segment (no checksum offload, as quic-go found). From then on every run
// goes out one datagram per sendto. A kernel without UDP GSO (before 4.18) is found when
// a socket is made (udpSocket.gso).
var gsoOff atomic.Bool

// sendSegments sends the datagrams of a run to ap: buf holds them back to back, each seg
// bytes except the last, which may be shorter. It returns how many datagrams and bytes
// left. Several datagrams go out as one sendmsg with UDP_SEGMENT (generic segmentation
// offload): the kernel takes the route, the headers and the device transmit once for the
// run and cuts it into datagrams at the end, in the device or just before it, instead of
// running the whole UDP/IP output path per datagram. That path, not the system call, is
// most of a relayed packet's cost. It pays off when a busy flow's packets queue up with
// one size (most of a video frame's packets); a run of one is a plain sendto.
func (s *udpSocket) sendSegments(buf []byte, seg int, ap netip.AddrPort) (pkts, bytes int, err error) {
	if seg <= 0 || len(buf) == 0 {
		return 0, 0, nil
	}
	if len(buf) > seg && seg <= 0xFFFF && s.gso && !gsoOff.Load() {
		var rsa rawSockaddr
		if sa, salen, ok := s.fillSockaddr(ap, &rsa); ok {
			done, e := s.sendGSO(buf, seg, sa, salen)
			if done {
				if e != nil {
					return 0, 0, e
				}
				return (len(buf) + seg - 1) / seg, len(buf), nil
			}
		}
	}
	for off := 0; off < len(buf); off += seg {
		end := min(off+seg, len(buf))
		n, werr := s.writeTo(buf[off:end], ap)
		if werr != nil {
			return pkts, bytes, werr
		}
		pkts++
		bytes += n
	}
	return pkts, bytes, nil
}

// gsoControl is the UDP_SEGMENT control message: a cmsghdr and the segment size.
type gsoControl struct {
	hdr unix.Cmsghdr
	seg uint16
	_   [6]byte // CMSG_SPACE(2) is 24 bytes
}

// sendGSO makes one sendmsg with UDP_SEGMENT. done is false when the run should go out
// datagram by datagram instead: the buffer is full (EAGAIN; the per-datagram path waits
// for room), the datagrams are larger than the route's MTU allows a segment to be
// (EINVAL, EMSGSIZE: sent one by one they are fragmented, as without GSO) or the device
// cannot segment (EIO; then gsoOff is set too).
func (s *udpSocket) sendGSO(buf []byte, seg int, sa unsafe.Pointer, salen uint32) (done bool, err error) {
	var ctl gsoControl
	ctl.hdr.Level = unix.SOL_UDP
	ctl.hdr.Type = unix.UDP_SEGMENT
	ctl.hdr.SetLen(unix.CmsgLen(2))
	ctl.seg = uint16(seg)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var msg unix.Msghdr
	msg.Name = (*byte)(sa)
	msg.Namelen = salen
	msg.Iov = &iov
	msg.SetIovlen(1)
	msg.Control = (*byte)(unsafe.Pointer(&ctl))
	msg.SetControllen(unix.CmsgSpace(2))
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return true, &net.OpError{Op: "write", Net: "udp", Source: s.conn.LocalAddr(), Err: net.ErrClosed}
	}
	_, _, e := syscall.RawSyscall(unix.SYS_SENDMSG, s.fd, uintptr(unsafe.Pointer(&msg)), 0)
	s.mu.RUnlock()
	switch e {
	case 0:
		return true, nil
	case syscall.EAGAIN, syscall.EINTR, syscall.ENOBUFS, syscall.EINVAL, syscall.EMSGSIZE:
		return false, nil
	case syscall.EIO:
		gsoOff.Store(true)
		return false, nil
	}
	return true, &net.OpError{Op: "write", Net: "udp", Source: s.conn.LocalAddr(),
		Err: os.NewSyscallError("sendmsg", e)}
}

// close closes the socket once no raw send or poller read is using its descriptor, taking
// it out of its poller's epoll set first: once closed, the descriptor's number may name
// another socket.
func (s *udpSocket) close() error {
	s.mu.Lock()
	s.closed = true
	if s.inSet {
		_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(s.fd), nil)
		s.inSet = false
	}
	s.mu.Unlock()
	return s.conn.Close()
}

// dontFragmentSupported: DONT-FRAGMENT is honoured (setDontFragment).
const dontFragmentSupported = true

// setDontFragment makes the kernel send every datagram of c with DF set and refuse (EMSGSIZE)
// rather than fragment one larger than the path MTU: RFC 8656 §7.2 DONT-FRAGMENT.
func setDontFragment(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	})
	return errors.Join(err, serr)
}
