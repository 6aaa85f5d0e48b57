//go:build linux

package relay

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// pollerRig is a relay socket in a poller the test drives by hand (never started: the test
// owns its goroutine's state), whose client is a plain socket behind a listener of the
// test's own.
type pollerRig struct {
	s      *Server
	p      *poller
	rc     *relayConn
	relay  netip.AddrPort // where peers send
	client *net.UDPConn
}

func newPollerRig(t testing.TB) *pollerRig {
	t.Helper()
	s := startServer(t, baseConfig(t))
	conn, _, err := s.relays.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if err != nil {
		t.Fatal(err)
	}
	rc := conn.(*relayConn)
	t.Cleanup(func() { _ = rc.Close() })
	lc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := newFilterConn(s, lc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fc.Close() })
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	p, err := newPoller(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.close() })
	if !p.add(rc, fc.sock, client.LocalAddr().(*net.UDPAddr).AddrPort(), nil) {
		t.Fatal("poller refused an open relay socket")
	}
	return &pollerRig{s: s, p: p, rc: rc, relay: addrPortOf(rc.LocalAddr()), client: client}
}

// peer is a UDP socket on ip, sending through the allocation-free path.
func (r *pollerRig) peer(t testing.TB, ip string) (*udpSocket, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	sock, err := newUDPSocket(c, 1, maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sock.close() })
	return sock, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// send sends p from peer to the relay socket and runs one poller round over it (a loopback
// send has queued the datagram when it returns).
func (r *pollerRig) send(t testing.TB, peer *udpSocket, p []byte) {
	t.Helper()
	if _, err := peer.writeTo(p, r.relay); err != nil {
		t.Fatal(err)
	}
	r.p.serve(pollToken(r.rc))
	r.p.flush()
}

// next reads the next datagram the client got.
func (r *pollerRig) next(t testing.TB) []byte {
	t.Helper()
	_ = r.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2*maxFrame)
	n, err := r.client.Read(buf)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return buf[:n]
}

// TestPollerRules: what a polled relay socket does with each peer's datagram is what
// pion's loop does: a live channel → ChannelData, a permission only → a Data indication,
// a channel whose permission ended or a peer without permission → nothing.
func TestPollerRules(t *testing.T) {
	r := newPollerRig(t)
	bound, boundAP := r.peer(t, "127.0.0.1")
	permOnly, permOnlyAP := r.peer(t, "127.0.0.1")
	stranger, _ := r.peer(t, "127.0.0.3")
	stale, staleAP := r.peer(t, "127.0.0.4")
	r.rc.chans.Store(newChanTable(&flowAlloc{
		perms: map[netip.Addr]struct{}{boundAP.Addr(): {}},
		chans: map[uint16]netip.AddrPort{0x4001: boundAP, 0x4002: staleAP}, // no permission for staleAP
	}))

	r.send(t, bound, []byte("over the channel"))
	if got, want := r.next(t), appendChannelData(nil, 0x4001, []byte("over the channel")); !bytes.Equal(got, want) {
		t.Fatalf("bound peer: client got %x, want ChannelData %x", got, want)
	}
	big := bytes.Repeat([]byte{7}, 9000)
	r.send(t, bound, big)
	if got := r.next(t); len(got) != 9004 || !bytes.Equal(got[4:], big) {
		t.Fatalf("bound peer, 9,000 bytes: client got %d bytes, want ChannelData of 9,004", len(got))
	}

	r.send(t, permOnly, []byte("indicated"))
	m := &stun.Message{Raw: r.next(t)}
	if err := m.Decode(); err != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		t.Fatalf("permission-only peer: client got %v (%v), want a Data indication", m, err)
	}
	var from stun.XORMappedAddress
	if err := from.GetFromAs(m, stun.AttrXORPeerAddress); err != nil || from.Port != int(permOnlyAP.Port()) {
		t.Errorf("Data indication XOR-PEER-ADDRESS = %v (%v), want %v", from, err, permOnlyAP)
	}
	if data, err := m.Get(stun.AttrData); err != nil || string(data) != "indicated" {
		t.Errorf("Data indication DATA = %q (%v), want %q", data, err, "indicated")
	}

	// Neither of these reaches the client: the marker that follows is the next datagram.
	r.send(t, stranger, []byte("no permission"))
	r.send(t, stale, []byte("permission ended"))
	r.send(t, bound, []byte("marker"))
	if got, want := r.next(t), appendChannelData(nil, 0x4001, []byte("marker")); !bytes.Equal(got, want) {
		t.Fatalf("after unpermitted peers: client got %q, want only the marker %q", got, want)
	}
	if got := r.s.Stats().PacketsFromPeer; got != 6 {
		t.Errorf("PacketsFromPeer = %d, want 6 (every datagram read is counted)", got)
	}
}

// TestPollerNoAllocs: a peer's datagram on a channel costs the poller no allocation, from
// its read to the client's sendmmsg.
func TestPollerNoAllocs(t *testing.T) {
	r := newPollerRig(t)
	peer, peerAP := r.peer(t, "127.0.0.1")
	r.rc.chans.Store(newChanTable(&flowAlloc{
		perms: map[netip.Addr]struct{}{peerAP.Addr(): {}},
		chans: map[uint16]netip.AddrPort{0x4001: peerAP},
	}))
	payload := make([]byte, 100)
	r.send(t, peer, payload) // the batch's first use grows its buffers
	if got := testing.AllocsPerRun(1000, func() { r.send(t, peer, payload) }); got != 0 {
		t.Errorf("%v allocations per relayed datagram, want 0", got)
	}
}

// TestPollerCloseTakesSocketOut: a closed relay socket leaves its poller's set, and the
// poller no longer finds it (a new socket on the port is not mistaken for it).
func TestPollerCloseTakesSocketOut(t *testing.T) {
	r := newPollerRig(t)
	if err := r.rc.Close(); err != nil {
		t.Fatal(err)
	}
	if r.rc.sock.inSet {
		t.Error("closed relay socket still in the poller's epoll set")
	}
	r.p.serve(pollToken(r.rc)) // finds no socket on the port: a no-op, no read of a closed descriptor
	select {
	case <-r.rc.done:
	default:
		t.Error("Close did not release pion's loop (done still open)")
	}
}

// TestInbox: the queue from a poller to pion's loop never blocks the poller (a full inbox
// drops, as a full socket buffer would), hands out copies, and ends pion's loop once closed.
func TestInbox(t *testing.T) {
	x := newInbox()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	b := []byte("binding")
	for i := range inboxSize {
		if !x.put(b, src) {
			t.Fatalf("put %d refused before the inbox was full", i)
		}
	}
	if x.put(b, src) {
		t.Error("put into a full inbox succeeded, want a drop")
	}
	b[0] = 'X' // the poller reuses its buffer: what was queued must not change
	got, from, err := x.take()
	if err != nil || string(got) != "binding" || from != src {
		t.Errorf("take = %q, %v, %v; want %q, %v, nil", got, from, err, "binding", src)
	}
	x.close()
	x.close() // Close may run twice (pion, then Server.Close)
	for {
		if _, _, err := x.take(); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("take after close: %v, want net.ErrClosed", err)
			}
			break
		}
	}
}
