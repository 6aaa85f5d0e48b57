package relay

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// rawUsername is a USERNAME attribute without pion/stun's length check, for oversized ones.
type rawUsername string

func (u rawUsername) AddTo(m *stun.Message) error {
	m.Add(stun.AttrUsername, []byte(u))
	return nil
}

func TestAllocateAuthFailures(t *testing.T) {
	s := startServer(t, baseConfig(t))
	now := time.Now()
	good := func(user string, exp time.Time) (string, string) {
		c := NewCredential(testSecret, user, exp)
		return c.Username, c.Password
	}
	signedBy := func(username string) (string, string) { return username, restPassword(testSecret, username) }
	future := now.Add(time.Hour).Unix()
	ts := func(s string) string { return strings.ReplaceAll(s, "T", itoa(future)) }
	tests := []struct {
		name     string
		creds    func() (string, string)
		realm    string
		reason   string
		wantCode int
	}{
		{"expired", func() (string, string) { return good("u", now.Add(-time.Minute)) }, "", "expired", 401},
		{"expired just now", func() (string, string) { return good("u", now.Add(-time.Second)) }, "", "expired", 401},
		{"wrong secret", func() (string, string) {
			c := NewCredential("not-the-secret", "u", now.Add(time.Hour))
			return c.Username, c.Password
		}, "", "bad-signature", 401},
		{"wrong password", func() (string, string) { u, _ := good("u", now.Add(time.Hour)); return u, "x" }, "", "bad-signature", 401},
		{"too far in the future", func() (string, string) { return good("u", now.Add(48*time.Hour)) }, "", "too-far-future", 401},
		{"wrong realm", func() (string, string) { return good("u", now.Add(time.Hour)) }, "other", "wrong-realm", 401},
		{"no colon", func() (string, string) { return signedBy(itoa(future)) }, "", "malformed", 401},
		{"letters", func() (string, string) { return signedBy("abc:u") }, "", "malformed", 401},
		{"empty user", func() (string, string) { return signedBy(ts("T:")) }, "", "malformed", 401},
		{"empty timestamp", func() (string, string) { return signedBy(":u") }, "", "malformed", 401},
		{"signed timestamp", func() (string, string) { return signedBy(ts("+T:u")) }, "", "malformed", 401},
		{"negative timestamp", func() (string, string) { return signedBy("-5:u") }, "", "malformed", 401},
		{"space", func() (string, string) { return signedBy(ts(" T:u")) }, "", "malformed", 401},
		{"huge timestamp", func() (string, string) { return signedBy("99999999999999999999999:u") }, "", "malformed", 401},
		{"NUL in user", func() (string, string) { return signedBy(ts("T:u\x00x")) }, "", "malformed", 401},
		{"newline in user", func() (string, string) { return signedBy(ts("T:u\nx")) }, "", "malformed", 401},
		{"invalid UTF-8", func() (string, string) { return signedBy(ts("T:u\xff")) }, "", "malformed", 401},
		{"user too long", func() (string, string) { return signedBy(ts("T:" + strings.Repeat("u", 400))) }, "", "malformed", 401},
		{"over STUN limit", func() (string, string) { return signedBy(ts("T:" + strings.Repeat("u", 600))) }, "", "malformed", 401},
		{"huge", func() (string, string) { return signedBy(ts("T:" + strings.Repeat("é", 700))) }, "", "malformed", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().AuthFailures[tt.reason]
			c := newRawClient(t, s)
			realm, nonce := c.challenge(stun.MethodAllocate)
			if tt.realm != "" {
				realm = []byte(tt.realm)
			}
			username, password := tt.creds()
			r := c.do(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP,
				rawUsername(username), stun.NewRealm(string(realm)), stun.NewNonce(string(nonce)),
				stun.NewLongTermIntegrity(username, string(realm), password)))
			if got := errorCode(r); got != tt.wantCode {
				t.Fatalf("Allocate = %d, want %d", got, tt.wantCode)
			}
			var fresh stun.Nonce
			if fresh.GetFrom(r) != nil || bytes.Equal(fresh, nonce) {
				t.Errorf("401 carries nonce %q, want a fresh one (old %q)", fresh, nonce)
			}
			if got := s.Stats().AuthFailures[tt.reason]; got != before+1 {
				t.Errorf("AuthFailures[%q] = %d, want %d", tt.reason, got, before+1)
			}
		})
	}
	// The server still works after all that.
	c := newRawClient(t, s)
	cred := s.Mint("u", time.Minute)
	if got := c.login(stun.MethodAllocate, cred.Username, cred.Password).allocate(); got != 0 {
		t.Fatalf("good Allocate = %d, want success", got)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCredentialRotation(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Secrets = []string{"new-secret", "old-secret"}
	s := startServer(t, cfg)
	minted := s.Mint("carol", time.Minute)
	if want := NewCredential("new-secret", "carol", minted.Expires); minted != want {
		t.Fatalf("Mint = %+v, want signed with the first secret %+v", minted, want)
	}
	tests := []struct {
		name   string
		secret string
		want   int
	}{
		{"new secret", "new-secret", 0},
		{"old secret still verifies", "old-secret", 0},
		{"retired secret", "older-secret", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred := NewCredential(tt.secret, "carol", time.Now().Add(time.Minute))
			c := newRawClient(t, s)
			if got := c.login(stun.MethodAllocate, cred.Username, cred.Password).allocate(); got != tt.want {
				t.Errorf("Allocate = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestGeneratedSecret(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Secrets = nil
	s1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := New(cfg)
	if !s1.GeneratedSecret() || len(s1.auth.secrets) != 1 || len(s1.auth.secrets[0]) < 32 || s1.auth.secrets[0] == s2.auth.secrets[0] {
		t.Fatalf("generated secrets %q and %q: want two distinct strong secrets", s1.auth.secrets, s2.auth.secrets)
	}
	s := startServer(t, cfg)
	cred := s.Mint("dave", time.Minute)
	if got := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password).allocate(); got != 0 {
		t.Fatalf("Allocate with minted credential = %d, want success", got)
	}
}

func TestNonceBinding(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("erin", time.Minute)
	a := newRawClient(t, s)
	_, n1 := a.challenge(stun.MethodAllocate)
	realm, n2 := a.challenge(stun.MethodAllocate)
	if bytes.Equal(n1, n2) {
		t.Fatalf("two challenges gave the same nonce %q", n1)
	}
	// Client b replays a's nonce from its own address: 438 with a fresh nonce.
	b := newRawClient(t, s)
	stolen := &session{rawClient: b, username: cred.Username, password: cred.Password, realm: realm, nonce: n2}
	r := stolen.signed(stun.MethodAllocate, requestedTransportUDP)
	if got := errorCode(r); got != 438 {
		t.Fatalf("Allocate with another source's nonce = %d, want 438", got)
	}
	var fresh stun.Nonce
	if err := fresh.GetFrom(r); err != nil {
		t.Fatalf("438 without a nonce: %v", err)
	}
	stolen.nonce = fresh
	if got := stolen.allocate(); got != 0 {
		t.Fatalf("Allocate with the nonce from the 438 = %d, want success", got)
	}
	// A made-up nonce is stale too.
	stolen.nonce = []byte("made-up")
	if got := errorCode(stolen.signed(stun.MethodRefresh)); got != 438 {
		t.Fatalf("Refresh with a made-up nonce = %d, want 438", got)
	}
	// The rightful owner's nonce still works for a.
	owner := &session{rawClient: a, username: cred.Username, password: cred.Password, realm: realm, nonce: n2}
	if got := owner.allocate(); got != 0 {
		t.Fatalf("Allocate with own nonce = %d, want success", got)
	}
	if got := s.Stats().AuthFailures["stale-nonce"]; got != 2 {
		t.Errorf("AuthFailures[stale-nonce] = %d, want 2", got)
	}
}

func TestExistingAllocationRules(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxPermissions = 3
	s := startServer(t, cfg)
	alice := s.Mint("alice", time.Minute)
	bob := s.Mint("bob", time.Minute)
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	peer2 := netip.MustParseAddrPort("127.0.0.3:9")
	denied := netip.MustParseAddrPort("10.0.0.1:9")

	// No allocation: 437 for every method that needs one.
	none := newRawClient(t, s).login(stun.MethodRefresh, alice.Username, alice.Password)
	for _, m := range []struct {
		method stun.Method
		attrs  []stun.Setter
	}{
		{stun.MethodRefresh, nil},
		{stun.MethodCreatePermission, []stun.Setter{peerAttr(peer)}},
		{stun.MethodChannelBind, []stun.Setter{channelAttr(0x4000), peerAttr(peer)}},
	} {
		if got := errorCode(none.signed(m.method, m.attrs...)); got != 437 {
			t.Errorf("%v without allocation = %d, want 437", m.method, got)
		}
	}

	c := newRawClient(t, s)
	sa := c.login(stun.MethodAllocate, alice.Username, alice.Password)
	if got := sa.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	ak := allocKey{src: addrPortOf(c.conn.LocalAddr()), dst: addrPortOf(s.udp[0].LocalAddr())}
	perms := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.allocs[ak].perms)
	}

	// Same 5-tuple, another user's valid credentials: 441.
	sb := &session{rawClient: c, username: bob.Username, password: bob.Password, realm: sa.realm, nonce: sa.nonce}
	if got := errorCode(sb.signed(stun.MethodCreatePermission, peerAttr(peer))); got != 441 {
		t.Errorf("CreatePermission with another user's credentials = %d, want 441", got)
	}
	if got := errorCode(sb.signed(stun.MethodRefresh)); got != 441 {
		t.Errorf("Refresh with another user's credentials = %d, want 441", got)
	}

	tests := []struct {
		name      string
		method    stun.Method
		attrs     []stun.Setter
		want      int
		wantPerms int
	}{
		{"one denied peer refuses the whole request", stun.MethodCreatePermission, []stun.Setter{peerAttr(peer), peerAttr(denied)}, 403, 0},
		{"denied first", stun.MethodCreatePermission, []stun.Setter{peerAttr(denied), peerAttr(peer)}, 403, 0},
		{"mapped private address is private", stun.MethodCreatePermission, []stun.Setter{peerAttr(netip.MustParseAddrPort("[::ffff:10.0.0.1]:9"))}, 403, 0},
		{"ChannelBind to denied peer", stun.MethodChannelBind, []stun.Setter{channelAttr(0x4000), peerAttr(denied)}, 403, 0},
		{"allowed peers", stun.MethodCreatePermission, []stun.Setter{peerAttr(peer), peerAttr(peer2)}, 0, 2},
		{"refresh of existing permissions is free", stun.MethodCreatePermission, []stun.Setter{peerAttr(peer), peerAttr(peer2)}, 0, 2},
		{"over the permission cap", stun.MethodCreatePermission, []stun.Setter{peerAttr(netip.MustParseAddrPort("127.0.0.4:1")), peerAttr(netip.MustParseAddrPort("127.0.0.5:1"))}, 508, 2},
		{"up to the cap", stun.MethodChannelBind, []stun.Setter{channelAttr(0x4001), peerAttr(netip.MustParseAddrPort("127.0.0.4:1"))}, 0, 3},
		{"ChannelBind over the cap", stun.MethodChannelBind, []stun.Setter{channelAttr(0x4002), peerAttr(netip.MustParseAddrPort("127.0.0.5:1"))}, 508, 3},
		{"refresh", stun.MethodRefresh, nil, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorCode(sa.signed(tt.method, tt.attrs...)); got != tt.want {
				t.Fatalf("%v = %d, want %d", tt.method, got, tt.want)
			}
			if got := perms(); got != tt.wantPerms {
				t.Errorf("permissions installed = %d, want %d", got, tt.wantPerms)
			}
		})
	}
	if got := s.Stats().PermissionsRefused; got != 6 {
		t.Errorf("PermissionsRefused = %d, want 6", got)
	}
	// Refresh with lifetime 0 deletes the allocation.
	if got := errorCode(sa.signed(stun.MethodRefresh, lifetimeZero)); got != 0 {
		t.Fatalf("Refresh(0) = %d", got)
	}
	waitFor(t, "allocation deleted", func() bool { return s.Allocations() == 0 })
}

// TestCallOutlivesCredential: expiry is enforced at Allocate only, up to MaxAllocationAge.
// The server runs on a test clock, so the credential expires and the allocation ages when
// the test says, not after sleeps that a busy machine could stretch past either boundary.
func TestCallOutlivesCredential(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxAllocationAge = time.Hour
	clk := newTestClock(time.Now())
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clk.Now // before Listen: no goroutine reads it yet
	if err := s.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	cred := NewCredential(testSecret, "frank", clk.Now().Add(time.Minute))
	c := newRawClient(t, s)
	sess := c.login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := sess.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	created := clk.Now()  // the clock stands still: this is the allocation's creation time
	clk.Set(cred.Expires) // a credential is expired from its expiry second on

	for _, step := range []struct {
		method stun.Method
		attrs  []stun.Setter
	}{
		{stun.MethodRefresh, nil},
		{stun.MethodCreatePermission, []stun.Setter{peerAttr(netip.MustParseAddrPort("127.0.0.1:9"))}},
		{stun.MethodChannelBind, []stun.Setter{channelAttr(0x4000), peerAttr(netip.MustParseAddrPort("127.0.0.1:9"))}},
	} {
		if got := errorCode(sess.signed(step.method, step.attrs...)); got != 0 {
			t.Errorf("%v after credential expiry = %d, want success", step.method, got)
		}
	}
	// A new allocation with the expired credential is refused.
	other := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := other.allocate(); got != 401 {
		t.Errorf("Allocate with expired credential = %d, want 401", got)
	}
	// Up to MaxAllocationAge the expired credential still refreshes; past it, no longer.
	clk.Set(created.Add(cfg.MaxAllocationAge))
	if got := errorCode(sess.signed(stun.MethodRefresh)); got != 0 {
		t.Errorf("Refresh at MaxAllocationAge = %d, want success", got)
	}
	clk.Set(created.Add(cfg.MaxAllocationAge + time.Second))
	if got := errorCode(sess.signed(stun.MethodRefresh)); got != 401 {
		t.Errorf("Refresh past MaxAllocationAge = %d, want 401", got)
	}
	if s.Allocations() != 1 {
		t.Errorf("Allocations = %d, want the allocation to live on until its lifetime ends", s.Allocations())
	}
}

func TestQuota(t *testing.T) {
	cfg := baseConfig(t)
	cfg.UserQuota = 2
	cfg.TotalQuota = 3
	s := startServer(t, cfg)
	alice := s.Mint("alice", time.Minute)
	alice2 := s.Mint("alice", 2*time.Minute) // another credential, same user part
	bob := s.Mint("bob", time.Minute)

	a1 := newRawClient(t, s).login(stun.MethodAllocate, alice.Username, alice.Password)
	a2 := newRawClient(t, s).login(stun.MethodAllocate, alice2.Username, alice2.Password)
	a3 := newRawClient(t, s).login(stun.MethodAllocate, alice.Username, alice.Password)
	b1 := newRawClient(t, s).login(stun.MethodAllocate, bob.Username, bob.Password)
	b2 := newRawClient(t, s).login(stun.MethodAllocate, bob.Username, bob.Password)
	steps := []struct {
		name string
		sess *session
		want int
	}{
		{"alice 1", a1, 0},
		{"alice 2 with another credential", a2, 0},
		{"alice over user quota", a3, 486},
		{"bob", b1, 0},
		{"bob over total quota", b2, 486},
	}
	for _, st := range steps {
		if got := st.sess.allocate(); got != st.want {
			t.Fatalf("%s: Allocate = %d, want %d", st.name, got, st.want)
		}
	}
	if got := s.Stats().AllocationsRefused; got["quota-user"] != 1 || got["quota-total"] != 1 {
		t.Errorf("AllocationsRefused = %v, want one quota-user, one quota-total", got)
	}
	// Releasing an allocation frees its slot.
	if got := errorCode(a1.signed(stun.MethodRefresh, lifetimeZero)); got != 0 {
		t.Fatalf("Refresh(0) = %d", got)
	}
	waitFor(t, "slot freed", func() bool { return s.Allocations() == 2 })
	if got := a3.allocate(); got != 0 {
		t.Fatalf("Allocate after release = %d, want success", got)
	}
}

func TestDrainAndShutdown(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("gina", time.Minute)
	existing := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
	if got := existing.allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	s.Drain()
	if got := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password).allocate(); got != 508 {
		t.Errorf("Allocate while draining = %d, want 508", got)
	}
	if got := errorCode(existing.signed(stun.MethodRefresh)); got != 0 {
		t.Errorf("Refresh of existing allocation while draining = %d, want success", got)
	}
	if got := s.Stats().AllocationsRefused["draining"]; got != 1 {
		t.Errorf("AllocationsRefused[draining] = %d, want 1", got)
	}
	// Shutdown waits for the allocation to end; the client releases it.
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	// A window for a wrong early return to show; a slow machine only makes it see less, it
	// cannot fail a correct server, and no event marks "Shutdown is waiting".
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with an allocation still live", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The release's answer is not waited for: pion reports the allocation gone before it
	// answers, and Shutdown, seeing none left, may close the socket in between (1 run in
	// ~100 on a busy machine). Shutdown returning is the proof that the release worked.
	release := existing.build(stun.MethodRefresh, lifetimeZero)
	if _, err := existing.conn.WriteTo(release.Raw, existing.srv); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(30 * time.Second): // hang guard; Shutdown polls every 100 ms
		t.Fatal("Shutdown did not return after the last allocation ended")
	}
	// If the answer did go out, it is a success.
	_ = existing.conn.SetReadDeadline(time.Now())
	buf := make([]byte, 2048)
	if n, _, err := existing.conn.ReadFrom(buf); err == nil {
		r := &stun.Message{Raw: buf[:n]}
		if r.Decode() == nil && r.TransactionID == release.TransactionID && errorCode(r) != 0 {
			t.Errorf("Refresh(0) = %d, want success", errorCode(r))
		}
	}
}

func TestShutdownDeadline(t *testing.T) {
	s := startServer(t, baseConfig(t))
	cred := s.Mint("hank", time.Minute)
	if got := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password).allocate(); got != 0 {
		t.Fatalf("Allocate = %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil || ctx.Err() == nil {
		t.Fatalf("Shutdown = %v, want the context's deadline error", err)
	}
	if s.Allocations() != 0 {
		t.Errorf("Allocations after Close = %d, want 0", s.Allocations())
	}
}

func TestUnauthenticatedResponses(t *testing.T) {
	tests := []struct {
		name     string
		software string
	}{
		{"default: no SOFTWARE", ""},
		{"SOFTWARE configured", "switchboard-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.Software = tt.software
			s := startServer(t, cfg)
			c := newRawClient(t, s)
			for _, req := range []*stun.Message{
				stun.MustBuild(stun.TransactionID, stun.BindingRequest),
				stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP),
			} {
				r := c.do(req)
				if r == nil {
					t.Fatalf("%v: no answer", req.Type)
				}
				var sw stun.Software
				err := sw.GetFrom(r)
				if tt.software == "" && err == nil {
					t.Errorf("%v answer carries SOFTWARE %q", req.Type, sw)
				}
				if tt.software != "" && string(sw) != tt.software {
					t.Errorf("%v answer SOFTWARE = %q, want %q", req.Type, sw, tt.software)
				}
				if r.Type.Method == stun.MethodBinding {
					var xma stun.XORMappedAddress
					if err := xma.GetFrom(r); err != nil || xma.Port != c.conn.LocalAddr().(*net.UDPAddr).Port {
						t.Errorf("Binding answer XOR-MAPPED-ADDRESS %v (%v), want our address", xma, err)
					}
				}
			}
		})
	}
}

func TestUnauthenticatedRateLimit(t *testing.T) {
	cfg := baseConfig(t)
	cfg.UnauthRate = 1
	cfg.UnauthBurst = 3
	s := startServer(t, cfg)
	c := newRawClient(t, s)
	// Eight Binding requests at once; the server answers or drops (and counts) each. The
	// tally waits for all eight decisions, however long the machine takes to make them.
	const sent = 8
	start := time.Now()
	for range sent {
		if _, err := c.conn.WriteTo(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, c.srv); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	buf := make([]byte, 2048)
	waitFor(t, "every request answered or dropped", func() bool {
		_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		for {
			if _, _, err := c.conn.ReadFrom(buf); err != nil {
				break
			}
			answered++
		}
		return answered+int(s.Stats().UnauthRateLimited) >= sent
	})
	decided := time.Since(start) // every limiter decision was taken within this
	// The burst of 3, plus the tokens refilled at 1/s while the requests were decided:
	// none on an idle machine, more on a busy one.
	most := cfg.UnauthBurst + int(decided.Seconds()*cfg.UnauthRate)
	if answered < cfg.UnauthBurst || answered > most {
		t.Errorf("answered %d of %d Binding requests in %v with burst 3 at 1/s, want %d..%d", answered, sent, decided, cfg.UnauthBurst, most)
	}
	if got := s.Stats().UnauthRateLimited; int(got) != sent-answered {
		t.Errorf("UnauthRateLimited = %d, want %d", got, sent-answered)
	}
	// Another source IP has its own budget.
	other, err := net.ListenPacket("udp4", "127.0.0.5:0")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.5: %v", err)
	}
	defer other.Close()
	oc := &rawClient{t: t, conn: other, srv: s.UDPAddr()}
	if oc.do(stun.MustBuild(stun.TransactionID, stun.BindingRequest)) == nil {
		t.Error("a different source IP was rate-limited too")
	}
}

func TestTCPLimits(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxTCPConns = 2
	cfg.TCPAuthTimeout = 300 * time.Millisecond
	s := startServer(t, cfg)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closed reports whether the server closes c, waiting up to closeGuard: a hang guard
	// far above the TCPAuthTimeout it waits for, never reached unless the server is broken.
	const closeGuard = 30 * time.Second
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(closeGuard))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return err != nil
	}
	dialed := time.Now()
	c1, c2 := dial(), dial()
	waitFor(t, "two connections accepted", func() bool { return s.tcpConns.Load() == 2 })
	c3 := dial()
	if !closed(c3) {
		t.Error("connection over MaxTCPConns was not closed")
	}
	if got := s.Stats().TCPConnsRefused; got != 1 {
		t.Errorf("TCPConnsRefused = %d, want 1", got)
	}
	// Silent connections are closed, and not before TCPAuthTimeout: the server accepted
	// them after dialed, so their deadline lies at least TCPAuthTimeout after it.
	if !closed(c1) || !closed(c2) {
		t.Fatal("silent connections were not closed")
	}
	if d := time.Since(dialed); d < cfg.TCPAuthTimeout {
		t.Errorf("silent connections closed %v after dialling, before TCPAuthTimeout %v", d, cfg.TCPAuthTimeout)
	}
	waitFor(t, "connections released", func() bool { return s.tcpConns.Load() == 0 })
	// An authenticated client over TCP works and keeps working past TCPAuthTimeout.
	peer := echoPeer(t, "udp", "127.0.0.1:0")
	cred := s.Mint("ivan", time.Minute)
	cl := turnClient(t, s, "tcp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	rc, err := cl.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TCP: %v", err)
	}
	defer rc.Close()
	// A silent connection accepted after the client's has its TCPAuthTimeout end after the
	// client's would have: once the server closed it, the client's has passed too.
	if !closed(dial()) {
		t.Fatal("silent connection dialled after the client was not closed")
	}
	exchange(t, rc, peer, 3)
	waitFor(t, "only the authenticated connection left", func() bool { return s.tcpConns.Load() == 1 })
}

func TestTCPIdleTimeout(t *testing.T) {
	cfg := baseConfig(t)
	cfg.TCPIdleTimeout = 400 * time.Millisecond
	s := startServer(t, cfg)
	cred := s.Mint("judy", time.Minute)
	cl := turnClient(t, s, "tcp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	rc, err := cl.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TCP: %v", err)
	}
	defer rc.Close()
	if s.Allocations() != 1 {
		t.Fatalf("Allocations = %d, want 1", s.Allocations())
	}
	// The client now stays silent: the connection, and with it the allocation, ends.
	waitFor(t, "idle connection closed", func() bool { return s.tcpConns.Load() == 0 && s.Allocations() == 0 })
}

// TestTCPSourceStarvation: one address opening connections without authenticating cannot
// lock another address out of TURN over TCP. Without the per-source cap the flood below
// fills MaxTCPConns and the second address's connection is closed at accept.
func TestTCPSourceStarvation(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxTCPConns = 16
	cfg.TCPUnauthPerSource = 4
	cfg.TCPAuthTimeout = time.Minute // the flood's connections stay for the whole test
	s := startServer(t, cfg)
	attacker := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
	const flood = 40
	for range flood {
		c, err := attacker.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatalf("flood dial: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	waitFor(t, "flood accepted or refused", func() bool {
		return s.Stats().TCPConnsRefused == flood-uint64(cfg.TCPUnauthPerSource)
	})
	if got := s.tcpConns.Load(); got != int64(cfg.TCPUnauthPerSource) {
		t.Errorf("connections held for 127.0.0.5 = %d, want %d", got, cfg.TCPUnauthPerSource)
	}

	// Another address allocates over TCP, several times, while the flood holds its share.
	peer := echoPeer(t, "udp", "127.0.0.1:0")
	cred := s.Mint("victim", time.Minute)
	for i := range 3 {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}).Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn := turn.NewSTUNConn(c)
		cl, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: s.TCPAddr().String(), TURNServerAddr: s.TCPAddr().String(), Conn: conn,
			Username: cred.Username, Password: cred.Password, LoggerFactory: pionLogFactory{t},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		rc, err := cl.Allocate()
		if err != nil {
			t.Fatalf("Allocate %d from 127.0.0.6 during the flood: %v", i, err)
		}
		exchange(t, rc, peer, 2)
		_ = rc.Close()
		cl.Close()
		_ = conn.Close()
	}
	// Authenticated (and closed) connections leave the per-source count.
	s.unauth.mu.Lock()
	pending := s.unauth.n[netip.MustParseAddr("127.0.0.6")]
	s.unauth.mu.Unlock()
	if pending != 0 {
		t.Errorf("127.0.0.6 still counts %d pending connections after authenticating", pending)
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.5", "127.0.0.5"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	}
	for _, tt := range tests {
		if got := sourceKey(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("sourceKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
