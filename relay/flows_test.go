package relay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fakeOffloader records calls; every flow it holds "forwarded" perFlow.
type fakeOffloader struct {
	mu      sync.Mutex
	calls   []string
	live    map[Flow]bool
	perFlow FlowCounts
	closed  bool
}

func newFakeOffloader() *fakeOffloader { return &fakeOffloader{live: map[Flow]bool{}} }

func (o *fakeOffloader) Add(f Flow) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("add %#x %v", f.Channel, f.Peer))
	o.live[f] = true
	return nil
}

func (o *fakeOffloader) Remove(f Flow) (FlowCounts, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("remove %#x %v", f.Channel, f.Peer))
	delete(o.live, f)
	return o.perFlow, nil
}

func (o *fakeOffloader) Counts(f Flow) (FlowCounts, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.perFlow, o.live[f]
}

func (o *fakeOffloader) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, "close")
	o.closed = true
	return nil
}

func (o *fakeOffloader) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

func (o *fakeOffloader) liveFlows() []Flow {
	o.mu.Lock()
	defer o.mu.Unlock()
	var fs []Flow
	for f := range o.live {
		fs = append(fs, f)
	}
	return fs
}

// TestFlowTable drives the shadow table with pion's events, one table row per sequence,
// and checks the Offloader sees a flow exactly while its channel and permission are live.
func TestFlowTable(t *testing.T) {
	udp := func(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	client, listener, relay := udp("198.51.100.7:5000"), udp("127.0.0.1:3478"), udp("203.0.113.1:40000")
	tcpClient := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.7:5001"))
	peerA, peerA2, peerB := udp("192.0.2.1:9000"), udp("192.0.2.1:9001"), udp("192.0.2.2:9000")
	ip := func(a net.Addr) net.IP { return a.(*net.UDPAddr).IP }
	self := udp("203.0.113.1:40001") // another relay port of this server: the hairpin

	type ev func(ft *flowTable, st *counters)
	chanUp := func(peer net.Addr, ch uint16) ev {
		return func(ft *flowTable, _ *counters) { ft.channelCreated(client, listener, relay, peer, ch) }
	}
	chanDown := func(peer net.Addr, ch uint16) ev {
		return func(ft *flowTable, st *counters) { ft.channelDeleted(client, listener, peer, ch, st) }
	}
	permUp := func(peer net.Addr) ev {
		return func(ft *flowTable, _ *counters) { ft.permissionCreated(client, listener, relay, ip(peer)) }
	}
	permDown := func(peer net.Addr) ev {
		return func(ft *flowTable, st *counters) { ft.permissionDeleted(client, listener, ip(peer), st) }
	}
	allocDown := func(ft *flowTable, st *counters) { ft.allocationDeleted(client, listener, st) }
	shutdown := func(ft *flowTable, st *counters) { _ = ft.close(st) }

	tests := []struct {
		name   string
		events []ev
		want   []string
	}{
		{"channel bind (permission first, as pion reports it)", []ev{permUp(peerA), chanUp(peerA, 0x4000)},
			[]string{"add 0x4000 192.0.2.1:9000"}},
		{"channel before permission", []ev{chanUp(peerA, 0x4000), permUp(peerA)},
			[]string{"add 0x4000 192.0.2.1:9000"}},
		{"channel without permission", []ev{chanUp(peerA, 0x4000)}, nil},
		{"permission without channel", []ev{permUp(peerA)}, nil},
		{"refresh: permission again", []ev{permUp(peerA), chanUp(peerA, 0x4000), permUp(peerA)},
			[]string{"add 0x4000 192.0.2.1:9000"}},
		{"channel expiry", []ev{permUp(peerA), chanUp(peerA, 0x4000), chanDown(peerA, 0x4000)},
			[]string{"add 0x4000 192.0.2.1:9000", "remove 0x4000 192.0.2.1:9000"}},
		{"permission expiry ends every channel to that IP", []ev{
			permUp(peerA), chanUp(peerA, 0x4000), chanUp(peerA2, 0x4001), permUp(peerB), chanUp(peerB, 0x4002),
			permDown(peerA),
		}, []string{
			"add 0x4000 192.0.2.1:9000", "add 0x4001 192.0.2.1:9001", "add 0x4002 192.0.2.2:9000",
			"remove 0x4000 192.0.2.1:9000", "remove 0x4001 192.0.2.1:9001",
		}},
		{"permission back after expiry", []ev{permUp(peerA), chanUp(peerA, 0x4000), permDown(peerA), permUp(peerA)},
			[]string{"add 0x4000 192.0.2.1:9000", "remove 0x4000 192.0.2.1:9000", "add 0x4000 192.0.2.1:9000"}},
		{"refresh 0 / allocation deletion, pion's order", []ev{
			permUp(peerA), chanUp(peerA, 0x4000), permDown(peerA), chanDown(peerA, 0x4000), allocDown,
		}, []string{"add 0x4000 192.0.2.1:9000", "remove 0x4000 192.0.2.1:9000"}},
		{"allocation deletion with flows left", []ev{permUp(peerA), chanUp(peerA, 0x4000), allocDown},
			[]string{"add 0x4000 192.0.2.1:9000", "remove 0x4000 192.0.2.1:9000"}},
		{"shutdown", []ev{permUp(peerA), chanUp(peerA, 0x4000), shutdown, chanUp(peerB, 0x4001), permUp(peerB)},
			[]string{"add 0x4000 192.0.2.1:9000", "remove 0x4000 192.0.2.1:9000", "close"}},
		{"hairpin peer stays in user space", []ev{permUp(self), chanUp(self, 0x4000)}, nil},
		{"TCP client stays in user space", []ev{func(ft *flowTable, _ *counters) {
			ft.permissionCreated(tcpClient, listener, relay, ip(peerA))
			ft.channelCreated(tcpClient, listener, relay, peerA, 0x4000)
		}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := newFakeOffloader()
			isSelf := func(a netip.Addr) bool { return a == netip.MustParseAddr("203.0.113.1") }
			local := func(ap netip.AddrPort) netip.AddrPort {
				return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), ap.Port())
			}
			ft := newFlowTable(off, isSelf, local, func(net.Addr) *relayConn { return nil })
			var st counters
			for _, e := range tt.events {
				e(ft, &st)
			}
			if got := off.take(); !slices.Equal(got, tt.want) {
				t.Errorf("Offloader calls = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFlowFields checks the Flow a channel binding produces.
func TestFlowFields(t *testing.T) {
	off := newFakeOffloader()
	ft := newFlowTable(off, func(netip.Addr) bool { return false }, func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), ap.Port())
	}, func(net.Addr) *relayConn { return nil })
	client := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:198.51.100.7]:5000"))
	listener := newUDPAddr(netip.MustParseAddrPort("127.0.0.1:3478")) // 16-byte IP, as the filter's
	relay := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.1:40000"))
	peer := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:9000"))
	ft.permissionCreated(client, listener, relay, peer.IP)
	ft.channelCreated(client, listener, relay, peer, 0x4abc)
	want := Flow{
		Client:  netip.MustParseAddrPort("198.51.100.7:5000"),
		Server:  netip.MustParseAddrPort("127.0.0.1:3478"),
		Relay:   netip.MustParseAddrPort("10.0.0.1:40000"),
		Peer:    netip.MustParseAddrPort("192.0.2.1:9000"),
		Channel: 0x4abc,
	}
	if got := off.liveFlows(); len(got) != 1 || got[0] != want {
		t.Fatalf("flows = %+v, want [%+v]", got, want)
	}
}

// TestOffloadServer runs a real server with a fake Offloader: a pion client's channel
// binding adds the flow, Refresh 0 removes it, Close closes the Offloader, and what the
// fast path forwarded shows in Stats exactly once.
func TestOffloadServer(t *testing.T) {
	off := newFakeOffloader()
	off.perFlow = FlowCounts{ToPeerPackets: 10, ToPeerBytes: 1000, ToClientPackets: 7, ToClientBytes: 700}
	cfg := baseConfig(t)
	cfg.Offload = off
	s := startServer(t, cfg)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")

	c := newRawClient(t, s)
	cred := s.Mint("alice", time.Minute)
	sess := c.login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := sess.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(sess.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	wantAdd := fmt.Sprintf("add 0x4001 %v", addrPortOf(peer))
	if got := off.take(); !slices.Equal(got, []string{wantAdd}) {
		t.Fatalf("after ChannelBind: calls %q, want [%q]", got, wantAdd)
	}
	fs := off.liveFlows()
	if len(fs) != 1 || fs[0].Client != addrPortOf(c.conn.LocalAddr()) || fs[0].Server != addrPortOf(s.UDPAddr()) ||
		fs[0].Relay.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("flow %+v: want client %v, server %v, relay on 127.0.0.1", fs, c.conn.LocalAddr(), s.UDPAddr())
	}
	// Folded while live, and not again at removal.
	st := s.Stats()
	if st.PacketsToPeer != 10 || st.BytesToPeer != 1000 || st.PacketsFromPeer != 7 || st.BytesFromPeer != 700 {
		t.Errorf("Stats with a live flow = %+v, want the fast path's counts", st)
	}
	if got := errorCode(sess.signed(stun.MethodRefresh, lifetimeZero)); got != 0 {
		t.Fatalf("Refresh 0 = %d", got)
	}
	waitFor(t, "flow removal", func() bool { return len(off.liveFlows()) == 0 })
	if got := off.take(); !slices.Equal(got, []string{"remove 0x4001 " + addrPortOf(peer).String()}) {
		t.Errorf("after Refresh 0: calls %q", got)
	}
	if st := s.Stats(); st.PacketsToPeer != 10 || st.PacketsFromPeer != 7 {
		t.Errorf("Stats after removal = %+v, want the counts once", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := off.take(); !slices.Equal(got, []string{"close"}) {
		t.Errorf("after Close: calls %q, want [close]", got)
	}
}
