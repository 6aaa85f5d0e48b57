package relay

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestUDPSocket(t *testing.T) {
	tests := []struct {
		name    string
		network string // of the socket under test
		listen  string
		sender  string // address the sending socket binds
	}{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0"},
		{"dual-stack socket, IPv4 peer", "udp", "[::]:0", "127.0.0.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.network != "udp4" && !hostHasIPv6() {
				t.Skip("host has no IPv6")
			}
			pc, err := net.ListenPacket(tt.network, tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			sock, err := newUDPSocket(pc.(*net.UDPConn), 4, maxFrame)
			if err != nil {
				t.Fatal(err)
			}
			defer sock.close()
			peer, err := net.ListenPacket("udp", tt.sender)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAP := addrPortOf(peer.LocalAddr())
			dst := netip.AddrPortFrom(peerAP.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))

			// 11 datagrams: more than two batches of 4; the 6th is larger than maxFrame and is
			// skipped.
			// Odd ones start with a ChannelData byte and so get the reused address.
			var want [][]byte
			for i := range 11 {
				size := 10 + i
				if i == 5 {
					size = maxFrame + 100
				}
				msg := bytes.Repeat([]byte{byte(i)}, size)
				if i%2 == 1 {
					msg[0] = 0x40
				}
				if _, err := peer.WriteTo(msg, net.UDPAddrFromAddrPort(dst)); err != nil {
					t.Fatal(err)
				}
				if i != 5 {
					want = append(want, msg)
				}
			}
			_ = pc.SetReadDeadline(time.Now().Add(rawTimeout))
			buf := make([]byte, maxFrame)
			var reused []net.Addr
			for i, w := range want {
				n, from, err := sock.readFrom(buf, isChannelData)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], w) {
					t.Fatalf("datagram %d = %x, want %x", i, buf[:n], w)
				}
				if got := addrPortOf(from); got != peerAP {
					t.Fatalf("datagram %d from %v, want %v", i, got, peerAP)
				}
				if ua := from.(*net.UDPAddr); len(ua.IP) != net.IPv6len {
					t.Fatalf("datagram %d: address IP of %d bytes, want 16 (pion's fingerprint would allocate)", i, len(ua.IP))
				}
				if isChannelData(w[0]) {
					reused = append(reused, from)
				} else {
					for _, r := range reused {
						if r == from {
							t.Fatalf("datagram %d: STUN datagram got a reused address", i)
						}
					}
				}
			}

			// Sending: to the peer through the raw path, and back.
			msg := []byte("reply")
			if n, err := sock.writeTo(msg, peerAP); err != nil || n != len(msg) {
				t.Fatalf("writeTo(%v) = %d, %v", peerAP, n, err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(rawTimeout))
			n, _, err := peer.ReadFrom(buf)
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("peer read %q, %v; want %q", buf[:n], err, msg)
			}

			// After close: reads and writes fail with net.ErrClosed.
			if err := sock.close(); err != nil {
				t.Fatal(err)
			}
			if _, err := sock.writeTo(msg, peerAP); !errors.Is(err, net.ErrClosed) {
				t.Errorf("writeTo after close = %v, want net.ErrClosed", err)
			}
			if _, _, err := sock.readFrom(buf, nil); !errors.Is(err, net.ErrClosed) {
				t.Errorf("readFrom after close = %v, want net.ErrClosed", err)
			}
		})
	}
}
