package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestRFC5780: each CHANGE-REQUEST comes back from the address it asks for, naming it in
// RESPONSE-ORIGIN, and RESPONSE-PORT moves the answer to another port of the client.
func TestRFC5780(t *testing.T) {
	cfg := baseConfig(t)
	cfg.OtherAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), freeUDPPort(t, "127.0.0.3"))
	s := startServer(t, cfg)
	main := addrPortOf(s.UDPAddr())
	other := cfg.OtherAddr
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	second, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	changeReq := func(flags byte) stun.RawAttribute {
		return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}}
	}
	tests := []struct {
		name         string
		to           netip.AddrPort
		attrs        []stun.Setter
		wantFrom     netip.AddrPort
		secondSocket bool
	}{
		{"plain", main, nil, main, false},
		{"change port", main, []stun.Setter{changeReq(changePort)}, netip.AddrPortFrom(main.Addr(), other.Port()), false},
		{"change IP", main, []stun.Setter{changeReq(changeIP)}, netip.AddrPortFrom(other.Addr(), main.Port()), false},
		{"change both", main, []stun.Setter{changeReq(changeIP | changePort)}, other, false},
		{"to the other address", other, nil, other, false},
		{"to the other address, change both", other, []stun.Setter{changeReq(changeIP | changePort)}, main, false},
		{"response port", main, []stun.Setter{stun.RawAttribute{Type: stun.AttrResponsePort,
			Value: []byte{byte(addrPortOf(second.LocalAddr()).Port() >> 8), byte(addrPortOf(second.LocalAddr()).Port()), 0, 0}}}, main, true},
	}
	buf := make([]byte, 1500)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, tt.attrs...)...)
			if _, err := client.WriteTo(req.Raw, net.UDPAddrFromAddrPort(tt.to)); err != nil {
				t.Fatal(err)
			}
			rd := client
			if tt.secondSocket {
				rd = second
			}
			_ = rd.SetReadDeadline(time.Now().Add(rawTimeout))
			n, from, err := rd.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess || m.TransactionID != req.TransactionID {
				t.Fatalf("answer %v (%v), want a Binding success", m, err)
			}
			if got := addrPortOf(from); got != tt.wantFrom {
				t.Errorf("answer from %v, want %v", got, tt.wantFrom)
			}
			var origin, oth stun.MappedAddress
			if err := origin.GetFromAs(m, stun.AttrResponseOrigin); err != nil || origin.Port != int(tt.wantFrom.Port()) {
				t.Errorf("RESPONSE-ORIGIN %v (%v), want %v", origin, err, tt.wantFrom)
			}
			if err := oth.GetFromAs(m, stun.AttrOtherAddress); err != nil {
				t.Errorf("no OTHER-ADDRESS: %v", err)
			}
			var xma stun.XORMappedAddress
			if err := xma.GetFrom(m); err != nil || xma.Port != int(addrPortOf(client.LocalAddr()).Port()) {
				t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want the client's", xma, err)
			}
		})
	}
}

func TestOtherAddrValidation(t *testing.T) {
	tests := []struct {
		listen string
		other  string
	}{
		{":3478", "127.0.0.3:3479"},          // no specific IP
		{"127.0.0.1:3478", "127.0.0.1:3479"}, // same IP
		{"127.0.0.1:3478", "127.0.0.3:3478"}, // same port
		{"127.0.0.1:3478", "[::1]:3479"},     // other family
		{"127.0.0.1:3478", "127.0.0.3:0"},    // no port
	}
	for _, tt := range tests {
		cfg := baseConfig(t)
		cfg.ListenAddr, cfg.OtherAddr = tt.listen, netip.MustParseAddrPort(tt.other)
		if _, err := New(cfg); err == nil {
			t.Errorf("New(ListenAddr %s, OtherAddr %s) succeeded, want an error", tt.listen, tt.other)
		}
	}
}
