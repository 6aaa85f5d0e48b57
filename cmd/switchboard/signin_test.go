package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"golang.org/x/crypto/bcrypt"
)

const (
	testAuthSecret = "0123456789abcdef0123456789abcdef"
	testPasscode   = "correct horse battery"
)

// signInEnv is the deploy guide's sign-in settings for a test stack: the auth
// secret, a passcode and a data directory of the test's own.
func signInEnv(tb testing.TB) map[string]string {
	return map[string]string{
		"SWITCHBOARD_AUTH_SECRET": testAuthSecret,
		"SWITCHBOARD_PASSCODE":    testPasscode,
		"SWITCHBOARD_DATA_DIR":    tb.TempDir(),
	}
}

// runInvite runs `switchboard invite args...` through run, as the operator
// would, with the server's environment, and returns the printed link.
func runInvite(tb testing.TB, env map[string]string, args ...string) string {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"invite"}, args...), environOf(env), &stdout, &stderr); code != exitOK {
		tb.Fatalf("switchboard invite %q: exit %d: %s", args, code, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// inviteToken returns the #invite= token of a link.
func inviteToken(tb testing.TB, link string) string {
	tb.Helper()
	u, err := url.Parse(link)
	if err != nil {
		tb.Fatalf("link %q: %v", link, err)
	}
	tok, ok := strings.CutPrefix(u.Fragment, "invite=")
	if !ok || tok == "" || u.RawQuery != "" {
		tb.Fatalf("link %q: want the token in the fragment (#invite=...) and no query", link)
	}
	return tok
}

type signInReply struct {
	Status  int
	Token   string `json:"token"`
	TTL     int    `json:"ttl"`
	Room    string `json:"room"`
	Name    string `json:"name"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

func signIn(tb testing.TB, base string, body map[string]string) signInReply {
	tb.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+"/api/signin", "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var r signInReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		tb.Fatalf("POST /api/signin: decode: %v", err)
	}
	r.Status = resp.StatusCode
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		tb.Errorf("POST /api/signin: Referrer-Policy %q, want no-referrer", got)
	}
	return r
}

// helloWith opens /ws with a token and returns the welcome's type and room,
// or the error code.
func helloWith(tb testing.TB, base, token string) (typ, room, code string) {
	tb.Helper()
	ctx := tb.(*testing.T).Context()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		tb.Fatalf("dial /ws: %v", err)
	}
	defer c.CloseNow()
	if err := wsjson.Write(ctx, c, map[string]any{"type": "hello", "name": "test", "token": token}); err != nil {
		tb.Fatal(err)
	}
	var m struct{ Type, Room, Code string }
	if err := wsjson.Read(ctx, c, &m); err != nil {
		tb.Fatalf("read after hello: %v", err)
	}
	return m.Type, m.Room, m.Code
}

// TestInviteSignIn: the operator's path without a browser. `switchboard
// invite` prints a link to the URL people open; its token signs in at
// /api/signin and the session token opens /ws in the link's room; the link
// itself is no hello token; a one-use link is used up; --revoke-all revokes.
func TestInviteSignIn(t *testing.T) {
	env := signInEnv(t)
	a := startStack(t, env)
	base := a.httpURL()
	cliEnv := maps.Clone(stackDefaults(t))
	maps.Copy(cliEnv, env)

	link := runInvite(t, cliEnv, "--room", "family", "--name", "Grandma")
	if !strings.HasPrefix(link, "http://localhost:") || !strings.Contains(link, "/#invite=") {
		t.Errorf("link %q: want the URL people open (http://localhost:PORT/ without TLS) + #invite=", link)
	}
	tok := inviteToken(t, link)
	if typ, _, code := helloWith(t, base, tok); typ != "error" || code != "unauthorized" {
		t.Errorf("hello with the link's own token = %s %s, want error unauthorized", typ, code)
	}
	r := signIn(t, base, map[string]string{"invite": tok})
	if r.Status != 200 || r.Room != "family" || r.Name != "Grandma" || r.TTL != 12*3600 || r.Token == "" {
		t.Fatalf("sign-in with the link = %+v, want 200 room family name Grandma ttl 43200", r)
	}
	if typ, room, code := helloWith(t, base, r.Token); typ != "welcome" || room != "family" {
		t.Errorf("hello with the session token = %s room %q (%s), want welcome in family", typ, room, code)
	}
	// /api/ice-servers takes the sign-in as a bearer token, not the link.
	for _, c := range []struct {
		name, tok string
		want      int
	}{{"session token", r.Token, 200}, {"invite token", tok, 401}} {
		req, _ := http.NewRequest("GET", base+"/api/ice-servers", nil)
		req.Header.Set("Authorization", "Bearer "+c.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/api/ice-servers with the %s = %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}

	once := inviteToken(t, runInvite(t, cliEnv, "--uses", "1"))
	if r := signIn(t, base, map[string]string{"invite": once}); r.Status != 200 {
		t.Fatalf("first use of a one-use link = %+v", r)
	}
	if r := signIn(t, base, map[string]string{"invite": once}); r.Status != 410 || r.Error != "invite-used-up" {
		t.Errorf("second use of a one-use link = %d %s, want 410 invite-used-up", r.Status, r.Error)
	}
	if _, err := os.Stat(filepath.Join(env["SWITCHBOARD_DATA_DIR"], "invite-uses.json")); err != nil {
		t.Errorf("use count not in SWITCHBOARD_DATA_DIR: %v", err)
	}

	// Passcode: wrong, then right; the operator's own tokens still work.
	if r := signIn(t, base, map[string]string{"passcode": "wrong passcode"}); r.Status != 401 || r.Error != "wrong-passcode" {
		t.Errorf("wrong passcode = %d %s, want 401 wrong-passcode", r.Status, r.Error)
	}
	if r := signIn(t, base, map[string]string{"passcode": testPasscode, "name": "Bob"}); r.Status != 200 || r.Room != "" || r.Name != "Bob" {
		t.Errorf("passcode sign-in = %+v, want 200 any room name Bob", r)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"token", "--sub", "app-user", "--room", "demo"}, environOf(cliEnv), &out, &errb); code != exitOK {
		t.Fatalf("switchboard token: %d %s", code, errb.String())
	}
	if typ, room, _ := helloWith(t, base, strings.TrimSpace(out.String())); typ != "welcome" || room != "demo" {
		t.Errorf("operator token: %s room %q, want welcome in demo", typ, room)
	}

	// Revoke every link: the old one is refused, a new one works.
	out.Reset()
	if code := run(context.Background(), []string{"invite", "--revoke-all"}, environOf(cliEnv), &out, &errb); code != exitOK {
		t.Fatalf("invite --revoke-all: %d %s", code, errb.String())
	}
	if r := signIn(t, base, map[string]string{"invite": tok}); r.Status != 401 || r.Error != "invite-revoked" {
		t.Errorf("revoked link = %d %s, want 401 invite-revoked", r.Status, r.Error)
	}
	if r := signIn(t, base, map[string]string{"invite": inviteToken(t, runInvite(t, cliEnv))}); r.Status != 200 {
		t.Errorf("link made after the revocation = %+v, want 200", r)
	}

	// The info endpoint the app asks first.
	resp, err := http.Get(base + "/api/signin")
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Required, Passcode bool }
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if !info.Required || !info.Passcode || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /api/signin = %+v (Cache-Control %q), want required and passcode, no-store", info, resp.Header.Get("Cache-Control"))
	}
}

// TestInviteUsesSurviveRestart: a one-use link used on one server run stays
// used on the next, as a self-hoster expects.
func TestInviteUsesSurviveRestart(t *testing.T) {
	env := signInEnv(t)
	cliEnv := maps.Clone(stackDefaults(t))
	maps.Copy(cliEnv, env)
	once := inviteToken(t, runInvite(t, cliEnv, "--uses", "1"))

	first := startStack(t, env)
	if r := signIn(t, first.httpURL(), map[string]string{"invite": once}); r.Status != 200 {
		t.Fatalf("first use = %+v", r)
	}
	if err := first.shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := startStack(t, env)
	if r := signIn(t, second.httpURL(), map[string]string{"invite": once}); r.Status != 410 {
		t.Errorf("after a restart: %d %s, want 410: the link was used", r.Status, r.Error)
	}
}

func TestInviteCommandErrors(t *testing.T) {
	base := stackDefaults(t)
	withAuth := maps.Clone(base)
	withAuth["SWITCHBOARD_AUTH_SECRET"] = testAuthSecret
	withAuth["SWITCHBOARD_DATA_DIR"] = t.TempDir()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no auth secret", base, nil, "SWITCHBOARD_AUTH_SECRET is not set"},
		{"bad room", withAuth, []string{"--room", "a b"}, "room"},
		{"zero ttl", withAuth, []string{"--ttl", "0s"}, "--ttl"},
		{"negative uses", withAuth, []string{"--uses", "-1"}, "--uses"},
		{"stray argument", withAuth, []string{"family"}, "flags only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"invite"}, tt.args...), environOf(tt.env), &out, &errb)
			if code != exitUsage || !strings.Contains(errb.String(), tt.want) || out.Len() != 0 {
				t.Errorf("invite %q = %d, stdout %q, stderr %q; want exit 2 naming %q", tt.args, code, out.String(), errb.String(), tt.want)
			}
		})
	}
}

func TestInviteLinkURL(t *testing.T) {
	env := map[string]string{"SWITCHBOARD_AUTH_SECRET": testAuthSecret, "SWITCHBOARD_DATA_DIR": t.TempDir()}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"plain http", map[string]string{"SWITCHBOARD_HTTP_ADDR": ":8080"}, "http://localhost:8080/#invite="},
		{"deploy guide: ACME, 443 forwarded to 8443", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "call.example.com", "SWITCHBOARD_HTTPS_ADDR": ":8443"}, "https://call.example.com/#invite="},
		{"public url", map[string]string{"SWITCHBOARD_PUBLIC_URL": "https://meet.example.org:8443"}, "https://meet.example.org:8443/#invite="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := maps.Clone(env)
			maps.Copy(m, tt.env)
			if link := runInvite(t, m); !strings.HasPrefix(link, tt.want) {
				t.Errorf("link = %q, want %q...", link, tt.want)
			}
		})
	}
}

func TestPasscodeHashCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cmdPasscodeHash(nil, strings.NewReader(testPasscode+"\n"), &out, &errb); code != exitOK {
		t.Fatalf("passcode-hash: %d %s", code, errb.String())
	}
	line := strings.TrimSpace(out.String())
	hash, ok := strings.CutPrefix(line, "SWITCHBOARD_PASSCODE_HASH='")
	hash, ok2 := strings.CutSuffix(hash, "'")
	if !ok || !ok2 {
		t.Fatalf("output %q: want SWITCHBOARD_PASSCODE_HASH='...'", line)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(testPasscode)); err != nil {
		t.Errorf("hash does not verify the passcode: %v", err)
	}
	if strings.Contains(out.String()+errb.String(), testPasscode) {
		t.Error("the passcode was echoed")
	}
	// The server takes it, and signs in with it.
	env := signInEnv(t)
	delete(env, "SWITCHBOARD_PASSCODE")
	env["SWITCHBOARD_PASSCODE_HASH"] = hash
	a := startStack(t, env)
	if r := signIn(t, a.httpURL(), map[string]string{"passcode": testPasscode}); r.Status != 200 {
		t.Errorf("sign-in with a hashed passcode = %+v", r)
	}
	for _, in := range []string{"short\n", ""} {
		out.Reset()
		if code := cmdPasscodeHash(nil, strings.NewReader(in), &out, &errb); code != exitUsage || out.Len() != 0 {
			t.Errorf("passcode-hash with %q = %d %q, want exit 2 and no hash", in, code, out.String())
		}
	}
	if code := cmdPasscodeHash([]string{"secret"}, strings.NewReader(""), &out, &errb); code != exitUsage {
		t.Errorf("passcode-hash with an argument = %d, want 2 (passcodes do not go on the command line)", code)
	}
}

// TestSignInLogsNoSecrets: the server log after sign-ins (right and wrong)
// holds neither passcodes nor tokens.
func TestSignInLogsNoSecrets(t *testing.T) {
	env := stackDefaults(t)
	maps.Copy(env, signInEnv(t))
	env["SWITCHBOARD_LOG_LEVEL"] = "debug"
	env["SWITCHBOARD_HTTP_ADDR"] = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, environOf(env), &stdout, &stderr) }()
	waitFor(t, 20*time.Second, "the start-up block", func() bool { return strings.Contains(stdout.String(), "public ip") })
	port := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(bannerField(stdout.String(), "open      "))[0], "http://localhost:"), "/")
	base := "http://127.0.0.1:" + port
	link := runInvite(t, env)
	tok := inviteToken(t, link)
	r := signIn(t, base, map[string]string{"invite": tok})
	signIn(t, base, map[string]string{"passcode": "a wrong guess 123"})
	signIn(t, base, map[string]string{"passcode": testPasscode})
	helloWith(t, base, r.Token)
	cancel()
	<-done
	log := stderr.String()
	for _, s := range []string{testPasscode, "a wrong guess 123", tok, r.Token, testAuthSecret} {
		if strings.Contains(log+stdout.String(), s) {
			t.Errorf("server output contains a secret %q:\n%s", short(s), log)
		}
	}
	if !strings.Contains(log, "wrong-passcode") || !strings.Contains(log, "signed in") {
		t.Errorf("log lacks the sign-in lines:\n%s", log)
	}
	if !strings.Contains(stdout.String(), "sign-in    invite links (switchboard invite) or the passcode") {
		t.Errorf("banner does not say how people sign in:\n%s", stdout.String())
	}
}
