//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// udpSocket is the data path of one UDP socket. Outside Linux it is the standard library's,
// one datagram per system call (see sockio_linux.go for the batched version).
type udpSocket struct {
	conn *net.UDPConn
	buf  []byte     // readView's buffer
	addr udpAddrBox // the address reusedAddr hands out
	// flush, when set, runs on the reading goroutine before each read (see sendbatch.go).
	flush func()
}

func newUDPSocket(c *net.UDPConn, _, bufLen int) (*udpSocket, error) {
	return &udpSocket{conn: c, buf: make([]byte, bufLen)}, nil
}

// readView returns the next datagram as a view into the socket's buffer, valid until the
// next read.
func (s *udpSocket) readView() ([]byte, netip.AddrPort, error) {
	if s.flush != nil {
		s.flush()
	}
	n, ap, err := s.conn.ReadFromUDPAddrPort(s.buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return s.buf[:n], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// reusedAddr returns ap in the socket's own address box, overwritten by the next call.
func (s *udpSocket) reusedAddr(ap netip.AddrPort) *net.UDPAddr {
	b := &s.addr
	b.ip = ap.Addr().As16()
	b.addr = net.UDPAddr{IP: b.ip[:], Port: int(ap.Port())}
	return &b.addr
}

func (s *udpSocket) readFrom(p []byte, _ func(first byte) bool) (int, net.Addr, error) {
	if s.flush != nil {
		s.flush()
	}
	n, ap, err := s.conn.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, newUDPAddr(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

func (s *udpSocket) writeTo(p []byte, ap netip.AddrPort) (int, error) {
	return s.conn.WriteToUDPAddrPort(p, ap)
}

func (s *udpSocket) close() error { return s.conn.Close() }

// sendSegments sends the datagrams of a run to ap one by one: buf holds them back to
// back, each seg bytes except the last (see sockio_linux.go for the batched version).
func (s *udpSocket) sendSegments(buf []byte, seg int, ap netip.AddrPort) (pkts, bytes int, err error) {
	if seg <= 0 {
		return 0, 0, nil
	}
	for off := 0; off < len(buf); off += seg {
		n, werr := s.conn.WriteToUDPAddrPort(buf[off:min(off+seg, len(buf))], ap)
		if werr != nil {
			return pkts, bytes, werr
		}
		pkts++
		bytes += n
	}
	return pkts, bytes, nil
}

// dontFragmentSupported: outside Linux the relay does not set DF, so DONT-FRAGMENT is left
// to pion, which refuses it with 420 as RFC 8656 §7.2 asks of a server without DF.
const dontFragmentSupported = false

func setDontFragment(*net.UDPConn, bool) error { return nil }
