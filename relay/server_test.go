package relay

import (
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func TestRelayEcho(t *testing.T) {
	tests := []struct {
		name      string
		listen    string
		transport string
		family    turn.RequestedAddressFamily
		peer      string
	}{
		{"udp/ipv4", "127.0.0.1:0", "udp", turn.RequestedAddressFamilyIPv4, "127.0.0.1:0"},
		{"tcp/ipv4", "127.0.0.1:0", "tcp", turn.RequestedAddressFamilyIPv4, "127.0.0.1:0"},
		{"udp/ipv6", "[::1]:0", "udp", turn.RequestedAddressFamilyIPv6, "[::1]:0"},
		{"tcp/ipv6", "[::1]:0", "tcp", turn.RequestedAddressFamilyIPv6, "[::1]:0"},
		// An IPv4 client asking for an IPv6 relay (REQUESTED-ADDRESS-FAMILY).
		{"udp/ipv4-client/ipv6-relay", "127.0.0.1:0", "udp", turn.RequestedAddressFamilyIPv6, "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.family == turn.RequestedAddressFamilyIPv6 && !hostHasIPv6() {
				t.Skip("host has no IPv6")
			}
			cfg := baseConfig(t)
			cfg.ListenAddr = tt.listen
			s := startServer(t, cfg)
			peer := echoPeer(t, "udp", tt.peer)
			cred := s.Mint("alice", time.Minute)
			cl := turnClient(t, s, tt.transport, tt.family, cred.Username, cred.Password)
			relayConn, err := cl.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			defer relayConn.Close()
			ra := relayConn.LocalAddr().(*net.UDPAddr)
			want := cfg.PublicIPv4.String()
			if tt.family == turn.RequestedAddressFamilyIPv6 {
				want = cfg.PublicIPv6.String()
			}
			if ra.IP.String() != want || ra.Port < int(cfg.RelayPortMin) || ra.Port > int(cfg.RelayPortMax) {
				t.Errorf("relayed address %v, want %s:%d-%d", ra, want, cfg.RelayPortMin, cfg.RelayPortMax)
			}
			exchange(t, relayConn, peer, 20)
			// The relay goroutine counts a packet after its write returns, which may be after
			// the echo arrived: wait for the counters.
			waitFor(t, "relay counters", func() bool {
				st := s.Stats()
				return st.PacketsToPeer >= 20 && st.PacketsFromPeer >= 20 && st.BytesToPeer >= 20*7
			})
			if st := s.Stats(); st.AllocationsActive != 1 || st.AllocationsCreated != 1 {
				t.Errorf("Stats = %+v, want 1 active, 1 created", st)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(baseConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.UDPAddr() != nil || s.TCPAddr() != nil || len(s.TLSAddrs()) != 0 {
		t.Fatal("New bound sockets; it must do no I/O")
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.UDPAddr() == nil || s.TCPAddr() == nil || addrPortOf(s.UDPAddr()).Port() != addrPortOf(s.TCPAddr()).Port() {
		t.Fatalf("UDPAddr %v, TCPAddr %v: want both bound, same port", s.UDPAddr(), s.TCPAddr())
	}
	if err := s.Listen(t.Context()); err == nil {
		t.Error("second Listen succeeded")
	}
	udp := s.UDPAddr().String()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The port is free again: every socket was closed.
	pc, err := net.ListenPacket("udp4", udp)
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	_ = pc.Close()

	s2, _ := New(baseConfig(t))
	if err := s2.Close(); err != nil {
		t.Fatalf("Close before Listen: %v", err)
	}
	if err := s2.Listen(t.Context()); err == nil {
		t.Error("Listen after Close succeeded")
	}
}

// TestAllocationEventsSameFiveTuple replays the order in which pion reports an allocation
// that expires while its client re-allocates on the same 5-tuple: pion drops the old one
// from its map, creates the new one (reported), then reports the old one's deletion. The
// new allocation must keep its entry (or its Refresh gets 437) and its quota slot, and the
// counts must come back to zero when it ends too.
func TestAllocationEventsSameFiveTuple(t *testing.T) {
	s, err := New(baseConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	relayAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
	k := allocKeyOf(src, dst)
	check := func(step string, wantActive int, wantLive bool) {
		t.Helper()
		s.mu.Lock()
		live, users := s.allocs[k] != nil, s.users["alice"]
		s.mu.Unlock()
		if got := s.Allocations(); got != wantActive || live != wantLive || users != wantActive {
			t.Fatalf("%s: Allocations() = %d, entry %v, user count %d; want %d, %v, %d",
				step, got, live, users, wantActive, wantLive, wantActive)
		}
	}
	s.onAllocationCreated(src, dst, "UDP", "alice", "switchboard", relayAddr, 0)
	check("first created", 1, true)
	s.onAllocationCreated(src, dst, "UDP", "alice", "switchboard", relayAddr, 0)
	s.onAllocationDeleted(src, dst, "UDP", "alice", "switchboard")
	check("second created before the first's deletion", 1, true)
	s.onAllocationDeleted(src, dst, "UDP", "alice", "switchboard")
	check("second deleted", 0, false)
	s.onAllocationDeleted(src, dst, "UDP", "alice", "switchboard")
	check("a stray deletion", 0, false)
}
