//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// poller: outside Linux every relay socket is read by pion's loop for its allocation, and
// every listening socket by pion's loop for it (see poller_linux.go for the shared readers).
type poller struct{}

func (p *poller) add(*relayConn, *udpSocket, netip.AddrPort, *net.UDPAddr) bool { return false }

type pollers struct{}

func (x *pollers) start(*Server, []*filterConn) error { return nil }
func (x *pollers) close() error                       { return nil }
