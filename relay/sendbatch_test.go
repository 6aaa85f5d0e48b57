package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// udpPair is a socket under test (sock) and a receiver it sends to (dst).
func udpPair(t *testing.T, network, listen, recvAddr string) (*udpSocket, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenPacket(network, listen)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := newUDPSocket(pc.(*net.UDPConn), 4, maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sock.close() })
	rc, err := net.ListenPacket("udp", recvAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	recv := rc.(*net.UDPConn)
	_ = recv.SetReadBuffer(4 << 20)
	return sock, recv, addrPortOf(recv.LocalAddr())
}

// datagrams makes one datagram per size, each numbered in its first two bytes.
func datagrams(sizes []int) (buf []byte, msgs [][]byte) {
	for i, n := range sizes {
		m := bytes.Repeat([]byte{byte(i)}, n)
		if n >= 2 {
			binary.BigEndian.PutUint16(m, uint16(i))
		}
		msgs = append(msgs, m)
		buf = append(buf, m...)
	}
	return buf, msgs
}

// expect reads len(want) datagrams from recv and compares them, in order, and their source.
func expect(t *testing.T, recv *net.UDPConn, from netip.AddrPort, want [][]byte) {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = recv.SetReadDeadline(time.Now().Add(rawTimeout))
	for i, w := range want {
		n, src, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes starting %x, want %d bytes starting %x", i, n, buf[:min(n, 4)], len(w), w[:min(len(w), 4)])
		}
		if from.IsValid() && src.Port() != from.Port() {
			t.Fatalf("datagram %d from port %d, want %d", i, src.Port(), from.Port())
		}
	}
	// A window for an extra datagram to show. It cannot fail a correct sender, only miss a
	// late extra on a slow machine; a marker sent after would not help, as loopback may
	// deliver two sends from one socket out of order when softirqs move to ksoftirqd.
	_ = recv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := recv.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("an extra datagram of %d bytes", n)
	}
}

// TestSendSegments: a run of datagrams arrives as the same datagrams, in order, whether it
// goes out as one GSO send or (too large for one) datagram by datagram.
func TestSendSegments(t *testing.T) {
	families := []struct {
		name, network, listen, recv string
		v6                          bool
	}{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1:0", false},
		{"ipv6", "udp6", "[::1]:0", "[::1]:0", true},
		{"dual-stack socket, ipv4 receiver", "udp", "[::]:0", "127.0.0.1:0", true},
	}
	runs := []struct {
		name  string
		seg   int
		sizes []int
	}{
		{"one datagram", 60, []int{60}},
		{"equal sizes", 100, []int{100, 100, 100, 100, 100}},
		{"short last", 100, []int{100, 100, 100, 30}},
		{"full-size video packets", 1204, []int{1204, 1204, 1204, 1204, 1204, 1204, 1204, 1204}},
		// 60 KB and more: past what one UDP send may carry, so the kernel refuses it
		// whole and it goes out one datagram at a time.
		{"larger than one send", 1400, func() []int {
			s := make([]int, 50)
			for i := range s {
				s[i] = 1400
			}
			return s
		}()},
	}
	for _, fam := range families {
		for _, run := range runs {
			t.Run(fam.name+"/"+run.name, func(t *testing.T) {
				if fam.v6 && !hostHasIPv6() {
					t.Skip("host has no IPv6")
				}
				sock, recv, dst := udpPair(t, fam.network, fam.listen, fam.recv)
				buf, msgs := datagrams(run.sizes)
				pkts, n, err := sock.sendSegments(buf, run.seg, dst)
				if err != nil || pkts != len(msgs) || n != len(buf) {
					t.Fatalf("sendSegments = %d datagrams, %d bytes, %v; want %d, %d, nil", pkts, n, err, len(msgs), len(buf))
				}
				expect(t, recv, addrPortOf(sock.conn.LocalAddr()), msgs)
			})
		}
	}
}

// TestSendRuns: datagrams of mixed sizes to one destination are cut into runs GSO can take
// (equal sizes, a shorter one last) and arrive in their order.
func TestSendRuns(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
	}{
		{"all equal", []int{100, 100, 100}},
		{"run closed by a shorter one", []int{100, 100, 50, 100, 100}},
		{"growing", []int{10, 20, 30, 40}},
		{"shrinking", []int{40, 30, 20, 10}},
		{"mixed", []int{100, 100, 100, 50, 100, 120, 120, 7, 1200, 1200, 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, recv, dst := udpPair(t, "udp4", "127.0.0.1:0", "127.0.0.1:0")
			buf, msgs := datagrams(tt.sizes)
			pkts, n, err := sendRuns(sock, dst, buf, tt.sizes)
			if err != nil || pkts != len(msgs) || n != len(buf) {
				t.Fatalf("sendRuns = %d, %d, %v; want %d, %d, nil", pkts, n, err, len(msgs), len(buf))
			}
			expect(t, recv, addrPortOf(sock.conn.LocalAddr()), msgs)
		})
	}
}

// TestFanBatch: a listener loop's deferred writes go out per relay socket and destination,
// each flow in its order, and are counted once sent.
func TestFanBatch(t *testing.T) {
	s1, recvA, dstA := udpPair(t, "udp4", "127.0.0.1:0", "127.0.0.1:0")
	s2, recvB, dstB := udpPair(t, "udp4", "127.0.0.1:0", "127.0.0.1:0")
	rc1, rc2 := &relayConn{sock: s1}, &relayConn{sock: s2}

	var f fanBatch
	readBuf := make([]byte, maxFrame)
	_, msgs := datagrams([]int{40, 41, 42, 43, 44, 45})
	// Each payload passes through the read buffer, as the loop's are; the batch must copy it.
	add := func(rc *relayConn, dst netip.AddrPort, m []byte) {
		copy(readBuf, m)
		f.add(rc, dst, readBuf[:len(m)])
		copy(readBuf, bytes.Repeat([]byte{0xee}, len(m))) // the next read overwrites it
	}
	add(rc1, dstA, msgs[0])
	add(rc2, dstB, msgs[1])
	add(rc1, dstA, msgs[2])
	add(rc1, dstB, msgs[3])
	add(rc1, dstA, msgs[4])
	add(rc2, dstB, msgs[5])
	var st counters
	f.flush(&st)
	if len(f.ents) != 0 || len(f.buf) != 0 {
		t.Errorf("batch not empty after flush: %d entries, %d bytes", len(f.ents), len(f.buf))
	}
	if got := st.pktsToPeer.Load(); got != 6 {
		t.Errorf("pktsToPeer = %d, want 6", got)
	}
	if got, want := st.bytesToPeer.Load(), uint64(40+41+42+43+44+45); got != want {
		t.Errorf("bytesToPeer = %d, want %d", got, want)
	}
	expect(t, recvA, addrPortOf(s1.conn.LocalAddr()), [][]byte{msgs[0], msgs[2], msgs[4]})
	// B gets rc2's two and rc1's one; per sender, in order.
	buf := make([]byte, 2048)
	_ = recvB.SetReadDeadline(time.Now().Add(rawTimeout))
	var fromRC1, fromRC2 [][]byte
	for range 3 {
		n, src, err := recvB.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		m := bytes.Clone(buf[:n])
		if src.Port() == addrPortOf(s1.conn.LocalAddr()).Port() {
			fromRC1 = append(fromRC1, m)
		} else {
			fromRC2 = append(fromRC2, m)
		}
	}
	if len(fromRC1) != 1 || !bytes.Equal(fromRC1[0], msgs[3]) ||
		len(fromRC2) != 2 || !bytes.Equal(fromRC2[0], msgs[1]) || !bytes.Equal(fromRC2[1], msgs[5]) {
		t.Errorf("B got %d from rc1, %d from rc2, or wrong contents/order", len(fromRC1), len(fromRC2))
	}
	f.flush(&st) // nothing left: no sends, no counts
	if got := st.pktsToPeer.Load(); got != 6 {
		t.Errorf("pktsToPeer after an empty flush = %d, want 6", got)
	}
}

// TestRelayBurstOrder: bursts through a real server in both directions, of mixed sizes
// and faster than one datagram per read, arrive complete and in order: the batched send
// paths (both directions) keep each flow's order and lose nothing.
func TestRelayBurstOrder(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peerPC, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerPC.Close()
	peer := peerPC.(*net.UDPConn)
	_ = peer.SetReadBuffer(4 << 20)
	cred := s.Mint("alice", time.Minute)
	cl := turnClient(t, s, "udp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	relayed, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	// First contact: permission and channel, and the relay address the peer sees.
	if _, err := relayed.WriteTo([]byte("hi"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = peer.SetReadDeadline(time.Now().Add(rawTimeout))
	_, relayFrom, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("first contact: %v", err)
	}

	const burst = 64
	sizes := make([]int, burst)
	for i := range sizes {
		sizes[i] = []int{1200, 1200, 1200, 700, 160, 160}[i%6] // video runs, audio pairs
	}
	_, msgs := datagrams(sizes)

	t.Run("peer to client", func(t *testing.T) {
		for _, m := range msgs {
			if _, err := peer.WriteToUDPAddrPort(m, relayFrom); err != nil {
				t.Fatal(err)
			}
		}
		_ = relayed.SetReadDeadline(time.Now().Add(rawTimeout))
		for i := range burst {
			n, _, err := relayed.ReadFrom(buf)
			if err != nil {
				t.Fatalf("client got %d of %d: %v", i, burst, err)
			}
			if !bytes.Equal(buf[:n], msgs[i]) {
				t.Fatalf("client datagram %d: %d bytes numbered %d, want %d bytes numbered %d",
					i, n, binary.BigEndian.Uint16(buf), len(msgs[i]), i)
			}
		}
	})
	t.Run("client to peer", func(t *testing.T) {
		for _, m := range msgs {
			if _, err := relayed.WriteTo(m, peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		_ = peer.SetReadDeadline(time.Now().Add(rawTimeout))
		for i := range burst {
			n, err := peer.Read(buf)
			if err != nil {
				t.Fatalf("peer got %d of %d: %v", i, burst, err)
			}
			if !bytes.Equal(buf[:n], msgs[i]) {
				t.Fatalf("peer datagram %d: %d bytes numbered %d, want %d bytes numbered %d",
					i, n, binary.BigEndian.Uint16(buf), len(msgs[i]), i)
			}
		}
	})
	waitFor(t, "relay counters", func() bool {
		st := s.Stats()
		return st.PacketsToPeer >= burst+1 && st.PacketsFromPeer >= burst
	})
}

// TestClientsMapFollowsAllocations: a UDP allocation registers its client for batched
// writes, and the entry goes when the allocation does (no entry outlives its socket).
func TestClientsMapFollowsAllocations(t *testing.T) {
	s := startServer(t, baseConfig(t))
	entries := func() int {
		n := 0
		s.clients.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	cred := s.Mint("alice", time.Minute)
	udp := turnClient(t, s, "udp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	tcp := turnClient(t, s, "tcp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	ru, err := udp.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := tcp.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	// Registered from OnAllocationCreated, which pion calls before answering.
	if got := entries(); got != 1 {
		t.Fatalf("%d client entries with a UDP and a TCP allocation, want 1 (UDP only)", got)
	}
	_ = rt.Close()
	_ = ru.Close() // Refresh with lifetime 0: pion deletes the allocation, closing its socket
	waitFor(t, "client entry removed", func() bool { return entries() == 0 })
}
