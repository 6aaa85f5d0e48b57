package relay

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// FuzzServer feeds arbitrary datagrams to a running server: it must never panic and must
// keep answering Binding requests. The seed corpus (testdata/fuzz/FuzzServer) holds valid
// and broken STUN requests, ChannelData, indications and junk.
func FuzzServer(f *testing.F) {
	cfg := baseConfig(f)
	cfg.Sockets = 1
	// The fuzzer sends thousands of unauthenticated requests a second from one address.
	cfg.UnauthRate, cfg.UnauthBurst = 1e9, 1e9
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Listen(f.Context()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = conn.Close() })
	f.Add([]byte{})
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)

	buf := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := conn.WriteTo(data, s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := conn.WriteTo(req.Raw, s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(rawTimeout))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no Binding answer after datagram %x: %v (stats %+v)", data, err, s.Stats())
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() == nil && m.TransactionID == req.TransactionID {
				var xma stun.XORMappedAddress
				if m.Type != stun.BindingSuccess || xma.GetFrom(m) != nil {
					t.Fatalf("Binding answer %v without mapped address", m)
				}
				return
			}
		}
	})
}

// FuzzParseRESTUsername: never panics; what it accepts is a canonical username that
// formats back to an equivalent one.
func FuzzParseRESTUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1:a:b", ":", "", "12:\x00", "0001:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		exp, user, err := parseRESTUsername(in)
		if err != nil {
			return
		}
		again := strconv.FormatInt(exp.Unix(), 10) + ":" + user
		exp2, user2, err := parseRESTUsername(again)
		if err != nil || exp2 != exp || user2 != user || len(in) > maxUsernameLen {
			t.Fatalf("parse(%q) = %v %q, reformatted %q parses to %v %q %v", in, exp, user, again, exp2, user2, err)
		}
	})
}

// FuzzOpenNonce: never panics; a sealed nonce opens for its own address only.
func FuzzOpenNonce(f *testing.F) {
	f.Add([]byte("abc.0011"), []byte("inner"), uint16(3478))
	f.Add([]byte(""), []byte(""), uint16(0))
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, n, inner []byte, port uint16) {
		addr := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), port)
		if got, ok := openNonce(key, n, addr, false); ok && len(got) >= len(n) {
			t.Fatalf("openNonce(%q) = %q: inner not shorter than the nonce", n, got)
		}
		sealed := sealNonce(key, inner, addr, false)
		if got, ok := openNonce(key, sealed, addr, false); !ok || string(got) != string(inner) {
			t.Fatalf("sealed %q does not open to %q", sealed, inner)
		}
		other := netip.AddrPortFrom(addr.Addr(), port+1)
		if _, ok := openNonce(key, sealed, other, false); ok {
			t.Fatalf("nonce for %v opens for %v", addr, other)
		}
		if _, ok := openNonce(key, sealed, addr, true); ok {
			t.Fatal("UDP nonce opens for TCP")
		}
	})
}

// FuzzChannelData: the ChannelData parser on the data path never panics, relays exactly
// the declared payload of a well-formed datagram on the bound channel, and nothing else.
func FuzzChannelData(f *testing.F) {
	_, fc, rc, peer := dataPathRig(f)
	client := netip.MustParseAddrPort("127.0.0.1:9")
	f.Add([]byte("\x40\x01\x00\x04ping"))
	f.Add([]byte("\x40\x01\x00\x09x"))
	f.Add([]byte("\x40\x02\x00\x00"))
	f.Add([]byte("\x40"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fc.serveChannelData(b, client)
		defer func() {
			clear(fc.fan.ents)
			fc.fan.ents, fc.fan.buf = fc.fan.ents[:0], fc.fan.buf[:0]
		}()
		want := len(b) >= 4 && b[0] == 0x40 && b[1] == 0x01 && int(b[2])<<8|int(b[3]) <= len(b)-4
		if !want {
			if len(fc.fan.ents) != 0 {
				t.Fatalf("serveChannelData(%x) relayed %d datagrams, want none", b, len(fc.fan.ents))
			}
			return
		}
		n := int(b[2])<<8 | int(b[3])
		if len(fc.fan.ents) != 1 {
			t.Fatalf("serveChannelData(%x) relayed %d datagrams, want 1", b, len(fc.fan.ents))
		}
		e := fc.fan.ents[0]
		if e.rc != rc || e.dst != peer || string(fc.fan.buf[e.off:e.off+e.n]) != string(b[4:4+n]) {
			t.Fatalf("serveChannelData(%x) relayed %x to %v, want %x to %v", b, fc.fan.buf[e.off:e.off+e.n], e.dst, b[4:4+n], peer)
		}
	})
}

// FuzzCheckAllocate: the Allocate rules never panic on any decodable request; a request
// they let through asks for UDP, and every refusal is one of the RFC's codes.
func FuzzCheckAllocate(f *testing.F) {
	s, err := New(baseConfig(f))
	if err != nil {
		f.Fatal(err)
	}
	for _, attrs := range [][]stun.Setter{
		{requestedTransportUDP},
		{requestedTransportUDP, stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{2, 0, 0, 0}}},
		{requestedTransportUDP, stun.RawAttribute{Type: attrAdditionalAddressFamily, Value: []byte{1, 0, 0, 0}}},
		{requestedTransportUDP, stun.RawAttribute{Type: stun.AttrReservationToken, Value: []byte("abcdefgh")}},
		{requestedTransportUDP, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}},
		{stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}}},
	} {
		m := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)}, attrs...)...)
		f.Add(m.Raw)
	}
	allowed := map[stun.ErrorCode]bool{0: true, 400: true, 440: true, 442: true, 508: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := &stun.Message{Raw: append([]byte(nil), raw...)}
		if m.Decode() != nil {
			return
		}
		v := s.checkAllocate(m, "fuzz", false, time.Now())
		if !allowed[v.code] {
			t.Fatalf("checkAllocate(%v) = %d", m, v.code)
		}
		if v.code == 0 {
			if tr, err := m.Get(stun.AttrRequestedTransport); err != nil || len(tr) != 4 || tr[0] != 17 { // over UDP
				t.Fatalf("checkAllocate(%v) passed a request without REQUESTED-TRANSPORT UDP", m)
			}
			if v.lifetime != 0 && (v.lifetime < defaultLifetime || v.lifetime > maxLifetime) {
				t.Fatalf("checkAllocate(%v) rewrote LIFETIME to %d", m, v.lifetime)
			}
		}
	})
}
