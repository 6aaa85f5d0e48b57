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
}

func newUDPSocket(c *net.UDPConn, _, _ int) (*udpSocket, error) {
	return &udpSocket{conn: c}, nil
}

func (s *udpSocket) readFrom(p []byte, _ func(first byte) bool) (int, net.Addr, error) {
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
