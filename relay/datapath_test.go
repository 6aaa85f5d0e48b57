package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// bigEchoPeer echoes datagrams up to 64 KiB.
func bigEchoPeer(t testing.TB) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr)
}

func channelData(ch uint16, p []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, ch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	return append(b, p...)
}

// TestJumboChannelData: datagrams of up to 9,000+ bytes are relayed in both directions over
// a channel (pion's own path dropped everything over 1,600), and without a channel as Send
// and Data indications.
func TestJumboChannelData(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peer := bigEchoPeer(t)
	cred := s.Mint("jumbo", time.Minute)
	c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(c.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	buf := make([]byte, 65536)
	for _, size := range []int{1, 1500, 1597, 4000, 9000, maxFrame - 4} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := c.conn.WriteTo(channelData(0x4001, payload), s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%d bytes: no echo: %v", size, err)
		}
		got := buf[:n]
		if len(got) < 4 || binary.BigEndian.Uint16(got) != 0x4001 || int(binary.BigEndian.Uint16(got[2:])) != size ||
			!bytes.Equal(got[4:4+size], payload) || len(got)%4 != 0 {
			t.Fatalf("%d bytes: echo %d bytes, header %x", size, n, got[:min(4, n)])
		}
	}

	// Without a channel: a Send indication out, a Data indication back.
	c2 := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c2.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(c2.signed(stun.MethodCreatePermission, peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("CreatePermission = %d", got)
	}
	payload := bytes.Repeat([]byte{7}, 9000)
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeerAddress(addrPortOf(peer)), stun.RawAttribute{Type: stun.AttrData, Value: payload})
	if _, err := c2.conn.WriteTo(send.Raw, s.UDPAddr()); err != nil {
		t.Fatal(err)
	}
	_ = c2.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	n, _, err := c2.conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no Data indication: %v", err)
	}
	m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	derr := m.Decode()
	data, gerr := m.Get(stun.AttrData)
	if derr != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || gerr != nil || !bytes.Equal(data, payload) {
		t.Fatalf("Data indication %v: DATA %d bytes (%v), want %d", m, len(data), gerr, len(payload))
	}
}

// TestChannelDataRules: ChannelData on an unbound channel, too short, or with a length
// beyond the datagram is dropped; a bound one is relayed.
func TestChannelDataRules(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peer := bigEchoPeer(t)
	cred := s.Mint("rules", time.Minute)
	c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(c.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	bad := [][]byte{
		channelData(0x4002, []byte("unbound")),
		{0x40, 0x01, 0x00},
		append(channelData(0x4001, []byte("x"))[:2], 0x00, 0x09, 'x'), // length 9, 1 byte
	}
	for _, b := range bad {
		if _, err := c.conn.WriteTo(b, s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	good := channelData(0x4001, []byte("good"))
	if _, err := c.conn.WriteTo(good, s.UDPAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	n, _, err := c.conn.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], good) {
		t.Fatalf("first echo %x (%v), want only the good datagram %x", buf[:n], err, good)
	}
	waitFor(t, "relay counters", func() bool { return s.Stats().PacketsToPeer == 1 })
	if st := s.Stats(); st.PacketsToPeer != 1 {
		t.Errorf("PacketsToPeer = %d, want 1", st.PacketsToPeer)
	}
}

// TestChannelAfterPermissionExpiry: when the permission ends, its channel relays nothing
// more in either direction, though pion keeps the binding.
func TestChannelAfterPermissionExpiry(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peer := bigEchoPeer(t)
	cred := s.Mint("expiry", time.Minute)
	c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(c.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	// Expire the permission as pion's timer would.
	src, dst := c.conn.LocalAddr(), s.UDPAddr()
	s.flows.permissionDeleted(src, dst, peer.IP, &s.stats)
	for range 5 {
		if _, err := c.conn.WriteTo(channelData(0x4001, []byte("after")), s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Two Binding round trips on the same socket and listener: when the second is answered,
	// the datagrams sent before the first were handled and any relayed batch was sent (the
	// listener flushes before it reads again).
	for range 2 {
		if r := c.do(stun.MustBuild(stun.TransactionID, stun.BindingRequest)); r == nil {
			t.Fatal("no Binding answer")
		}
	}
	if got := s.Stats().PacketsToPeer; got != 0 {
		t.Errorf("PacketsToPeer = %d after the permission expired, want 0", got)
	}
}

// dataPathRig is a server with one allocation whose client and peer are plain sockets, for
// the allocation checks below: they drive the data path's functions directly.
func dataPathRig(t testing.TB) (*Server, *filterConn, *relayConn, netip.AddrPort) {
	s := startServer(t, baseConfig(t))
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	conn, _, err := s.relays.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
	if err != nil {
		t.Fatal(err)
	}
	rc := conn.(*relayConn)
	t.Cleanup(func() { _ = rc.Close() })
	// A listener of our own, not read by pion, so the test owns its batch.
	lc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := newFilterConn(s, lc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fc.Close() })
	client := netip.MustParseAddrPort("127.0.0.1:9") // discard: sends to it go nowhere
	peer := addrPortOf(sink.LocalAddr())
	rc.out.Store(&outBatch{sock: fc.sock, dst: client})
	s.byClient.put(client, rc)
	a := &flowAlloc{rc: rc, perms: map[netip.Addr]struct{}{peer.Addr(): {}}, chans: map[uint16]netip.AddrPort{0x4001: peer}}
	rc.chans.Store(newChanTable(a))
	return s, fc, rc, peer
}

// TestChannelDataNoAllocs: relaying ChannelData allocates nothing, either way.
func TestChannelDataNoAllocs(t *testing.T) {
	s, fc, rc, peer := dataPathRig(t)
	in := channelData(0x4001, make([]byte, 1000))
	client := netip.MustParseAddrPort("127.0.0.1:9")
	toPeer := testing.AllocsPerRun(1000, func() {
		fc.serveChannelData(in, client)
		fc.fan.flush(&s.stats)
	})
	if toPeer != 0 {
		t.Errorf("client to peer: %v allocations per packet, want 0", toPeer)
	}
	payload := make([]byte, 1000)
	toClient := testing.AllocsPerRun(1000, func() {
		t := rc.chans.Load()
		e := t.byPeer[peer]
		rc.out.Load().addChannelData(e.ch, payload)
		rc.out.Load().flush()
	})
	if toClient != 0 {
		t.Errorf("peer to client: %v allocations per packet, want 0", toClient)
	}
}

func BenchmarkChannelDataToPeer(b *testing.B) {
	s, fc, _, _ := dataPathRig(b)
	in := channelData(0x4001, make([]byte, 200))
	client := netip.MustParseAddrPort("127.0.0.1:9")
	b.ReportAllocs()
	for b.Loop() {
		fc.serveChannelData(in, client)
		if len(fc.fan.ents) >= 8 {
			fc.fan.flush(&s.stats)
		}
	}
}

func BenchmarkChannelDataToClient(b *testing.B) {
	_, _, rc, peer := dataPathRig(b)
	payload := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		t := rc.chans.Load()
		e := t.byPeer[peer]
		out := rc.out.Load()
		out.addChannelData(e.ch, payload)
		if len(out.sizes) >= 8 {
			out.flush()
		}
	}
}

// TestJumboChannelDataTCP: the same over TURN over TCP, ChannelData padded as TCP needs.
func TestJumboChannelDataTCP(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peer := bigEchoPeer(t)
	cred := s.Mint("jumbotcp", time.Minute)
	tc, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := turn.NewSTUNConn(tc)
	t.Cleanup(func() { _ = conn.Close() })
	c := (&rawClient{t: t, conn: conn, srv: s.TCPAddr()}).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	if got := errorCode(c.signed(stun.MethodChannelBind, channelAttr(0x4001), peerAttr(addrPortOf(peer)))); got != 0 {
		t.Fatalf("ChannelBind = %d", got)
	}
	buf := make([]byte, 65536)
	// Not 4 bytes or fewer: pion's TCP framer waits for 9 bytes before it parses a frame,
	// so an 8-byte ChannelData frame stalls until the next one (an upstream bug).
	for _, size := range []int{5, 1500, 9000} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		frame := appendChannelData(nil, 0x4001, payload)
		if _, err := tc.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(rawTimeout))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%d bytes: no echo: %v (stats %+v)", size, err, s.Stats())
		}
		got := buf[:n]
		if len(got) < 4+size || binary.BigEndian.Uint16(got) != 0x4001 || !bytes.Equal(got[4:4+size], payload) {
			t.Fatalf("%d bytes: echo of %d bytes, header %x", size, n, got[:min(4, n)])
		}
	}
}
