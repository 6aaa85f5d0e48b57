//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// poller: outside Linux every relay socket is read by pion's loop for its allocation (see
// poller_linux.go for the shared readers).
type poller struct{}

func (p *poller) add(*relayConn, *udpSocket, netip.AddrPort, *net.UDPAddr) bool { return false }

type pollers struct{}

func (x *pollers) start(*Server, int) error { return nil }
func (x *pollers) pick(*relayConn) *poller  { return nil }
func (x *pollers) close() error             { return nil }
