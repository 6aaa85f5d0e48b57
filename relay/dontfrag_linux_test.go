package relay

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// TestDontFragment: DONT-FRAGMENT is accepted and the relay socket sends with DF.
func TestDontFragment(t *testing.T) {
	if !dontFragmentSupported {
		t.Skip("DONT-FRAGMENT is honoured on Linux only")
	}
	s := startServer(t, baseConfig(t))
	cred := s.Mint("df", time.Minute)
	for _, df := range []bool{false, true} {
		c := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
		attrs := []stun.Setter{requestedTransportUDP}
		if df {
			attrs = append(attrs, rawAttr(stun.AttrDontFragment))
		}
		r := c.signed(stun.MethodAllocate, attrs...)
		if got := errorCode(r); got != 0 {
			t.Fatalf("Allocate (DONT-FRAGMENT %v) = %d", df, got)
		}
		port := relayedPort(t, r)
		rc := s.relays.lookup(&s.relays.v4, port)
		if rc == nil {
			t.Fatalf("no relay socket on port %d", port)
		}
		raw, err := rc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mode int
		var gerr error
		_ = raw.Control(func(fd uintptr) { mode, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		if got := mode == unix.IP_PMTUDISC_DO; got != df {
			t.Errorf("DONT-FRAGMENT %v: relay socket IP_MTU_DISCOVER = %d", df, mode)
		}
	}
}
