package relay

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// TestHairpin: two allocations of one server behind a router that does not hairpin. Their
// relayed addresses are on the router-facing address 127.0.0.2, where nothing listens (the
// relays bind 127.0.0.1), so data only arrives if the server delivers it inside.
func TestHairpin(t *testing.T) {
	tests := []struct {
		name       string
		listen     string
		family     turn.RequestedAddressFamily
		transportA string
		transportB string
	}{
		{"udp-udp", "127.0.0.1:0", turn.RequestedAddressFamilyIPv4, "udp", "udp"},
		{"udp-tcp", "127.0.0.1:0", turn.RequestedAddressFamilyIPv4, "udp", "tcp"},
		// IPv6 has one loopback address, so the public address is ::1 itself: this case
		// covers the IPv6 path of the guard and hairpin code, while the IPv4 cases prove
		// delivery happens inside (a datagram to 127.0.0.2 would reach nobody). A public
		// address off loopback would risk real traffic if the hairpin broke.
		{"ipv6 udp-udp", "[::1]:0", turn.RequestedAddressFamilyIPv6, "udp", "udp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.family == turn.RequestedAddressFamilyIPv6 && !hostHasIPv6() {
				t.Skip("host has no IPv6")
			}
			cfg := baseConfig(t)
			cfg.ListenAddr = tt.listen
			cfg.PeerAllow = nil // the default policy: only the server's own address is open
			if tt.family == turn.RequestedAddressFamilyIPv6 {
				cfg.PublicIPv6 = netip.IPv6Loopback()
			}
			s := startServer(t, cfg)
			ca := s.Mint("alice", time.Minute)
			cb := s.Mint("bob", time.Minute)
			ra, err := turnClient(t, s, tt.transportA, tt.family, ca.Username, ca.Password).Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer ra.Close()
			rb, err := turnClient(t, s, tt.transportB, tt.family, cb.Username, cb.Password).Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer rb.Close()
			addrA, addrB := ra.LocalAddr(), rb.LocalAddr()
			want := cfg.PublicIPv4
			if tt.family == turn.RequestedAddressFamilyIPv6 {
				want = cfg.PublicIPv6
			}
			if ip := addrPortOf(addrA).Addr(); ip != want {
				t.Fatalf("relayed address %v, want the public address %v", addrA, want)
			}
			// Both sides send (creating their permissions) until each hears the other.
			buf := make([]byte, 1500)
			for _, dir := range []struct {
				from, to net.PacketConn
				dst, src net.Addr
			}{{ra, rb, addrB, addrA}, {rb, ra, addrA, addrB}} {
				deadline := time.Now().Add(rawTimeout)
				for {
					msg := []byte("ping from " + dir.src.String())
					if _, err := dir.from.WriteTo(msg, dir.dst); err != nil {
						t.Fatal(err)
					}
					// The receiver needs a permission for the sender before data gets in.
					if _, err := dir.to.WriteTo([]byte("open"), dir.src); err != nil {
						t.Fatal(err)
					}
					_ = dir.to.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					n, from, err := dir.to.ReadFrom(buf)
					if err == nil && bytes.Equal(buf[:n], msg) {
						if from.String() != dir.src.String() {
							t.Errorf("data from %v, want the sender's relayed address %v", from, dir.src)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no hairpin delivery %v -> %v", dir.src, dir.dst)
					}
				}
			}
		})
	}
}

// TestOwnAddressGuard: the server's own address is open as a peer only on live relay
// ports; data toward its other ports is dropped in the data path.
func TestOwnAddressGuard(t *testing.T) {
	cfg := baseConfig(t)
	cfg.PeerAllow = nil
	s := startServer(t, cfg)
	cred := s.Mint("mallory", time.Minute)
	c := newRawClient(t, s)
	sess := c.login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := sess.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	turnPort := addrPortOf(s.UDPAddr()).Port()
	own := netip.AddrPortFrom(cfg.PublicIPv4, turnPort)
	if got := errorCode(sess.signed(stun.MethodCreatePermission, peerAttr(own))); got != 0 {
		t.Fatalf("CreatePermission for the server's own address = %d, want success", got)
	}
	// A Send indication toward the TURN port itself (not a relay port): dropped, counted.
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAttr(own), stun.RawAttribute{Type: stun.AttrData, Value: []byte("GET / HTTP/1.0\r\n\r\n")})
	before := s.Stats()
	if _, err := c.conn.WriteTo(send.Raw, c.srv); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drop counted", func() bool { return s.Stats().PeerDataDropped == before.PeerDataDropped+1 })
	if got := s.Stats().PacketsToPeer; got != before.PacketsToPeer {
		t.Errorf("PacketsToPeer = %d, want unchanged %d", got, before.PacketsToPeer)
	}
	// The same through a channel: ChannelBind to the TURN port is accepted (permissions are
	// per IP), but ChannelData on it is dropped in the data path, like the Send indication.
	if got := errorCode(sess.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(own))); got != 0 {
		t.Fatalf("ChannelBind to the server's own address = %d, want success", got)
	}
	payload := []byte("GET / HTTP/1.0\r\n\r\n") // 18 bytes, padded to 20 on the wire
	chData := append([]byte{0x40, 0x01, 0, byte(len(payload))}, payload...)
	chData = append(chData, 0, 0)
	before = s.Stats()
	if _, err := c.conn.WriteTo(chData, c.srv); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "channel drop counted", func() bool { return s.Stats().PeerDataDropped == before.PeerDataDropped+1 })
	if got := s.Stats().PacketsToPeer; got != before.PacketsToPeer {
		t.Errorf("PacketsToPeer = %d after ChannelData, want unchanged %d", got, before.PacketsToPeer)
	}
	// Other loopback addresses stay refused by the default policy.
	if got := errorCode(sess.signed(stun.MethodCreatePermission, peerAttr(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), turnPort)))); got != 403 {
		t.Errorf("CreatePermission for 127.0.0.1 = %d, want 403", got)
	}
}

// TestHostAddressesRefused: the host's own non-loopback addresses are refused as peers even
// when PeerAllow covers them (a LAN allow must not open the relay's own HTTP, metrics or ssh
// ports on its LAN address), while the rest of the allowed range stays open. Only the
// permission is asked for; nothing is sent to these addresses.
func TestHostAddressesRefused(t *testing.T) {
	// Listed here, not with hostAddrs, so a broken hostAddrs cannot make the test skip.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var host []netip.Addr
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok && !ip.Unmap().IsLoopback() && !ip.IsLinkLocalUnicast() {
				host = append(host, ip.Unmap())
			}
		}
	}
	if len(host) == 0 {
		t.Skip("host has no non-loopback address")
	}
	cfg := baseConfig(t)
	for _, ip := range host {
		cfg.PeerAllow = append(cfg.PeerAllow, netip.PrefixFrom(ip, ip.BitLen()-8).Masked())
	}
	s := startServer(t, cfg)
	for _, ip := range host {
		b := ip.AsSlice()
		b[len(b)-1] ^= 1
		neighbour, _ := netip.AddrFromSlice(b)
		if got := s.policy.allowed(ip); got {
			t.Errorf("allowed(%s) = true for the host's own address, want false", ip)
		}
		if got := s.policy.allowed(neighbour); !got && !slices.Contains(host, neighbour) {
			t.Errorf("allowed(%s) = false, want true (inside PeerAllow)", neighbour)
		}
	}
	// The same through the wire: CreatePermission for the host's IPv4 address gets 403.
	for _, ip := range host {
		if !ip.Is4() {
			continue
		}
		cred := s.Mint("oscar", time.Minute)
		sess := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
		if got := sess.allocate(); got != 0 {
			t.Fatalf("Allocate = %d", got)
		}
		if got := errorCode(sess.signed(stun.MethodCreatePermission, peerAttr(netip.AddrPortFrom(ip, 22)))); got != 403 {
			t.Errorf("CreatePermission for the host's address %s = %d, want 403", ip, got)
		}
		break
	}
}
