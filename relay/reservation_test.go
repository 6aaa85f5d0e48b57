package relay

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var evenPortReserve = stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}

func relayedPort(t testing.TB, m *stun.Message) int {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
		t.Fatalf("no XOR-RELAYED-ADDRESS: %v", err)
	}
	return a.Port
}

// TestReservationAnySocket: an EVEN-PORT (R=1) Allocate, then a RESERVATION-TOKEN Allocate
// from another client port, as coturn's turnutils_uclient does for RTP and RTCP. With four
// listening sockets the second request lands on another socket than the first most of the
// time; every pair must get port+1 wherever it lands.
//
// Neither pion nor the relay holds the reserved port (see reservations), so another process
// on the machine (a parallel test binary) may bind port+1 in between: the server's 508 is
// then right. Such a pair is released and tried again, once a plain bind has shown that
// port+1 is indeed taken; a 508 with port+1 free fails the test.
func TestReservationAnySocket(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Sockets = 4
	s := startServer(t, cfg)
	cred := s.Mint("rtp", time.Minute)
	const pairs, maxCollisions = 12, 12
	collisions := 0
	for i := 0; i < pairs; i++ {
		rtp := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
		r := rtp.signed(stun.MethodAllocate, requestedTransportUDP, evenPortReserve)
		if got := errorCode(r); got != 0 {
			t.Fatalf("pair %d: EVEN-PORT Allocate = %d", i, got)
		}
		port := relayedPort(t, r)
		tok, err := r.Get(stun.AttrReservationToken)
		if err != nil || port%2 != 0 {
			t.Fatalf("pair %d: port %d, token %x (%v): want an even port and a token", i, port, tok, err)
		}
		rtcp := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
		r2 := rtcp.signed(stun.MethodAllocate, requestedTransportUDP, stun.RawAttribute{Type: stun.AttrReservationToken, Value: tok})
		if got := errorCode(r2); got == 508 && collisions < maxCollisions {
			probe, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port+1))
			if err == nil {
				_ = probe.Close()
				t.Fatalf("pair %d: RESERVATION-TOKEN Allocate = 508 with port %d free", i, port+1)
			}
			t.Logf("pair %d: port %d taken by another socket (%v); trying again", i, port+1, err)
			collisions++
			_ = rtp.signed(stun.MethodRefresh, lifetimeZero)
			i--
			continue
		} else if got != 0 {
			t.Fatalf("pair %d: RESERVATION-TOKEN Allocate = %d, want success (after %d ports taken by others)", i, got, collisions)
		}
		if got := relayedPort(t, r2); got != port+1 {
			t.Fatalf("pair %d: reserved allocation on port %d, want %d", i, got, port+1)
		}
	}
}

func TestReservationErrors(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("rtp", time.Minute)
	tok := stun.RawAttribute{Type: stun.AttrReservationToken, Value: []byte("abcdefgh")}
	raf := stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{1, 0, 0, 0}}
	tests := []struct {
		name  string
		attrs []stun.Setter
		want  int
	}{
		{"unknown token", []stun.Setter{requestedTransportUDP, tok}, 508},
		{"token with EVEN-PORT", []stun.Setter{requestedTransportUDP, tok, evenPortReserve}, 400},
		{"token with REQUESTED-ADDRESS-FAMILY", []stun.Setter{requestedTransportUDP, tok, raf}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
			r := c.signed(stun.MethodAllocate, tt.attrs...)
			if got := errorCode(r); got != tt.want {
				t.Fatalf("Allocate = %d, want %d", got, tt.want)
			}
			if err := stun.MessageIntegrity(longTermKey(cred.Username, "switchboard", cred.Password)).Check(r); err != nil {
				t.Errorf("error response not signed: %v", err)
			}
		})
	}
}

// TestCoturnUclientRTCP: turnutils_uclient in its default mode (RTP and RTCP allocations,
// EVEN-PORT then RESERVATION-TOKEN) over several listening sockets.
func TestCoturnUclientRTCP(t *testing.T) {
	uclient := coturnTool(t, "turnutils_uclient")
	cfg := baseConfig(t)
	cfg.Sockets = 4
	s := startServer(t, cfg)
	// uclient sends RTP to the peer port and RTCP to the next one: echo on both.
	var peer *net.UDPAddr
	for peer == nil {
		p := echoPeer(t, "udp4", "127.0.0.1:0")
		if p.Port%2 != 0 {
			continue
		}
		if c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p.Port+1)); err == nil {
			_ = c.Close()
			echoPeer(t, "udp4", fmt.Sprintf("127.0.0.1:%d", p.Port+1))
			peer = p
		}
	}
	const clients, messages = 6, 20
	out := runTool(t, uclient,
		"-W", testSecret, "-u", "coturn", "-e", "127.0.0.1", "-r", fmt.Sprint(peer.Port),
		"-p", fmt.Sprint(addrPortOf(s.UDPAddr()).Port()),
		"-m", fmt.Sprint(clients), "-n", fmt.Sprint(messages), "-z", "5", "127.0.0.1")
	checkUclientLoss(t, out)
	if got := s.Stats().AllocationsCreated; got <= clients {
		t.Fatalf("AllocationsCreated = %d, want more than %d (RTCP allocations too):\n%s", got, clients, out)
	}
}

// TestReservedPortHeld: while a token is live, the port it reserves is skipped by every
// other allocation's port choice (no socket holds it until the second Allocate); it is
// free again once the token has expired.
func TestReservedPortHeld(t *testing.T) {
	var r reservations
	now := time.Now()
	m, err := stun.Build(stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse), stun.TransactionID,
		stun.RawAttribute{Type: stun.AttrReservationToken, Value: []byte("abcdefgh")},
		&stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 2), Port: 20010})
	if err != nil {
		t.Fatal(err)
	}
	// XORMappedAddress builds XOR-MAPPED-ADDRESS; the relay reads XOR-RELAYED-ADDRESS.
	for i, a := range m.Attributes {
		if a.Type == stun.AttrXORMappedAddress {
			m.Attributes[i].Type = stun.AttrXORRelayedAddress
		}
	}
	m.WriteAttributes()
	dec := &stun.Message{Raw: append([]byte(nil), m.Raw...)}
	if err := dec.Decode(); err != nil {
		t.Fatal(err)
	}
	r.learn(dec, now)
	tests := []struct {
		port int
		at   time.Time
		want bool
	}{
		{20011, now, true},
		{20010, now, false}, // the even port is the first allocation's own, bound already
		{20012, now, false},
		{20011, now.Add(reservationLifetime + time.Second), false},
	}
	for _, tt := range tests {
		if got := r.isHeld(tt.port, tt.at); got != tt.want {
			t.Errorf("isHeld(%d, +%v) = %v, want %v", tt.port, tt.at.Sub(now), got, tt.want)
		}
	}
}
