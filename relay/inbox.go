package relay

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
)

// inbox carries a listening socket's STUN datagrams from the poller that reads the socket
// (poller_linux.go) to pion's read loop for it (filterConn.ReadFrom). ChannelData never
// comes here: the poller relays it.
type inbox struct {
	q      chan inboxMsg
	closed chan struct{}
	once   sync.Once
}

type inboxMsg struct {
	b   []byte
	src netip.AddrPort
}

// inboxSize bounds the STUN datagrams waiting for pion: 2,048 is a few thousand clients
// allocating at once (a restart's reconnect wave) while pion answers about one per 20 µs.
// What does not fit is dropped, as a full socket buffer would; clients retransmit.
const inboxSize = 2048

func newInbox() *inbox {
	return &inbox{q: make(chan inboxMsg, inboxSize), closed: make(chan struct{})}
}

// put queues a copy of b, without blocking; false if the inbox is full.
func (x *inbox) put(b []byte, src netip.AddrPort) bool {
	select {
	case x.q <- inboxMsg{b: bytes.Clone(b), src: src}:
		return true
	default:
		return false
	}
}

// take waits for the next datagram; net.ErrClosed once the inbox is closed.
func (x *inbox) take() ([]byte, netip.AddrPort, error) {
	select {
	case m := <-x.q:
		return m.b, m.src, nil
	case <-x.closed:
		return nil, netip.AddrPort{}, net.ErrClosed
	}
}

func (x *inbox) close() { x.once.Do(func() { close(x.closed) }) }
