package main

// The /check page, a newcomer's first use and the sign-in screen, in the browser.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserCheck: the /check page finds STUN and TURN over UDP and TCP
// working against the test server and calls through the relay.
func TestBrowserCheck(t *testing.T) {
	chromiumPath(t)
	a := startStack(t, nil)
	p := newPage(t, "check")
	rows := runCheck(t, p, a.httpURL()+"/check", []string{"stun", "turn-udp", "turn-tcp"})
	if len(rows) != 3 {
		t.Errorf("%d lines, want stun, turn-udp, turn-tcp", len(rows))
	}
	p.screenshot("check.png", true)
}

// TestBrowserCheckTLS: with a certificate configured, /check (over HTTPS)
// also finds TURN over TLS working. The certificate is self-signed, so this
// browser ignores certificate errors.
func TestBrowserCheckTLS(t *testing.T) {
	chromiumPath(t)
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "localhost")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, certPEM, keyPEM, time.Now())
	a := startStack(t, map[string]string{
		"TLS_CERT": certFile, "TLS_KEY": keyFile, "DOMAIN": "localhost",
		"HTTPS_ADDR": "127.0.0.1:0", "TURNS_ADDR": "127.0.0.1:0",
	})
	p := newPage(t, "check-tls", chromedp.Flag("ignore-certificate-errors", true))
	runCheck(t, p, a.httpsURL()+"/check", []string{"stun", "turn-udp", "turn-tcp", "turn-tls"})
}

// runCheck opens the check page, waits for its verdicts and requires every
// line to work, each kind in want to be there, the relay call to work and
// the summary to say calls will work. It returns the lines.
func runCheck(t *testing.T, p *page, url string, want []string) []checkRow {
	t.Helper()
	p.do(20*time.Second, chromedp.Navigate(url))
	p.wait("the check to finish", `document.body.dataset.done === "true"`, 60*time.Second)
	var rows []checkRow
	p.eval(`[...document.querySelectorAll("#lines tr")].map((tr) => ({Kind: tr.dataset.kind,
		OK: tr.querySelector(".verdict").dataset.ok, Verdict: tr.querySelector(".verdict").textContent}))`, &rows)
	seen := map[string]bool{}
	for _, r := range rows {
		t.Logf("%s: %s", r.Kind, r.Verdict)
		if r.OK != "true" {
			t.Errorf("%s: %s", r.Kind, r.Verdict)
		}
		seen[r.Kind] = true
	}
	for _, k := range want {
		if !seen[k] {
			t.Errorf("no %s line: the server's ICE servers were %v", k, rows)
		}
	}
	relayOK := p.str(`document.getElementById("relay-call").dataset.ok`)
	relayText := p.str(`document.getElementById("relay-call").textContent`)
	if relayOK != "true" {
		t.Errorf("relay call: %s", relayText)
	}
	summary := p.str(`document.getElementById("summary").textContent`)
	if !strings.HasPrefix(summary, "Calls will work") {
		t.Errorf("summary %q, want it to say calls will work", summary)
	}
	t.Logf("relay call: %s; summary: %s", relayText, summary)
	return rows
}

type checkRow struct{ Kind, OK, Verdict string }

// TestBrowserFirstUse: what a newcomer sees before and right after joining
// the lobby: no "Not connected" before they did anything, no camera until a
// call, two people of the same name told apart, and on a phone the header
// keeps the network check link and the room name on one line.
func TestBrowserFirstUse(t *testing.T) {
	chromiumPath(t)
	a := startStack(t, nil)
	url := a.httpURL() + "/"
	one := newPage(t, "ada-1")
	two := newPage(t, "ada-2")
	one.do(30*time.Second, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("name")))
	if txt := one.str(`(() => { const c = document.getElementById("conn"); return c.hidden ? "" : c.textContent })()`); txt != "" {
		t.Errorf("before joining, the header says %q", txt)
	}
	// Count camera requests from here on.
	one.eval(`(() => { window.mediaAsks = 0; const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
		navigator.mediaDevices.getUserMedia = (c) => (mediaAsks++, orig(c)); return true })()`, nil)
	one.eval(`document.getElementById("name").value = ""`, nil)
	one.do(10*time.Second, chromedp.SendKeys(chromedp.ID("name"), "Ada"), chromedp.Click(chromedp.ID("join-button")))
	one.wait("the session to open", `switchboardApp.session?.state === "open"`, 20*time.Second)
	idTwo := two.join(url, "Ada")
	one.wait("the other Ada", fmt.Sprintf(`document.querySelector('#peers li[data-peer=%q]')`, idTwo), 10*time.Second)
	var asks int
	one.eval(`mediaAsks`, &asks)
	if asks != 0 {
		t.Errorf("joining the lobby asked for the camera %d times, want 0", asks)
	}
	// Same name as mine: a tag from the peer id tells us apart.
	tag := one.str(fmt.Sprintf(`document.querySelector('#peers li[data-peer=%q] .tag')?.textContent ?? ""`, idTwo))
	if want := "#" + idTwo[:4]; tag != want {
		t.Errorf("tag of the other Ada %q, want %q", tag, want)
	}

	// A phone in a room with a long name.
	long := a.httpURL() + "/r/the-extended-family-sunday-call-2026"
	one.leave()
	one.do(30*time.Second, chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2)), chromedp.Navigate(long), chromedp.WaitVisible(chromedp.ID("name")))
	var hdr struct {
		LinkVisible  bool
		LabelOneLine bool
		ScrollWidth  int
	}
	one.eval(`(() => {
		const l = document.getElementById("check-link").getBoundingClientRect();
		const r = document.getElementById("room-label");
		const lh = parseFloat(getComputedStyle(r).lineHeight) || 20;
		return { LinkVisible: l.width > 0 && l.left >= 0 && l.right <= innerWidth && l.top >= 0,
			LabelOneLine: r.getBoundingClientRect().height < lh * 1.5,
			ScrollWidth: document.documentElement.scrollWidth };
	})()`, &hdr)
	if !hdr.LinkVisible {
		t.Error("the Network check link is not on screen at phone width")
	}
	if !hdr.LabelOneLine {
		t.Error("the room name wraps in the phone header")
	}
	if hdr.ScrollWidth > 360 {
		t.Errorf("page is %d px wide on a 360 px screen", hdr.ScrollWidth)
	}
	one.screenshot("join-phone.png", false)
}

// blockUpgrades proxies to target but answers every WebSocket upgrade with
// 403, as a corporate proxy that does not allow WebSockets does.
func blockUpgrades(tb testing.TB, target string) *httptest.Server {
	tb.Helper()
	u, err := neturl.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "websockets are not allowed here", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// TestBrowserCheckWebSocketBlocked: behind a proxy that refuses WebSocket
// upgrades, /check says signaling is blocked and that calls will not work,
// although STUN and TURN answer.
func TestBrowserCheckWebSocketBlocked(t *testing.T) {
	chromiumPath(t)
	a := startStack(t, nil)
	proxy := blockUpgrades(t, a.httpURL())
	p := newPage(t, "check-blocked")
	p.do(20*time.Second, chromedp.Navigate(proxy.URL+"/check"))
	p.wait("the check to finish", `document.body.dataset.done === "true"`, 60*time.Second)
	sig := p.str(`document.getElementById("signaling").textContent`)
	if ok := p.str(`document.getElementById("signaling").dataset.ok`); ok != "false" || !strings.Contains(sig, "blocked") || !strings.Contains(sig, "WebSocket") {
		t.Errorf("signaling verdict %q (ok %s), want blocked, naming WebSockets", sig, ok)
	}
	summary := p.str(`document.getElementById("summary").textContent`)
	if !strings.HasPrefix(summary, "Calls will not work") || !strings.Contains(summary, "WebSocket") {
		t.Errorf("summary %q, want calls will not work because of the WebSocket", summary)
	}
	if relay := p.str(`document.getElementById("relay-call").textContent`); strings.HasPrefix(relay, "Waiting") {
		t.Errorf("relay call still says %q", relay)
	}
	// STUN and TURN were still tested (over plain HTTP for the addresses).
	if n := p.str(`String(document.querySelectorAll("#lines tr .verdict[data-ok=true]").length)`); n == "0" {
		t.Error("no STUN/TURN line was tested")
	}
}

// webTestJWT mints an HS256 JWT for claims (what `switchboard token` and the
// sign-in endpoint hand out), so the UI tests need no server-side sign-in.
func webTestJWT(tb testing.TB, secret string, claims map[string]any) string {
	tb.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestBrowserCheckSignIn: on a server with an auth secret, /check without a
// sign-in says "not signed in" (not a network failure) and finishes; with
// the token the app stored, it tests everything.
func TestBrowserCheckSignIn(t *testing.T) {
	chromiumPath(t)
	const secret = "0123456789abcdef0123456789abcdef-web"
	a := startStack(t, map[string]string{"AUTH_SECRET": secret})
	p := newPage(t, "check-signin")
	p.do(20*time.Second, chromedp.Navigate(a.httpURL()+"/check"))
	p.wait("the check to finish", `document.body.dataset.done === "true"`, 60*time.Second)
	summary := p.str(`document.getElementById("summary").textContent`)
	if !strings.Contains(summary, "Not signed in") || strings.Contains(summary, "could not talk") {
		t.Errorf("summary %q, want it to say not signed in", summary)
	}
	if href := p.str(`document.querySelector("#summary a")?.getAttribute("href") ?? ""`); href != "/" {
		t.Errorf("summary links to %q, want the app /", href)
	}
	if relay := p.str(`document.getElementById("relay-call").textContent`); strings.HasPrefix(relay, "Waiting") {
		t.Errorf("relay call still says %q", relay)
	}
	p.screenshot("check-signed-out.png", true)

	tok := webTestJWT(t, secret, map[string]any{"sub": "checker", "exp": time.Now().Add(time.Hour).Unix()})
	p.eval(fmt.Sprintf(`(localStorage.setItem("switchboard.token", %q), true)`, tok), nil)
	runCheck(t, p, a.httpURL()+"/check", []string{"stun", "turn-udp", "turn-tcp"})
	if sig := p.str(`document.getElementById("signaling").textContent`); !strings.HasPrefix(sig, "Signaling: works") {
		t.Errorf("signaling verdict %q with the stored token", sig)
	}
}

// signInStub answers /api/signin the way the sign-in endpoint does
// (PROTOCOL.md / README), minting tokens the stack accepts, and proxies
// everything else to the stack: the UI is tested on its own here; the
// end-to-end test with the real endpoint is TestBrowserSignIn.
type signInStub struct {
	secret, passcode string
	mu               sync.Mutex
	posts            []map[string]string
	limited          bool
}

func (s *signInStub) serve(tb testing.TB, target string) *httptest.Server {
	tb.Helper()
	u, err := neturl.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/signin" {
			rp.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, `{"required":true,"passcode":true}`)
			return
		}
		var req map[string]string
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"bad-request","message":"not JSON"}`)
			return
		}
		s.mu.Lock()
		s.posts = append(s.posts, req)
		limited := s.limited
		s.mu.Unlock()
		exp := time.Now().Add(time.Hour).Unix()
		switch {
		case limited:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"rate-limited","message":"too many tries"}`)
		case req["invite"] == "good-invite":
			_ = json.NewEncoder(w).Encode(map[string]any{"token": webTestJWT(tb, s.secret, map[string]any{"sub": "inv", "exp": exp, "room": "family"}), "ttl": 3600, "room": "family", "name": "Grandma"})
		case req["invite"] != "":
			w.WriteHeader(http.StatusGone)
			_, _ = io.WriteString(w, `{"error":"expired","message":"This invite link has expired. Ask for a new one."}`)
		case req["passcode"] == s.passcode:
			_ = json.NewEncoder(w).Encode(map[string]any{"token": webTestJWT(tb, s.secret, map[string]any{"sub": "pass", "exp": exp}), "ttl": 3600, "room": "", "name": ""})
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"bad-passcode","message":"Wrong passcode."}`)
		}
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// TestBrowserSignInScreen: the sign-in screen against a stub endpoint: the
// passcode form (refused with the server's words, rate limited with the
// button held back, accepted), an invite fragment (signed in, fragment gone,
// name prefilled, the token's room), an expired invite, and a token the hub
// refuses (cleared, back to the sign-in screen).
func TestBrowserSignInScreen(t *testing.T) {
	chromiumPath(t)
	const secret = "0123456789abcdef0123456789abcdef-ui"
	a := startStack(t, map[string]string{"AUTH_SECRET": secret})
	stub := &signInStub{secret: secret, passcode: "open sesame"}
	srv := stub.serve(t, a.httpURL())
	p := newPage(t, "signin")
	signinShown := `!document.getElementById("signin").hidden && document.getElementById("join").hidden`

	t.Run("passcode", func(t *testing.T) {
		p.t = t
		p.do(30*time.Second, chromedp.Navigate(srv.URL+"/"))
		p.wait("the sign-in screen with a passcode field", signinShown+` && !document.getElementById("signin-form").hidden`, 20*time.Second)
		p.screenshot("signin.png", false)
		p.do(10*time.Second, chromedp.SendKeys(chromedp.ID("passcode"), "wrong"), chromedp.Click(chromedp.ID("signin-button")))
		p.wait("the server's refusal", `document.getElementById("signin-error").textContent === "Wrong passcode."`, 10*time.Second)
		stub.mu.Lock()
		stub.limited = true
		stub.mu.Unlock()
		p.wait("the button back", `!document.getElementById("signin-button").disabled`, 10*time.Second)
		p.do(10*time.Second, chromedp.SendKeys(chromedp.ID("passcode"), "wrong again"), chromedp.Click(chromedp.ID("signin-button")))
		p.wait("the rate limit", `document.getElementById("signin-error").textContent.includes("Wait 2 seconds") && document.getElementById("signin-button").disabled`, 10*time.Second)
		stub.mu.Lock()
		stub.limited = false
		stub.mu.Unlock()
		p.wait("the button back after Retry-After", `!document.getElementById("signin-button").disabled`, 15*time.Second)
		p.do(10*time.Second, chromedp.SendKeys(chromedp.ID("passcode"), "open sesame"), chromedp.Click(chromedp.ID("signin-button")))
		p.wait("the join form", `!document.getElementById("join").hidden && document.getElementById("signin").hidden`, 10*time.Second)
		if tok := p.str(`localStorage.getItem("switchboard.token") ?? ""`); strings.Count(tok, ".") != 2 {
			t.Errorf("stored token %q, want a JWT", tok)
		}
		p.joinForm("Cy")
		p.leave()
	})

	t.Run("invite", func(t *testing.T) {
		p.t = t
		p.eval(`(localStorage.clear(), true)`, nil)
		p.do(30*time.Second, chromedp.Navigate(srv.URL+"/#invite=good-invite"))
		p.wait("the join form", `!document.getElementById("join").hidden`, 20*time.Second)
		if h := p.str(`location.hash`); h != "" {
			t.Errorf("the invite is still in the address bar: %q", h)
		}
		if n := p.str(`document.getElementById("name").value`); n != "Grandma" {
			t.Errorf("name prefilled %q, want the invite's Grandma", n)
		}
		p.do(10*time.Second, chromedp.Click(chromedp.ID("join-button")))
		p.wait("the session to open", `switchboardApp.session?.state === "open"`, 20*time.Second)
		if r := p.str(`switchboardApp.session.room + "|" + document.getElementById("room-label").textContent`); r != "family|Room family" {
			t.Errorf("room and label %q, want the invite's room family", r)
		}
		stub.mu.Lock()
		last := stub.posts[len(stub.posts)-1]
		stub.mu.Unlock()
		if last["invite"] != "good-invite" {
			t.Errorf("POST /api/signin %v, want the invite", last)
		}
		p.leave()
	})

	t.Run("expired invite", func(t *testing.T) {
		p.t = t
		p.eval(`(localStorage.clear(), true)`, nil)
		p.do(30*time.Second, chromedp.Navigate(srv.URL+"/#invite=old-invite"))
		p.wait("the sign-in screen with the reason", signinShown+` && document.getElementById("signin-error").textContent.includes("expired")`, 20*time.Second)
	})

	t.Run("token refused by the hub", func(t *testing.T) {
		p.t = t
		bad := webTestJWT(t, "another-secret-0123456789abcdef0123", map[string]any{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
		p.eval(fmt.Sprintf(`(localStorage.setItem("switchboard.token", %q), true)`, bad), nil)
		p.do(30*time.Second, chromedp.Navigate(srv.URL+"/"))
		p.wait("the join form (the token looks fine)", `!document.getElementById("join").hidden`, 20*time.Second)
		p.eval(`document.getElementById("name").value = "Eve"`, nil)
		p.do(10*time.Second, chromedp.Click(chromedp.ID("join-button")))
		p.wait("back on the sign-in screen", signinShown+` && document.getElementById("signin-error").textContent.includes("Sign in again")`, 20*time.Second)
		if tok := p.str(`localStorage.getItem("switchboard.token") ?? ""`); tok != "" {
			t.Errorf("the refused token is still stored")
		}
	})
}
