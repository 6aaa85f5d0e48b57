package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/switchboard-rtc/switchboard/relay"
)

// recvTimeout bounds one expected datagram; it only ends a broken test, it is not a
// measurement.
const recvTimeout = 10 * time.Second

func channelData(ch uint16, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(b, ch)
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
}

func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(recvTimeout))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("recv on %v: %v", c.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// nothingQueued checks that no datagram is waiting on c. It is called after the
// datagrams that would have gone there were received elsewhere, so it does not race.
func nothingQueued(t testing.TB, c *net.UDPConn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now())
	buf := make([]byte, 65536)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err == nil {
		t.Fatalf("%s: %d bytes from %v reached user space", what, n, from)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: read: %v", what, err)
	}
}

func addrPort(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// setup is one flow between a client socket and a peer socket through the server's
// listener and relay sockets (which stand in for the relay's user space).
type setup struct {
	tp                            topo
	o                             *Offloader
	client, listener, relay, peer *net.UDPConn
	flow                          relay.Flow
	server, relayAt               netip.AddrPort // where client and peer send
}

type family struct {
	name                              string
	client, server, relay, peer, wild string
}

var (
	v4 = family{"ipv4", "10.201.1.2", "10.201.1.1", "10.201.2.1", "10.201.2.2", "0.0.0.0"}
	v6 = family{"ipv6", "fd00:201:1::2", "fd00:201:1::1", "fd00:201:2::1", "fd00:201:2::2", "::"}
)

func join(ip string, port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()
}

func newSetup(t *testing.T, fam family, wildcard, txCsumOff bool) *setup {
	t.Helper()
	tp := newTopo(t, txCsumOff)
	s := &setup{tp: tp}
	s.o = tp.attach(t, Config{})
	s.client = listen(t, tp.client, join(fam.client, 0))
	s.peer = listen(t, tp.peer, join(fam.peer, 0))
	lb, rb := fam.server, fam.relay
	if wildcard {
		lb, rb = fam.wild, fam.wild
	}
	s.listener = listen(t, tp.server, join(lb, 3478))
	s.relay = listen(t, tp.server, join(rb, 50000))
	s.server = netip.MustParseAddrPort(join(fam.server, 3478))
	s.relayAt = netip.MustParseAddrPort(join(fam.relay, 50000))
	s.flow = relay.Flow{
		Client:  addrPort(s.client),
		Server:  addrPort(s.listener),
		Relay:   addrPort(s.relay),
		Peer:    addrPort(s.peer),
		Channel: 0x4000,
	}
	if err := s.o.Add(s.flow); err != nil {
		t.Fatalf("Add(%+v) = %v", s.flow, err)
	}
	return s
}

// toPeer sends payload as ChannelData and checks the peer gets exactly it from the
// relay address.
func (s *setup) toPeer(t testing.TB, payload []byte) {
	t.Helper()
	s.toPeerPadded(t, payload, nil)
}

// toPeerPadded is toPeer with pad appended to the ChannelData message, as a sender
// that pads to a multiple of 4 does over UDP.
func (s *setup) toPeerPadded(t testing.TB, payload, pad []byte) {
	t.Helper()
	send(t, s.client, s.server, append(channelData(s.flow.Channel, payload), pad...))
	got, from := recv(t, s.peer)
	if !bytes.Equal(got, payload) || from != s.relayAt {
		t.Fatalf("peer got %d bytes from %v, want %d bytes from %v (equal: %v)", len(got), from, len(payload), s.relayAt, bytes.Equal(got, payload))
	}
}

// toClient sends payload from the peer and checks the client gets it as ChannelData
// from the listener.
func (s *setup) toClient(t testing.TB, payload []byte) {
	t.Helper()
	send(t, s.peer, s.relayAt, payload)
	got, from := recv(t, s.client)
	want := channelData(s.flow.Channel, payload)
	if !bytes.Equal(got, want) || from != s.server {
		t.Fatalf("client got %d bytes from %v, want %d bytes from %v (equal: %v)", len(got), from, len(want), s.server, bytes.Equal(got, want))
	}
}

func payload(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestForward: ChannelData from the client reaches the peer stripped and re-addressed,
// the peer's datagrams reach the client wrapped, none of it reaches the server's
// sockets, and the counters say exactly what went through.
func TestForward(t *testing.T) {
	for _, fam := range []family{v4, v6} {
		for _, wildcard := range []bool{false, true} {
			name := fam.name + "/specific"
			if wildcard {
				name = fam.name + "/wildcard"
			}
			t.Run(name, func(t *testing.T) {
				s := newSetup(t, fam, wildcard, true)
				r := rand.New(rand.NewPCG(1, 2))
				var want relay.FlowCounts
				const n = 40
				for i := range n {
					p := payload(r, 1+r.IntN(1200))
					s.toClient(t, p)
					want.ToClientPackets++
					want.ToClientBytes += uint64(len(p))
					p = payload(r, r.IntN(1200))
					if i == 0 {
						p = nil // an empty ChannelData message is valid
					}
					// Every other message padded to a multiple of 4, with bytes that
					// are not zero so a checksum slip shows.
					var pad []byte
					if i%2 == 1 {
						pad = payload(r, (4-len(p)%4)%4)
					}
					s.toPeerPadded(t, p, pad)
					want.ToPeerPackets++
					want.ToPeerBytes += uint64(len(p))
				}
				nothingQueued(t, s.listener, "listener")
				nothingQueued(t, s.relay, "relay socket")
				got, ok := s.o.Counts(s.flow)
				if !ok || got != want {
					t.Fatalf("Counts = %+v, %v, want %+v", got, ok, want)
				}
				got, err := s.o.Remove(s.flow)
				if err != nil || got != want {
					t.Fatalf("Remove = %+v, %v, want %+v", got, err, want)
				}
				if st, err := s.o.Stats(); err != nil || st != (Stats{ToPeer: n, ToClient: n}) {
					t.Fatalf("Stats = %+v, %v, want %d forwarded each way and nothing passed", st, err, n)
				}
			})
		}
	}
}

// TestRemoveStops: after Remove (channel unbound, permission expired) nothing is
// forwarded; every packet reaches user space as it was sent.
func TestRemoveStops(t *testing.T) {
	s := newSetup(t, v4, false, true)
	s.toPeer(t, []byte("before"))
	s.toClient(t, []byte("before"))
	if _, err := s.o.Remove(s.flow); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if c, ok := s.o.Counts(s.flow); ok {
		t.Fatalf("Counts after Remove = %+v, true", c)
	}
	if _, err := s.o.Remove(s.flow); !errors.Is(err, ErrUnknownFlow) {
		t.Fatalf("second Remove = %v, want ErrUnknownFlow", err)
	}
	cd := channelData(s.flow.Channel, []byte("after"))
	send(t, s.client, s.server, cd)
	if got, from := recv(t, s.listener); !bytes.Equal(got, cd) || from != s.flow.Client {
		t.Fatalf("listener got %q from %v, want %q from %v", got, from, cd, s.flow.Client)
	}
	send(t, s.peer, s.relayAt, []byte("after"))
	if got, from := recv(t, s.relay); string(got) != "after" || from != s.flow.Peer {
		t.Fatalf("relay socket got %q from %v", got, from)
	}
	nothingQueued(t, s.peer, "peer")
	nothingQueued(t, s.client, "client")
}

// TestFallThrough: with a flow live, everything that is not its ChannelData or its
// peer's datagrams reaches user space byte for byte.
func TestFallThrough(t *testing.T) {
	s := newSetup(t, v4, false, true)
	other := listen(t, s.tp.client, join(v4.client, 0))
	otherPeer := listen(t, s.tp.peer, join(v4.peer, 0))
	stunBinding := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	sendInd := []byte{0x00, 0x16, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	overPadded := append(channelData(s.flow.Channel, []byte("abc")), 0, 0, 0, 0) // 4 bytes after the data
	short := channelData(s.flow.Channel, []byte("abcdef"))[:8]                   // length says 6, 4 present
	big := channelData(s.flow.Channel, bytes.Repeat([]byte("f"), 3000))          // IP fragments
	for _, tt := range []struct {
		name string
		from *net.UDPConn
		to   netip.AddrPort
		b    []byte
		at   *net.UDPConn
	}{
		{"stun binding", s.client, s.server, stunBinding, s.listener},
		{"send indication", s.client, s.server, sendInd, s.listener},
		{"unbound channel", s.client, s.server, channelData(0x4001, []byte("x")), s.listener},
		{"channeldata with 4 bytes after it", s.client, s.server, overPadded, s.listener},
		{"truncated channeldata", s.client, s.server, short, s.listener},
		{"fragmented channeldata", s.client, s.server, big, s.listener},
		{"fragmented peer datagram", s.peer, s.relayAt, big, s.relay},
		{"bound channel, other client", other, s.server, channelData(s.flow.Channel, []byte("x")), s.listener},
		{"other peer", otherPeer, s.relayAt, []byte("hello"), s.relay},
	} {
		t.Run(tt.name, func(t *testing.T) {
			send(t, tt.from, tt.to, tt.b)
			got, from := recv(t, tt.at)
			if !bytes.Equal(got, tt.b) || from != addrPort(tt.from) {
				t.Fatalf("got %x from %v, want %x from %v", got, from, tt.b, addrPort(tt.from))
			}
		})
	}
	nothingQueued(t, s.peer, "peer")
	nothingQueued(t, s.client, "client")
	if c, _ := s.o.Counts(s.flow); c != (relay.FlowCounts{}) {
		t.Fatalf("Counts = %+v, want zero", c)
	}
	// The two bound-channel messages whose length does not fit are counted.
	if st, err := s.o.Stats(); err != nil || st != (Stats{Length: 2}) {
		t.Fatalf("Stats = %+v, %v, want Length 2", st, err)
	}
}

// TestPartialChecksumToUserSpace: a packet whose checksum the kernel has yet to finish
// (a veth or virtio sender with checksum offload) is not forwarded to another host,
// because resizing the header would make the kernel finish it in the wrong place.
func TestPartialChecksumToUserSpace(t *testing.T) {
	s := newSetup(t, v4, false, false)
	cd := channelData(s.flow.Channel, []byte("partial"))
	send(t, s.client, s.server, cd)
	if got, _ := recv(t, s.listener); !bytes.Equal(got, cd) {
		t.Fatalf("listener got %x, want %x", got, cd)
	}
	nothingQueued(t, s.peer, "peer")
}

// TestLoopback: client, server and peer on one host's loopback, the shape of the
// project's benchmark. Packets there keep CHECKSUM_PARTIAL and are delivered locally.
// Another instance's program attached before this one (a second server, or any other
// TCX user) must hand on what is not its own. IPv6 ChannelData from a local client is
// left to user space (its partial checksum cannot be kept valid, and IPv6 UDP may not
// drop it); the other direction is forwarded.
func TestLoopback(t *testing.T) {
	tp := newTopo(t, false)
	tp.attach(t, Config{Interfaces: []string{"lo"}})
	o := tp.attach(t, Config{Interfaces: []string{"lo"}})
	for _, tt := range []struct {
		name, local, peer string
		toPeer            bool
	}{
		{"ipv4", "127.0.0.1", "127.0.0.2", true},
		{"ipv6", "::1", "::1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &setup{tp: tp, o: o}
			s.client = listen(t, tp.server, join(tt.local, 0))
			s.peer = listen(t, tp.server, join(tt.peer, 0))
			s.listener = listen(t, tp.server, join(tt.local, 3478))
			s.relay = listen(t, tp.server, join(tt.local, 50000))
			s.server, s.relayAt = addrPort(s.listener), addrPort(s.relay)
			s.flow = relay.Flow{Client: addrPort(s.client), Server: s.server, Relay: s.relayAt, Peer: addrPort(s.peer), Channel: 0x4abc}
			if err := o.Add(s.flow); err != nil {
				t.Fatalf("Add = %v", err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			var want relay.FlowCounts
			for range 20 {
				p := payload(r, 1+r.IntN(1400))
				if tt.toPeer {
					s.toPeerPadded(t, p, make([]byte, (4-len(p)%4)%4)) // pion pads with zeros
					want.ToPeerPackets++
				} else {
					cd := channelData(s.flow.Channel, p)
					send(t, s.client, s.server, cd)
					if got, _ := recv(t, s.listener); !bytes.Equal(got, cd) {
						t.Fatalf("listener got %d bytes, want the %d sent", len(got), len(cd))
					}
				}
				s.toClient(t, payload(r, 1+r.IntN(1400)))
				want.ToClientPackets++
			}
			nothingQueued(t, s.listener, "listener")
			nothingQueued(t, s.relay, "relay socket")
			nothingQueued(t, s.peer, "peer")
			if c, _ := o.Counts(s.flow); c.ToPeerPackets != want.ToPeerPackets || c.ToClientPackets != want.ToClientPackets {
				t.Fatalf("Counts = %+v, want %d packets to the peer, %d to the client", c, want.ToPeerPackets, want.ToClientPackets)
			}
		})
	}
}

// TestCloseDetaches: Close leaves no program on any interface it attached to.
func TestCloseDetaches(t *testing.T) {
	tp := newTopo(t, true)
	o := tp.attach(t, Config{})
	names := o.Interfaces()
	if len(names) != 3 { // lo, s0, s1
		t.Fatalf("attached to %v, want lo, s0 and s1", names)
	}
	count := func() int {
		n := 0
		inNS(t, tp.server, func() error {
			for _, name := range names {
				ifc, err := net.InterfaceByName(name)
				if err != nil {
					return err
				}
				res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXIngress})
				if err != nil {
					return err
				}
				n += len(res.Programs)
			}
			return nil
		})
		return n
	}
	if n := count(); n != len(names) {
		t.Fatalf("before Close: %d programs on %v, want %d", n, names, len(names))
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after Close: %d programs attached", n)
	}
	if err := o.Add(relay.Flow{}); err == nil {
		t.Fatal("Add after Close succeeded")
	}
}
