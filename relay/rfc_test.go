package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func rawAttr(t stun.AttrType, v ...byte) stun.RawAttribute {
	return stun.RawAttribute{Type: t, Value: v}
}

func lifetimeAttr(sec uint32) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: binary.BigEndian.AppendUint32(nil, sec)}
}

// checkSignedError fails unless r is an error response with a reason phrase, signed with key.
func checkSignedError(t testing.TB, r *stun.Message, key []byte) {
	t.Helper()
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(r); err != nil || len(ec.Reason) == 0 {
		t.Errorf("error response %v: ERROR-CODE %v (%v), want a reason phrase", r, ec, err)
	}
	if err := stun.MessageIntegrity(key).Check(r); err != nil {
		t.Errorf("error response %v (%d) not signed: %v", r, ec.Code, err)
	}
}

// TestAllocateRFC8656 covers the Allocate rules where pion answers otherwise (RFC 8656 §7.2):
// every error is signed and carries a reason phrase.
func TestAllocateRFC8656(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("rfc", time.Minute)
	key := longTermKey(cred.Username, "switchboard", cred.Password)
	tcpTransport := rawAttr(stun.AttrRequestedTransport, 6, 0, 0, 0)
	rafV4 := rawAttr(stun.AttrRequestedAddressFamily, familyIPv4, 0, 0, 0)
	rafBad := rawAttr(stun.AttrRequestedAddressFamily, 3, 0, 0, 0)
	aafV4 := rawAttr(attrAdditionalAddressFamily, familyIPv4, 0, 0, 0)
	aafV6 := rawAttr(attrAdditionalAddressFamily, familyIPv6, 0, 0, 0)
	tests := []struct {
		name         string
		attrs        []stun.Setter
		want         int
		wantLifetime uint32 // on success; 0: not checked
	}{
		{"TCP relay over UDP (RFC 6062 §5.1)", []stun.Setter{tcpTransport}, 400, 0},
		{"unknown transport", []stun.Setter{rawAttr(stun.AttrRequestedTransport, 99, 0, 0, 0)}, 442, 0},
		{"no REQUESTED-TRANSPORT", nil, 400, 0},
		{"unknown family", []stun.Setter{requestedTransportUDP, rafBad}, 440, 0},
		{"ADDITIONAL-ADDRESS-FAMILY IPv4", []stun.Setter{requestedTransportUDP, aafV4}, 400, 0},
		{"REQUESTED- and ADDITIONAL-ADDRESS-FAMILY", []stun.Setter{requestedTransportUDP, rafV4, aafV6}, 400, 0},
		{"ADDITIONAL-ADDRESS-FAMILY IPv6 alone: IPv4 relay", []stun.Setter{requestedTransportUDP, aafV6}, 0, 0},
		{"LIFETIME 0 gets the default", []stun.Setter{requestedTransportUDP, lifetimeAttr(0)}, 0, 600},
		{"LIFETIME 2 h gets the maximum", []stun.Setter{requestedTransportUDP, lifetimeAttr(7200)}, 0, maxLifetime},
		{"LIFETIME 20 min", []stun.Setter{requestedTransportUDP, lifetimeAttr(1200)}, 0, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
			r := c.signed(stun.MethodAllocate, tt.attrs...)
			if got := errorCode(r); got != tt.want {
				t.Fatalf("Allocate = %d, want %d (%v)", got, tt.want, r)
			}
			if tt.want != 0 {
				checkSignedError(t, r, key)
				return
			}
			var relayed stun.XORMappedAddress
			if err := relayed.GetFromAs(r, stun.AttrXORRelayedAddress); err != nil || relayed.IP.To4() == nil {
				t.Errorf("relayed address %v (%v), want IPv4", relayed, err)
			}
			if tt.wantLifetime != 0 {
				if lt, ok := lifetimeOf(r); !ok || lt != tt.wantLifetime {
					t.Errorf("LIFETIME = %d, want %d", lt, tt.wantLifetime)
				}
			}
		})
	}
}

// TestIPv6ClientGetsIPv4Relay: with no REQUESTED-ADDRESS-FAMILY the relay is IPv4, whatever
// the client's family (RFC 8656 §7.2).
func TestIPv6ClientGetsIPv4Relay(t *testing.T) {
	if !hostHasIPv6() {
		t.Skip("host has no IPv6")
	}
	cfg := baseConfig(t)
	cfg.ListenAddr = "[::1]:0"
	s := startServer(t, cfg)
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cred := s.Mint("v6", time.Minute)
	c := (&rawClient{t: t, conn: conn, srv: s.UDPAddr()}).login(stun.MethodAllocate, cred.Username, cred.Password)
	r := c.signed(stun.MethodAllocate, requestedTransportUDP)
	if got := errorCode(r); got != 0 {
		t.Fatalf("Allocate from IPv6 = %d, want success", got)
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(r, stun.AttrXORRelayedAddress); err != nil || !relayed.IP.Equal(cfg.PublicIPv4.AsSlice()) {
		t.Fatalf("relayed address %v (%v), want %v", relayed, err, cfg.PublicIPv4)
	}
}

func TestChannelNumbers(t *testing.T) {
	s := startServer(t, baseConfig(t))
	peer := addrPortOf(echoPeer(t, "udp4", "127.0.0.1:0"))
	cred := s.Mint("chan", time.Minute)
	key := longTermKey(cred.Username, "switchboard", cred.Password)
	c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	tests := []struct {
		ch   uint16
		peer uint16 // port offset from the echo peer's
		want int
	}{
		{0x3FFF, 0, 400}, {0x8000, 0, 400}, {0xFFFF, 0, 400}, {0x4000, 0, 0}, {0x7FFF, 1, 0},
	}
	for _, tt := range tests {
		r := c.signed(stun.MethodChannelBind, channelAttr(tt.ch), peerAttr(netip.AddrPortFrom(peer.Addr(), peer.Port()+tt.peer)))
		if got := errorCode(r); got != tt.want {
			t.Errorf("ChannelBind %#x = %d, want %d", tt.ch, got, tt.want)
		}
		if tt.want != 0 {
			checkSignedError(t, r, key)
		}
	}
}

// TestFingerprint: a Binding with a wrong FINGERPRINT is discarded, not answered. A good
// Binding sent after it is the marker: the server answers one source's requests in order,
// so the bad one's answer, if any, would arrive first.
func TestFingerprint(t *testing.T) {
	s := startServer(t, baseConfig(t))
	c := newRawClient(t, s)
	good := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if r := c.do(good); r == nil || r.Type != stun.BindingSuccess {
		t.Fatalf("Binding with a good FINGERPRINT: %v", r)
	}
	bad := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	bad.Raw[len(bad.Raw)-1] ^= 0xFF
	if _, err := c.conn.WriteTo(bad.Raw, c.srv); err != nil {
		t.Fatal(err)
	}
	marker := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := c.conn.WriteTo(marker.Raw, c.srv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer to the Binding sent after the bad one: %v", err)
		}
		r := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := r.Decode(); err != nil {
			t.Fatalf("undecodable answer: %v", err)
		}
		if r.TransactionID == bad.TransactionID {
			t.Fatalf("Binding with a wrong FINGERPRINT answered: %v", r)
		}
		if r.TransactionID == marker.TransactionID {
			break
		}
	}
}

// TestErrorResponsesSigned: an error pion sends for an authenticated request (here 437, a
// second Allocate on the same 5-tuple) carries a reason phrase and MESSAGE-INTEGRITY.
func TestErrorResponsesSigned(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("sig", time.Minute)
	c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := c.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	r := c.signed(stun.MethodAllocate, requestedTransportUDP)
	if got := errorCode(r); got != 437 {
		t.Fatalf("second Allocate = %d, want 437", got)
	}
	checkSignedError(t, r, longTermKey(cred.Username, "switchboard", cred.Password))
}
