package signaling

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("test-secret-test-secret-test-secret")

func TestJWT(t *testing.T) {
	mint := func(t *testing.T, secret []byte, sub, room string, ttl time.Duration) string {
		t.Helper()
		tok, err := MintToken(secret, sub, room, ttl)
		if err != nil {
			t.Fatalf("MintToken: %v", err)
		}
		return tok
	}
	expired := func(t *testing.T) string {
		c := claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice",
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noExp := func(t *testing.T) string {
		c := claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
		return s
	}
	none := func(t *testing.T) string {
		c := claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice",
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
		s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}
	tests := []struct {
		name     string
		token    func(t *testing.T) string
		room     any // nil: omit from hello
		wantRoom string
		wantErr  string // "": welcome
		closed   bool
	}{
		{name: "good", token: func(t *testing.T) string { return mint(t, testSecret, "alice", "", time.Hour) }, wantRoom: ""},
		{name: "good with room claim", token: func(t *testing.T) string { return mint(t, testSecret, "alice", "demo", time.Hour) }, wantRoom: "demo"},
		{name: "room claim, same room", token: func(t *testing.T) string { return mint(t, testSecret, "alice", "demo", time.Hour) }, room: "demo", wantRoom: "demo"},
		{name: "wrong room", token: func(t *testing.T) string { return mint(t, testSecret, "alice", "demo", time.Hour) }, room: "other", wantErr: codeForbiddenRoom},
		{name: "expired", token: expired, wantErr: codeUnauthorized, closed: true},
		{name: "no exp", token: noExp, wantErr: codeUnauthorized, closed: true},
		{name: "alg none", token: none, wantErr: codeUnauthorized, closed: true},
		{name: "wrong secret", token: func(t *testing.T) string { return mint(t, []byte("other-secret"), "alice", "", time.Hour) }, wantErr: codeUnauthorized, closed: true},
		{name: "missing", token: func(*testing.T) string { return "" }, wantErr: codeUnauthorized, closed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, Config{AuthSecret: testSecret})
			c := dial(t, ts.url, nil)
			m := map[string]any{"type": "hello", "name": "alice", "token": tt.token(t)}
			if tt.room != nil {
				m["room"] = tt.room
			}
			c.send(m)
			if tt.wantErr == "" {
				w := c.expect("welcome")
				if *w.Room != tt.wantRoom {
					t.Fatalf("room = %q, want %q", *w.Room, tt.wantRoom)
				}
				if tt.wantRoom == "demo" {
					c.send(map[string]any{"type": "join", "room": "elsewhere"})
					c.expectError(codeForbiddenRoom)
				}
				return
			}
			c.expectError(tt.wantErr)
			if tt.closed {
				if got := c.closed(); got != websocket.StatusPolicyViolation {
					t.Fatalf("close = %v, want 1008", got)
				}
				if ts.hub.Stats().AuthRefused != 1 {
					t.Fatalf("AuthRefused = %d, want 1", ts.hub.Stats().AuthRefused)
				}
			}
		})
	}
}

func TestICEServersEndpoint(t *testing.T) {
	good, _ := MintToken(testSecret, "alice", "", time.Hour)
	tests := []struct {
		name string
		cfg  Config
		auth string
		n    int // requests
		want []int
	}{
		{name: "auth good", cfg: Config{AuthSecret: testSecret}, auth: "Bearer " + good, n: 1, want: []int{200}},
		{name: "auth missing", cfg: Config{AuthSecret: testSecret}, n: 1, want: []int{401}},
		{name: "auth garbage", cfg: Config{AuthSecret: testSecret}, auth: "Bearer x.y.z", n: 1, want: []int{401}},
		{name: "open, rate limited per IP", cfg: Config{CredentialRate: 0.001, CredentialBurst: 2}, n: 3, want: []int{200, 200, 429}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, tt.cfg)
			for i := range tt.n {
				req, _ := http.NewRequest("GET", ts.srv.URL+"/api/ice-servers", nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body iceResponse
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != tt.want[i] {
					t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, tt.want[i])
				}
				if resp.StatusCode == 200 {
					if len(body.ICEServers) != 2 || body.TTL < 86000 || resp.Header.Get("Cache-Control") != "no-store" {
						t.Fatalf("body = %+v, cache %q", body, resp.Header.Get("Cache-Control"))
					}
				}
				if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
					t.Fatal("429 without Retry-After")
				}
			}
		})
	}
}

// TestCredentialRateLimitHello: open mode limits new sessions (credential sets) per
// IP, but not resumes.
func TestCredentialRateLimitHello(t *testing.T) {
	ts := newServer(t, Config{CredentialRate: 0.001, CredentialBurst: 2, ResumeGrace: time.Minute})
	a := join(t, ts, "a", "")
	join(t, ts, "b", "")
	c := dial(t, ts.url, nil)
	c.send(map[string]any{"type": "hello", "name": "c"})
	c.expectError(codeRateLimited)
	// The bucket is empty, yet a dropped session comes back (with fresh credentials):
	// a flaky link must not lock a user out of their own call.
	a.c.CloseNow()
	eventually(t, "a detached", func() bool { return ts.hub.Stats().Detached == 1 })
	issued := ts.hub.Stats().CredentialsIssued
	c.send(map[string]any{"type": "hello", "name": "a", "resume": a.resume})
	if w := c.expect("welcome"); !w.Resumed || w.ID != a.id || len(w.ICEServers) == 0 {
		t.Fatalf("resume welcome = %s, want resumed %s with ICE servers", w.raw, a.id)
	}
	if got := ts.hub.Stats().CredentialsIssued; got != issued+1 {
		t.Fatalf("CredentialsIssued = %d after a resume, want %d", got, issued+1)
	}
}

func TestCredentialPush(t *testing.T) {
	// 150 ms credentials: a push every 120 ms, so expect's 5 s is a hang guard
	// 40 times the wait, not a deadline load can reach.
	ice := &fakeICE{ttl: 150 * time.Millisecond}
	ts := newServer(t, Config{ICE: ice, Tick: 10 * time.Millisecond})
	a := dial(t, ts.url, nil)
	start := time.Now()
	w := a.hello(nil)
	if w.TTL != 0 {
		t.Fatalf("welcome ttl = %d, want 0 (rounded down from 0.15s)", w.TTL)
	}
	// Each push comes at 80 % of the lifetime of the previous credentials (120 ms
	// after they were minted), never early: credentials minted after start, so
	// push i arrives at least (i+1)×120 ms after it (10 ms slack for the clock's
	// granularity). Only this lower bound follows from the logic; the gap between
	// two arrivals shrinks when a push is delivered late, and the upper bound
	// depends on load, so the exact schedule is checked in virtual time
	// (TestCredentialRefreshVirtualTime).
	for i := range 3 {
		p := a.expect("ice-servers")
		if el, least := time.Since(start), time.Duration(i+1)*110*time.Millisecond; el < least {
			t.Fatalf("push %d %v after hello, want at least %v", i, el, least)
		}
		if len(p.ICEServers) != 2 || p.ICEServers[1].Username != "u:"+a.id || p.Seq == 0 {
			t.Fatalf("ice-servers = %s", p.raw)
		}
	}
	if got := ts.hub.Stats().CredentialsIssued; got < 4 {
		t.Fatalf("CredentialsIssued = %d, want >= 4", got)
	}
}

func TestNearbyBehindProxy(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	ts := newServer(t, Config{TrustedProxies: proxies})
	hdr := func(xff string) *dialOpt { return &dialOpt{header: http.Header{"X-Forwarded-For": {xff}}} }
	home1 := dial(t, ts.url, hdr("203.0.113.7"))
	home1.hello(map[string]any{"name": "laptop", "room": "n"})
	home2 := dial(t, ts.url, hdr("198.51.100.1, 203.0.113.7")) // spoofed left part ignored
	w := home2.hello(map[string]any{"name": "phone", "room": "n"})
	away := dial(t, ts.url, hdr("192.0.2.99"))
	wa := away.hello(map[string]any{"name": "friend", "room": "n"})
	v6a := dial(t, ts.url, hdr("2001:db8:1:2::10"))
	v6a.hello(map[string]any{"name": "v6a", "room": "n"})
	v6b := dial(t, ts.url, hdr("2001:db8:1:2:aaaa::1"))
	wv6 := v6b.hello(map[string]any{"name": "v6b", "room": "n"})

	nearby := func(ps []peerInfo) map[string]bool {
		m := map[string]bool{}
		for _, p := range ps {
			m[p.Name] = p.Nearby
		}
		return m
	}
	if got := nearby(w.Peers); !got["laptop"] {
		t.Fatalf("phone sees %+v, want laptop nearby", w.Peers)
	}
	if got := nearby(wa.Peers); got["laptop"] || got["phone"] {
		t.Fatalf("friend sees %+v, want nobody nearby", wa.Peers)
	}
	if got := nearby(wv6.Peers); !got["v6a"] || got["laptop"] {
		t.Fatalf("v6b sees %+v, want only v6a (same /64) nearby", wv6.Peers)
	}
	if pj := home1.expect("peer-joined"); !pj.peerInfo(t).Nearby {
		t.Fatalf("laptop got %s, want phone nearby", pj.raw)
	}
	if pj := home1.expect("peer-joined"); pj.peerInfo(t).Nearby {
		t.Fatalf("laptop got %s, want friend not nearby", pj.raw)
	}
	// No address ever reaches a client.
	for _, raw := range [][]byte{w.raw, wa.raw, wv6.raw} {
		for _, ip := range []string{"203.0.113.7", "192.0.2.99", "2001:db8", "127.0.0.1"} {
			if strings.Contains(string(raw), ip) && !strings.Contains(string(raw), "stun:127.0.0.1") {
				t.Fatalf("welcome leaks %s: %s", ip, raw)
			}
		}
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "direct", remote: "192.0.2.1:5000", want: "192.0.2.1"},
		{name: "direct, xff ignored", remote: "192.0.2.1:5000", xff: []string{"1.2.3.4"}, want: "192.0.2.1"},
		{name: "trusted proxy", remote: "10.1.1.1:5000", xff: []string{"198.51.100.5"}, want: "198.51.100.5"},
		{name: "trusted chain", remote: "10.1.1.1:5000", xff: []string{"198.51.100.5, 10.2.2.2"}, want: "198.51.100.5"},
		{name: "spoof left of client", remote: "10.1.1.1:5000", xff: []string{"6.6.6.6, 198.51.100.5"}, want: "198.51.100.5"},
		{name: "multiple headers", remote: "10.1.1.1:5000", xff: []string{"6.6.6.6", "198.51.100.5"}, want: "198.51.100.5"},
		{name: "garbage", remote: "10.1.1.1:5000", xff: []string{"nonsense"}, want: "10.1.1.1"},
		{name: "entry with port (Azure, IIS ARR)", remote: "10.1.1.1:5000", xff: []string{"198.51.100.5:51234"}, want: "198.51.100.5"},
		{name: "ipv6 entry with port", remote: "10.1.1.1:5000", xff: []string{"[2001:db8::7]:443"}, want: "2001:db8::7"},
		{name: "trusted entry with port", remote: "10.1.1.1:5000", xff: []string{"198.51.100.5, 10.2.2.2:80"}, want: "198.51.100.5"},
		{name: "ipv6", remote: "[2001:db8::1]:5000", want: "2001:db8::1"},
		{name: "mapped v4", remote: "[::ffff:192.0.2.1]:5000", want: "192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = tt.remote
			for _, x := range tt.xff {
				r.Header.Add("X-Forwarded-For", x)
			}
			if got := clientIP(r, trusted); got.String() != tt.want {
				t.Fatalf("clientIP(%s, %v) = %v, want %s", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestIPLimiterBounded(t *testing.T) {
	l := newIPLimiter(1, 1, 100)
	now := time.Now()
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if !l.allow(ip, now) {
			t.Fatalf("first request from %v refused", ip)
		}
		if l.allow(ip, now) {
			t.Fatalf("second request from %v allowed with burst 1", ip)
		}
	}
	if n := l.size(); n > 100 {
		t.Fatalf("limiter tracks %d IPs, want <= 100", n)
	}
}

func TestMintTokenErrors(t *testing.T) {
	tests := []struct {
		name      string
		secret    []byte
		sub, room string
		ttl       time.Duration
	}{
		{name: "no secret", sub: "a", ttl: time.Hour},
		{name: "no sub", secret: testSecret, ttl: time.Hour},
		{name: "no ttl", secret: testSecret, sub: "a"},
		{name: "bad room", secret: testSecret, sub: "a", room: "no spaces", ttl: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MintToken(tt.secret, tt.sub, tt.room, tt.ttl); err == nil {
				t.Fatal("MintToken succeeded, want error")
			}
		})
	}
}

// TestIPLimiterIPv6Prefix: one host holds a whole /64 (privacy addresses, or an
// attacker picking any of 2^64), so the per-IP credential limit must count the /64
// as one client, or it limits nothing over IPv6.
func TestIPLimiterIPv6Prefix(t *testing.T) {
	tests := []struct {
		name   string
		remote []string // RemoteAddr of each request
		want   []int
	}{
		{name: "same /64, other addresses", remote: []string{"[2001:db8::1]:1000", "[2001:db8::2]:1000", "[2001:db8::ffff:1]:1000"}, want: []int{200, 200, 429}},
		{name: "zone does not make a new client", remote: []string{"[fe80::1%eth0]:1000", "[fe80::1%eth1]:1000", "[fe80::1%eth2]:1000"}, want: []int{200, 200, 429}},
		{name: "other /64s are other clients", remote: []string{"[2001:db8:0:1::1]:1000", "[2001:db8:0:2::1]:1000", "[2001:db8:0:3::1]:1000"}, want: []int{200, 200, 200}},
		{name: "IPv4 per address", remote: []string{"192.0.2.1:1000", "192.0.2.2:1000", "192.0.2.3:1000"}, want: []int{200, 200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(Config{ICE: &fakeICE{}, CredentialRate: 0.001, CredentialBurst: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			for i, remote := range tt.remote {
				r := httptest.NewRequest("GET", "/api/ice-servers", nil)
				r.RemoteAddr = remote
				w := httptest.NewRecorder()
				h.ICEServersHandler().ServeHTTP(w, r)
				if w.Code != tt.want[i] {
					t.Fatalf("request %d from %s: status %d, want %d", i, remote, w.Code, tt.want[i])
				}
			}
		})
	}
}

// TestResumeNeedsSameSubject: with auth on, a resume token alone does not hand a
// session over: the hello's JWT must name the session's subject.
func TestResumeNeedsSameSubject(t *testing.T) {
	tests := []struct {
		name string
		sub  string
		want websocket.StatusCode // 0: resumed
	}{
		{name: "same subject", sub: "alice"},
		{name: "other subject", sub: "mallory", want: closeResumeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, Config{AuthSecret: testSecret})
			alice, _ := MintToken(testSecret, "alice", "", time.Hour)
			a := dial(t, ts.url, nil)
			a.hello(map[string]any{"name": "alice", "token": alice})
			tok, _ := MintToken(testSecret, tt.sub, "", time.Hour)
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "x", "token": tok, "resume": a.resume})
			if tt.want != 0 {
				if got := c.closed(); got != tt.want {
					t.Fatalf("close = %v, want %v", got, tt.want)
				}
				// alice keeps her session and link.
				a.send(map[string]any{"type": "ping"})
				a.expect("pong")
				return
			}
			if w := c.expect("welcome"); !w.Resumed || w.ID != a.id {
				t.Fatalf("welcome = %s, want resumed %s", w.raw, a.id)
			}
		})
	}
}
