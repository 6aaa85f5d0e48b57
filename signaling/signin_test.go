package signaling

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

var signInSecret = []byte("0123456789abcdef0123456789abcdef")

// signInAt is a fake clock shared by a test's requests.
type signInAt struct{ t atomic.Int64 }

func (c *signInAt) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *signInAt) add(d time.Duration) { c.t.Add(int64(d)) }

func newTestSignIn(tb testing.TB, cfg SignInConfig) (*SignIn, *signInAt) {
	tb.Helper()
	clk := &signInAt{}
	clk.t.Store(time.Now().Truncate(time.Second).UnixNano())
	if cfg.Secret == nil {
		cfg.Secret = signInSecret
	}
	if cfg.Invites == nil {
		cfg.Invites = NewInviteStore(tb.TempDir())
	}
	cfg.Now = clk.now
	s, err := NewSignIn(cfg)
	if err != nil {
		tb.Fatalf("NewSignIn: %v", err)
	}
	return s, clk
}

type signInResult struct {
	status int
	header http.Header
	answer signInAnswer
	err    signInError
}

func postSignIn(tb testing.TB, h http.Handler, remote, body string) signInResult {
	tb.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/signin", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := signInResult{status: w.Code, header: w.Header()}
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &res.answer); err != nil {
			tb.Fatalf("decode answer %q: %v", w.Body, err)
		}
	} else if err := json.Unmarshal(w.Body.Bytes(), &res.err); err != nil {
		tb.Fatalf("decode error %q: %v", w.Body, err)
	}
	return res
}

func inviteBody(tok string) string { return `{"invite":"` + tok + `"}` }

func mustInvite(tb testing.TB, inv Invite, at time.Time) string {
	tb.Helper()
	tok, err := MintInvite(signInSecret, inv, at)
	if err != nil {
		tb.Fatalf("MintInvite: %v", err)
	}
	return tok
}

func TestSignInInvite(t *testing.T) {
	s, clk := newTestSignIn(t, SignInConfig{})
	now := clk.now()
	opTok, err := MintToken(signInSecret, "alice", "demo", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := MintInvite([]byte("another-secret-another-secret-xx"), Invite{TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		tok        string
		wantStatus int
		wantCode   string
		wantRoom   string
		wantName   string
	}{
		{"room and name", mustInvite(t, Invite{Room: "family", Name: "Grandma", TTL: time.Hour}, now), 200, "", "family", "Grandma"},
		{"any room", mustInvite(t, Invite{TTL: time.Hour}, now), 200, "", "", ""},
		{"expired", mustInvite(t, Invite{TTL: time.Minute}, now.Add(-time.Hour)), 401, "invite-expired", "", ""},
		{"session token is no invite", opTok, 401, "invalid-invite", "", ""},
		{"other secret", other, 401, "invalid-invite", "", ""},
		{"garbage", "not.a.jwt", 401, "invalid-invite", "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh address each: failures must not rate-limit later cases.
			res := postSignIn(t, s, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 4000).String(), inviteBody(tt.tok))
			if res.status != tt.wantStatus || res.err.Error != tt.wantCode {
				t.Fatalf("POST invite = %d %q, want %d %q", res.status, res.err.Error, tt.wantStatus, tt.wantCode)
			}
			if res.header.Get("Cache-Control") != "no-store" || res.header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("headers = %v, want Cache-Control no-store and Referrer-Policy no-referrer", res.header)
			}
			if tt.wantStatus != 200 {
				if res.err.Message == "" {
					t.Error("error without a message")
				}
				return
			}
			a := res.answer
			if a.Room != tt.wantRoom || a.Name != tt.wantName || a.TTL != int64(DefaultSignInTTL/time.Second) {
				t.Errorf("answer = %+v, want room %q name %q ttl %d", a, tt.wantRoom, tt.wantName, DefaultSignInTTL/time.Second)
			}
			c := parseAt(t, a.Token, now)
			if c.Subject == "" || !c.Renew || c.Room != tt.wantRoom || c.Name != tt.wantName || c.Use != "" {
				t.Errorf("session claims = %+v, want a subject, rnw, room %q, name %q", c, tt.wantRoom, tt.wantName)
			}
			if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != DefaultSignInTTL {
				t.Errorf("token lifetime = %s, want %s", got, DefaultSignInTTL)
			}
			// The hub can renew it (rnw with iat and exp).
			if _, _, ok := renewToken(signInSecret, c, now.Add(time.Hour)); !ok {
				t.Error("renewToken refused a sign-in token")
			}
		})
	}
	// Two sign-ins with one link are two people: distinct subjects.
	tok := mustInvite(t, Invite{TTL: time.Hour}, now)
	a := postSignIn(t, s, "192.0.2.1:1", inviteBody(tok)).answer
	b := postSignIn(t, s, "192.0.2.1:2", inviteBody(tok)).answer
	if parseAt(t, a.Token, now).Subject == parseAt(t, b.Token, now).Subject {
		t.Error("two sign-ins with one link got the same subject")
	}
	if st := s.Stats(); st.Invite != 4 || st.Refused["invalid-invite"] != 3 || st.Refused["invite-expired"] != 1 {
		t.Errorf("Stats = %+v, want 4 invite sign-ins, 3 invalid, 1 expired", st)
	}
}

// parseAt verifies a session token the way the hub does (at real time: the
// fake clock starts at now and moves seconds, far inside the 12 h lifetime).
func parseAt(tb testing.TB, tok string, _ time.Time) *claims {
	tb.Helper()
	c, err := verifyToken(signInSecret, tok)
	if err != nil {
		tb.Fatalf("verifyToken(sign-in token): %v", err)
	}
	return c
}

func TestInviteIsNoHelloToken(t *testing.T) {
	tok := mustInvite(t, Invite{Room: "demo", TTL: time.Hour}, time.Now())
	if _, err := verifyToken(signInSecret, tok); err == nil {
		t.Fatal("verifyToken accepted an invite link's token as a session token")
	}
	// And a forged session token with a "use" claim is refused as well.
	c := claims{Use: inviteUse, RegisteredClaims: jwt.RegisteredClaims{Subject: "x", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(signInSecret)
	if _, err := verifyToken(signInSecret, s); err == nil {
		t.Fatal("verifyToken accepted a token with a use claim")
	}
}

func TestSignInInviteUses(t *testing.T) {
	dir := t.TempDir()
	s, clk := newTestSignIn(t, SignInConfig{Invites: NewInviteStore(dir)})
	once := mustInvite(t, Invite{TTL: time.Hour, Uses: 1}, clk.now())
	twice := mustInvite(t, Invite{TTL: time.Hour, Uses: 2}, clk.now())
	for _, step := range []struct {
		tok  string
		want int
	}{{once, 200}, {once, 410}, {twice, 200}} {
		if res := postSignIn(t, s, "", inviteBody(step.tok)); res.status != step.want {
			t.Fatalf("POST = %d %q, want %d", res.status, res.err.Error, step.want)
		}
	}
	// A restart: a new endpoint and store on the same directory.
	s2, _ := newTestSignIn(t, SignInConfig{Invites: NewInviteStore(dir)})
	if err := s2.cfg.Invites.(*InviteStore).Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		tok  string
		want int
		code string
	}{{once, 410, "invite-used-up"}, {twice, 200, ""}, {twice, 410, "invite-used-up"}} {
		if res := postSignIn(t, s2, "", inviteBody(step.tok)); res.status != step.want || res.err.Error != step.code {
			t.Fatalf("after restart: POST = %d %q, want %d %q", res.status, res.err.Error, step.want, step.code)
		}
	}
}

func TestInviteStoreConcurrentUses(t *testing.T) {
	st := NewInviteStore(t.TempDir())
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			granted, err := st.Use(context.Background(), "link", 3, time.Now().Add(time.Hour))
			if err != nil {
				t.Error(err)
			}
			if granted {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 {
		t.Fatalf("10 concurrent uses of a 3-use link: %d granted, want 3", ok.Load())
	}
}

func TestInviteStoreDamagedFile(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"not json", "{"},
		{"unknown version", `{"version":9,"invites":{}}`},
		{"negative count", `{"version":1,"invites":{"a":{"used":-1,"exp":1}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, InviteUsesFile), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := NewInviteStore(dir).Load(t.Context()); err == nil {
				t.Fatalf("Load(%q) = nil, want an error (starting over would hand out used links again)", tt.content)
			}
		})
	}
}

func TestInviteStoreExpiredRecordsDropped(t *testing.T) {
	dir := t.TempDir()
	st := NewInviteStore(dir)
	if ok, err := st.Use(t.Context(), "old", 1, time.Now().Add(-time.Hour)); !ok || err != nil {
		t.Fatalf("Use(old) = %v, %v", ok, err)
	}
	if ok, err := st.Use(t.Context(), "new", 1, time.Now().Add(time.Hour)); !ok || err != nil {
		t.Fatalf("Use(new) = %v, %v", ok, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, InviteUsesFile))
	m, err := decodeUses(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["old"]; ok || m["new"].Used != 1 {
		t.Fatalf("file = %s, want only the unexpired link", b)
	}
}

func TestSignInRevokeAll(t *testing.T) {
	dir := t.TempDir()
	store := NewInviteStore(dir)
	s, clk := newTestSignIn(t, SignInConfig{Invites: store})
	before := mustInvite(t, Invite{TTL: time.Hour}, clk.now())
	if res := postSignIn(t, s, "", inviteBody(before)); res.status != 200 {
		t.Fatalf("before revocation: %d %q", res.status, res.err.Error)
	}
	cut, err := store.RevokeAll(clk.now())
	if err != nil {
		t.Fatal(err)
	}
	if !cut.After(clk.now()) {
		t.Fatalf("RevokeAll cut-off %s not after now %s", cut, clk.now())
	}
	// Same second as the revocation: revoked too (iat is in whole seconds).
	sameSecond := mustInvite(t, Invite{TTL: time.Hour}, clk.now().Add(500*time.Millisecond))
	after := mustInvite(t, Invite{TTL: time.Hour}, cut)
	for _, tt := range []struct {
		name, tok string
		want      int
	}{{"old link", before, 401}, {"same second", sameSecond, 401}, {"issued at the cut-off", after, 200}} {
		res := postSignIn(t, s, "", inviteBody(tt.tok))
		if res.status != tt.want {
			t.Errorf("%s: POST = %d %q, want %d", tt.name, res.status, res.err.Error, tt.want)
		}
		if tt.want == 401 && res.err.Error != "invite-revoked" {
			t.Errorf("%s: code %q, want invite-revoked", tt.name, res.err.Error)
		}
	}
	// A revocation file that cannot be read fails closed.
	if err := os.WriteFile(filepath.Join(dir, InvitesRevokedFile), []byte("yesterday"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := postSignIn(t, s, "", inviteBody(after)); res.status != 500 {
		t.Errorf("damaged revocation file: POST = %d, want 500", res.status)
	}
}

func TestSignInPasscode(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []struct {
		name string
		cfg  SignInConfig
	}{
		{"plain", SignInConfig{Passcode: []byte("correct horse")}},
		{"bcrypt", SignInConfig{PasscodeHash: hash}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			s, clk := newTestSignIn(t, cfg.cfg)
			res := postSignIn(t, s, "", `{"passcode":"correct horse","name":"Bob"}`)
			if res.status != 200 || res.answer.Name != "Bob" || res.answer.Room != "" {
				t.Fatalf("right passcode: %d %+v %q", res.status, res.answer, res.err.Error)
			}
			if c := parseAt(t, res.answer.Token, clk.now()); !c.Renew || c.Room != "" || c.Name != "Bob" {
				t.Errorf("claims = %+v", c)
			}
			for _, p := range []string{"correct hors", "correct horse ", "CORRECT HORSE"} {
				res := postSignIn(t, s, "203.0.113.9:1", `{"passcode":"`+p+`"}`)
				if res.status != 401 || res.err.Error != "wrong-passcode" {
					t.Errorf("passcode %q: %d %q, want 401 wrong-passcode", p, res.status, res.err.Error)
				}
			}
		})
	}
	s, _ := newTestSignIn(t, SignInConfig{})
	if res := postSignIn(t, s, "", `{"passcode":"anything"}`); res.status != 404 || res.err.Error != "signin-disabled" {
		t.Errorf("no passcode configured: %d %q, want 404 signin-disabled", res.status, res.err.Error)
	}
	open, _ := newTestSignIn(t, SignInConfig{Secret: []byte{}})
	if res := postSignIn(t, open, "", inviteBody("x")); res.status != 404 || res.err.Error != "signin-disabled" {
		t.Errorf("open server: %d %q, want 404 signin-disabled", res.status, res.err.Error)
	}
}

func TestSignInRateLimit(t *testing.T) {
	s, clk := newTestSignIn(t, SignInConfig{
		Passcode:       []byte("correct horse"),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")},
	})
	wrong := `{"passcode":"guess"}`
	for i := range 5 {
		if res := postSignIn(t, s, "198.51.100.7:1000", wrong); res.status != 401 {
			t.Fatalf("wrong passcode #%d: %d, want 401", i+1, res.status)
		}
	}
	res := postSignIn(t, s, "198.51.100.7:1000", `{"passcode":"correct horse"}`)
	if res.status != 429 || res.err.Error != "rate-limited" || res.header.Get("Retry-After") != "12" {
		t.Fatalf("6th attempt = %d %q Retry-After %q, want 429 rate-limited 12", res.status, res.err.Error, res.header.Get("Retry-After"))
	}
	// Another address is not affected; one behind the trusted proxy is counted by
	// its forwarded address, not the proxy's.
	if res := postSignIn(t, s, "198.51.100.8:1000", `{"passcode":"correct horse"}`); res.status != 200 {
		t.Errorf("other address: %d, want 200", res.status)
	}
	r := httptest.NewRequest(http.MethodPost, "/api/signin", strings.NewReader(`{"passcode":"correct horse"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	r.RemoteAddr = "10.0.0.1:5000"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != 429 {
		t.Errorf("limited address behind trusted proxy: %d, want 429", w.Code)
	}
	// A good link does not charge the bucket; time refills it.
	clk.add(13 * time.Second)
	if res := postSignIn(t, s, "198.51.100.7:1000", `{"passcode":"correct horse"}`); res.status != 200 {
		t.Errorf("after 13 s: %d, want 200", res.status)
	}
}

func TestSignInRequestShape(t *testing.T) {
	s, _ := newTestSignIn(t, SignInConfig{Passcode: []byte("correct horse")})
	do := func(method, ctype, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/api/signin", strings.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	tests := []struct {
		name, method, ctype, body string
		want                      int
		wantBody                  string
	}{
		{"get", "GET", "", "", 200, `{"required":true,"passcode":true}`},
		{"put", "PUT", "application/json", "{}", 405, `"method-not-allowed"`},
		{"text/plain", "POST", "text/plain", `{"passcode":"x"}`, 415, `"bad-request"`},
		{"charset ok", "POST", "application/json; charset=utf-8", `{"passcode":"correct horse"}`, 200, `"token"`},
		{"too large", "POST", "application/json", `{"passcode":"` + strings.Repeat("a", 5000) + `"}`, 413, `"bad-request"`},
		{"not json", "POST", "application/json", `passcode=x`, 400, `"bad-request"`},
		{"both", "POST", "application/json", `{"passcode":"x","invite":"y"}`, 400, `"bad-request"`},
		{"neither", "POST", "application/json", `{"name":"Bob"}`, 400, `"bad-request"`},
		{"bad name", "POST", "application/json", `{"passcode":"correct horse","name":"a\u202eb"}`, 400, `"bad-request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(tt.method, tt.ctype, tt.body)
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Fatalf("%s %s = %d %s, want %d with %s", tt.method, tt.body, w.Code, w.Body, tt.want, tt.wantBody)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("no Cache-Control: no-store")
			}
		})
	}
	if w := do("PUT", "", ""); w.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("405 Allow = %q", w.Header().Get("Allow"))
	}
	open, _ := newTestSignIn(t, SignInConfig{Secret: []byte{}})
	w := httptest.NewRecorder()
	open.ServeHTTP(w, httptest.NewRequest("GET", "/api/signin", nil))
	if !strings.Contains(w.Body.String(), `{"required":false,"passcode":false}`) {
		t.Errorf("open server GET = %s", w.Body)
	}
}

func TestNewSignInConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  SignInConfig
	}{
		{"passcode and hash", SignInConfig{Secret: signInSecret, Passcode: []byte("a"), PasscodeHash: []byte("b")}},
		{"hash not bcrypt", SignInConfig{Secret: signInSecret, PasscodeHash: []byte("plain")}},
		{"passcode without secret", SignInConfig{Passcode: []byte("a")}},
		{"negative ttl", SignInConfig{Secret: signInSecret, TokenTTL: -time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSignIn(tt.cfg); err == nil {
				t.Fatal("NewSignIn = nil error")
			}
		})
	}
}

func TestMintInviteRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		inv  Invite
	}{
		{"no ttl", Invite{}},
		{"negative uses", Invite{TTL: time.Hour, Uses: -1}},
		{"bad room", Invite{TTL: time.Hour, Room: "a b"}},
		{"bad name", Invite{TTL: time.Hour, Name: "\x00"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MintInvite(signInSecret, tt.inv, time.Now()); err == nil {
				t.Fatalf("MintInvite(%+v) = nil error", tt.inv)
			}
		})
	}
}

// FuzzDecodeSignInRequest: any body decodes to a request that obeys the
// documented shape, or to an error; never a panic.
func FuzzDecodeSignInRequest(f *testing.F) {
	for _, s := range []string{`{"invite":"a.b.c"}`, `{"passcode":"x","name":"Bob"}`, `{}`, `[]`, `null`, `{"passcode":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeSignInRequest(b)
		if err != nil {
			return
		}
		if (req.Invite == "") == (req.Passcode == "") {
			t.Fatalf("decoded %q to %+v: want exactly one of invite and passcode", b, req)
		}
		if req.Name != "" && !validName(req.Name) {
			t.Fatalf("decoded %q with an invalid name %q", b, req.Name)
		}
	})
}

// FuzzDecodeUses: a use-count file either decodes to records that round-trip
// through the writer's encoding, or is refused.
func FuzzDecodeUses(f *testing.F) {
	for _, s := range []string{`{"version":1,"invites":{"a":{"used":1,"exp":2}}}`, `{"version":1}`, `{"version":2}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeUses(b)
		if err != nil {
			return
		}
		enc, err := json.Marshal(usesFile{Version: usesFileVersion, Invites: m})
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeUses(enc)
		if err != nil || len(m2) != len(m) {
			t.Fatalf("round trip of %q: %v, %d records, want %d", b, err, len(m2), len(m))
		}
		for k, v := range m {
			if m2[k] != v {
				t.Fatalf("round trip of %q: %q = %+v, want %+v", b, k, m2[k], v)
			}
		}
	})
}

// FuzzParseInvite: no token string makes parseInvite accept it without the
// secret, and none panics.
func FuzzParseInvite(f *testing.F) {
	good, _ := MintInvite(signInSecret, Invite{TTL: time.Hour}, time.Unix(1e9, 0))
	for _, s := range []string{good, "a.b.c", "", "eyJhbGciOiJub25lIn0.e30."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseInvite([]byte("a different secret, 32 bytes...!"), tok, time.Unix(1e9, 0))
		if err == nil {
			t.Fatalf("parseInvite accepted %q with the wrong secret: %+v", tok, c)
		}
	})
}
