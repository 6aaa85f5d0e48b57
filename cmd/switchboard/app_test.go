package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func environOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bannerField returns the value of a "  name  value" line of the banner.
func bannerField(banner, name string) string {
	for _, l := range strings.Split(banner, "\n") {
		if rest, ok := strings.CutPrefix(l, "  "+name+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// TestServe runs the real entry point: it prints the start-up block, serves
// the app and the health endpoints, and a ctx cancel (SIGTERM in main) stops
// it with exit status 0.
func TestServe(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		publicIP string // prefix of the "public ip" line
		warnings []string
	}{
		{
			name:     "nothing configured but loopback addresses, and a typo",
			env:      map[string]string{"SWITCHBOARD_PUBLICIP": "203.0.113.7"},
			publicIP: "", // detected: any address, with how it was chosen
			warnings: []string{"TURN secret generated", "open mode"},
		},
		{
			name: "public ip, secret and auth set",
			env: map[string]string{
				"SWITCHBOARD_PUBLIC_IP":   "127.0.0.1",
				"SWITCHBOARD_TURN_SECRET": "0123456789abcdef0123",
				"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef",
			},
			publicIP: "127.0.0.1 (set by SWITCHBOARD_PUBLIC_IP)",
			warnings: []string{"public ip 127.0.0.1 is loopback"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"SWITCHBOARD_HTTP_ADDR":     "127.0.0.1:0",
				"SWITCHBOARD_TURN_ADDR":     "127.0.0.1:0",
				"SWITCHBOARD_RELAY_OFFLOAD": "off", // never on the host's interfaces (see stackDefaults)
			}
			maps.Copy(env, tt.env)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stdout, stderr syncBuffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"serve"}, environOf(env), &stdout, &stderr) }()
			waitFor(t, 20*time.Second, "the start-up block", func() bool {
				select {
				case code := <-done:
					t.Fatalf("run exited %d before start: %s", code, stderr.String())
				default:
				}
				return strings.Contains(stdout.String(), "public ip")
			})
			banner := stdout.String()
			open := strings.Fields(bannerField(banner, "open      ") + " -")[0]
			if !strings.HasPrefix(open, "http://localhost:") {
				t.Errorf("open URL = %q, want http://localhost:PORT/ (a secure context without TLS)", open)
			}
			ip := bannerField(banner, "public ip ")
			if !strings.HasPrefix(ip, tt.publicIP) || !strings.Contains(ip, "(") {
				t.Errorf("public ip line = %q, want %q... with how it was chosen", ip, tt.publicIP)
			}
			if _, typo := tt.env["SWITCHBOARD_PUBLICIP"]; typo && !strings.Contains(stderr.String(), "var=SWITCHBOARD_PUBLICIP") {
				t.Errorf("no warning about the unknown SWITCHBOARD_PUBLICIP in the log:\n%s", stderr.String())
			}
			for _, w := range tt.warnings {
				if !strings.Contains(banner, w) {
					t.Errorf("banner lacks warning %q:\n%s", w, banner)
				}
			}
			if n := strings.Count(banner, "WARNING"); len(tt.warnings) > 0 && tt.publicIP != "" && n != len(tt.warnings) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(tt.warnings), banner)
			}
			for _, secret := range []string{tt.env["SWITCHBOARD_TURN_SECRET"], tt.env["SWITCHBOARD_AUTH_SECRET"]} {
				if secret != "" && strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("a secret was printed")
				}
			}

			base := "http://" + strings.TrimPrefix(strings.TrimSuffix(open, "/"), "http://")
			base = strings.Replace(base, "localhost", "127.0.0.1", 1)
			for _, path := range []string{"/healthz", "/readyz", "/", "/metrics"} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
				}
			}
			// healthcheck subcommand against the running server.
			hcEnv := maps.Clone(env)
			hcEnv["SWITCHBOARD_HTTP_ADDR"] = strings.TrimPrefix(base, "http://")
			var hout, herr bytes.Buffer
			if code := run(t.Context(), []string{"healthcheck"}, environOf(hcEnv), &hout, &herr); code != 0 {
				t.Errorf("healthcheck = %d, want 0: %s", code, herr.String())
			}

			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("run after cancel = %d, want 0; stderr:\n%s", code, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("run did not return after cancel")
			}
			// The stop says how to skip the drain, and the closing line counts.
			for _, want := range []string{"a second Ctrl-C exits now", "msg=stopped sessions=0 allocations=0 allocations_ended=0 allocations_closed=0"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, stderr.String())
				}
			}
			if code := run(t.Context(), []string{"healthcheck"}, environOf(hcEnv), &hout, &herr); code != 1 {
				t.Errorf("healthcheck after stop = %d, want 1", code)
			}
		})
	}
}

// hello opens /ws and completes hello/welcome, returning the conn and the
// iceServers of the welcome.
func hello(tb testing.TB, ctx context.Context, base string) (*websocket.Conn, []wire.ICEServer) {
	tb.Helper()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		tb.Fatalf("dial /ws: %v", err)
	}
	if err := wsjson.Write(ctx, c, wire.Hello{Type: wire.TypeHello, Name: "test"}); err != nil {
		tb.Fatal(err)
	}
	var w wire.Welcome
	tb.Cleanup(func() { c.CloseNow() })
	if err := wsjson.Read(ctx, c, &w); err != nil || w.Type != wire.TypeWelcome {
		tb.Fatalf("welcome: %+v, %v", w, err)
	}
	return c, w.ICEServers
}

// turnClient allocates a UDP relay on the stack with the credentials of a
// welcome (the REST username's user part is the session id).
func turnClient(tb testing.TB, a *app, user, pass string) (*turn.Client, net.PacketConn, error) {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	server := a.relay.UDPAddr().String()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Username:       user,
		Password:       pass,
		Realm:          a.cfg.Realm,
		Conn:           conn,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		tb.Fatal(err)
	}
	relayConn, err := c.Allocate()
	tb.Cleanup(func() {
		if relayConn != nil {
			relayConn.Close() // Refresh(0): frees the allocation now, not at drain timeout
		}
		c.Close()
		conn.Close()
	})
	return c, relayConn, err
}

func turnCreds(tb testing.TB, servers []wire.ICEServer) (string, string) {
	tb.Helper()
	for _, s := range servers {
		if s.Username != "" {
			return s.Username, s.Credential
		}
	}
	tb.Fatalf("no TURN credentials in %+v", servers)
	return "", ""
}

// TestGracefulShutdown: on shutdown /readyz turns false, sessions get 1012,
// new allocations are refused, a running allocation keeps the relay up until
// it ends (or DRAIN_TIMEOUT), then shutdown returns nil.
func TestGracefulShutdown(t *testing.T) {
	// Registered first, so it runs after every other cleanup (clients,
	// stack): nothing the stack started may outlive it.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	// A drain timeout far beyond the test's own bounds: whatever ends the
	// drain here, it is not the timeout.
	a := startStack(t, map[string]string{"DRAIN_TIMEOUT": "10m"})
	ctx := t.Context()

	ws, servers := hello(t, ctx, a.httpURL())
	user, pass := turnCreds(t, servers)
	_, relayConn, err := turnClient(t, a, user, pass)
	if err != nil {
		t.Fatalf("allocate before shutdown: %v", err)
	}
	if n := a.relay.Allocations(); n != 1 {
		t.Fatalf("allocations = %d, want 1", n)
	}

	// The session learns about the stop with 1012 (reconnect).
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
		}
	}()

	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- a.shutdown(sctx) }()

	waitFor(t, 5*time.Second, "readyz false", func() bool { return !a.ready.Load() })
	// Observable over HTTP while the drain runs: not ready, still alive.
	for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthz": http.StatusOK} {
		resp, err := http.Get(a.httpURL() + path)
		if err != nil {
			t.Fatalf("GET %s during drain: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s during drain = %d, want %d", path, resp.StatusCode, want)
		}
	}
	select {
	case code := <-closed:
		if code != websocket.StatusServiceRestart {
			t.Errorf("session closed with %v, want 1012 (service restart)", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("session not closed")
	}
	// No new sessions while stopping.
	if c, _, err := websocket.Dial(ctx, strings.Replace(a.httpURL(), "http", "ws", 1)+"/ws", nil); err == nil {
		c.CloseNow()
		t.Error("new /ws session accepted during shutdown")
	}
	// Draining: a new allocation is refused, the running one is kept.
	if _, _, err := turnClient(t, a, user, pass); err == nil {
		t.Error("allocation during drain succeeded, want refused")
	}
	if n := a.relay.Stats().AllocationsRefused["draining"]; n != 1 {
		t.Errorf("allocations refused for draining = %d, want 1 (refusals %v)", n, a.relay.Stats().AllocationsRefused)
	}
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned %v while an allocation was still running", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := a.relay.Allocations(); n != 1 {
		t.Errorf("allocations during drain = %d, want the running one", n)
	}

	// The call ends: the relay stops and shutdown completes (the drain timeout
	// is ten minutes away).
	relayConn.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("shutdown = %v, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("shutdown did not return after the last allocation ended")
	}
}

// TestDrainTimeout: an allocation that never ends holds the stop for
// DRAIN_TIMEOUT, and running out of drain time is still a clean stop.
func TestDrainTimeout(t *testing.T) {
	a := startStack(t, map[string]string{"DRAIN_TIMEOUT": "1s"})
	ws, servers := hello(t, t.Context(), a.httpURL())
	// Read (and so answer the hub's close) like a browser would.
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	user, pass := turnCreds(t, servers)
	if _, _, err := turnClient(t, a, user, pass); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := a.shutdown(ctx); err != nil {
		t.Errorf("shutdown = %v, want nil after the drain timeout", err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("shutdown took %v, want at least DRAIN_TIMEOUT (1s) with an allocation running", el)
	}
	if n := a.relay.Allocations(); n != 0 {
		t.Errorf("allocations after shutdown = %d, want 0", n)
	}
}

// TestSubcommands covers credentials, token, version, bench dispatch and
// usage errors through run.
func TestSubcommands(t *testing.T) {
	const turnSecret = "0123456789abcdef0123"
	const authSecret = "0123456789abcdef0123456789abcdef"
	base := []string{
		"SWITCHBOARD_PUBLIC_IP=203.0.113.7",
		"SWITCHBOARD_TURN_SECRET=" + turnSecret,
		"SWITCHBOARD_AUTH_SECRET=" + authSecret,
	}
	tests := []struct {
		name    string
		args    []string
		environ []string
		code    int
		stdout  []string // substrings
		stderr  string
	}{
		{"version", []string{"version"}, nil, 0, []string{"switchboard "}, ""},
		{"unknown command", []string{"frobnicate"}, nil, 2, nil, `unknown command "frobnicate"`},
		{"serve with arguments", []string{"serve", "extra"}, nil, 2, nil, "takes no arguments"},
		{"credentials", []string{"credentials", "--user", "alice", "--ttl", "1h"}, base, 0,
			[]string{":alice\n", "password: ", `"iceServers"`, `"stun:203.0.113.7:3478"`, `"turn:203.0.113.7:3478?transport=udp"`, `"turn:203.0.113.7:3478?transport=tcp"`, `"credential"`}, ""},
		{"credentials with tls lists turns", []string{"credentials"}, append([]string{"SWITCHBOARD_ACME_DOMAINS=call.example.com", "SWITCHBOARD_TURNS_ADDR=:5349,:443", "SWITCHBOARD_HTTPS_ADDR=:8443"}, base...), 0,
			[]string{`"turns:call.example.com:5349?transport=tcp"`, `"turns:call.example.com:443?transport=tcp"`}, ""},
		{"credentials without secret", []string{"credentials"}, []string{"SWITCHBOARD_PUBLIC_IP=203.0.113.7"}, 2, nil, "SWITCHBOARD_TURN_SECRET is not set"},
		{"credentials ttl over max", []string{"credentials", "--ttl", "48h"}, base, 2, nil, "MAX_CREDENTIAL_TTL"},
		{"credentials bad user", []string{"credentials", "--user", "a:b"}, base, 2, nil, "--user"},
		{"credentials bad flag", []string{"credentials", "--nope"}, base, 2, nil, "flag provided but not defined"},
		{"credentials bad config", []string{"credentials"}, []string{"SWITCHBOARD_PEER_DENY=10.0.0/8"}, 2, nil, "SWITCHBOARD_PEER_DENY"},
		{"token", []string{"token", "--sub", "alice", "--room", "demo", "--ttl", "1h"}, base, 0, []string{"eyJ"}, ""},
		{"token without sub", []string{"token"}, base, 2, nil, "--sub"},
		{"token without secret", []string{"token", "--sub", "alice"}, nil, 2, nil, "SWITCHBOARD_AUTH_SECRET is not set"},
		{"bench without kind", []string{"bench"}, nil, 2, nil, "usage: switchboard bench"},
		{"bench unknown kind", []string{"bench", "nope"}, nil, 2, nil, `unknown bench "nope"`},
		{"healthcheck nothing listening", []string{"healthcheck"}, []string{"SWITCHBOARD_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(closedPort(t))}, 1, nil, "healthcheck"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, tt.environ, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("run(%q) = %d, want %d; stderr %q", tt.args, code, tt.code, stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("run(%q) stdout lacks %q:\n%s", tt.args, s, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("run(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.stderr)
			}
			for _, secret := range []string{turnSecret, authSecret} {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("run(%q) printed a secret", tt.args)
				}
			}
		})
	}
}

// TestCredentialsWork: credentials printed by the subcommand authenticate
// against a running relay with the same secret (pion client, real Allocate).
func TestCredentialsWork(t *testing.T) {
	a := startStack(t, nil)
	environ := []string{
		"SWITCHBOARD_PUBLIC_IP=127.0.0.1",
		"SWITCHBOARD_TURN_SECRET=" + string(a.cfg.TURNSecrets[0]),
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"credentials", "--user", "cli", "--ttl", "10m"}, environ, &stdout, &stderr); code != 0 {
		t.Fatalf("credentials = %d: %s", code, stderr.String())
	}
	var user, pass string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "username: "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(l, "password: "); ok {
			pass = v
		}
	}
	i := strings.Index(stdout.String(), "{")
	var cfg struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal([]byte(stdout.String()[i:]), &cfg); err != nil {
		t.Fatalf("iceServers JSON: %v\n%s", err, stdout.String())
	}
	if len(cfg.ICEServers) != 2 || cfg.ICEServers[1].Username != user || cfg.ICEServers[1].Credential != pass {
		t.Errorf("iceServers %+v do not carry username %q / password", cfg.ICEServers, user)
	}
	if _, _, err := turnClient(t, a, user, pass); err != nil {
		t.Errorf("allocate with printed credentials: %v", err)
	}
	if _, _, err := turnClient(t, a, user, pass+"x"); err == nil {
		t.Errorf("allocate with a wrong password succeeded")
	}
}

func TestHandleSignals(t *testing.T) {
	tests := []struct {
		name       string
		sigs       []os.Signal
		wantCancel bool
		wantExit   int // -1: no exit
	}{
		{"sigterm stops gracefully", []os.Signal{syscall.SIGTERM}, true, -1},
		{"sigint stops gracefully", []os.Signal{syscall.SIGINT}, true, -1},
		{"second sigint exits now", []os.Signal{syscall.SIGINT, syscall.SIGINT}, true, 130},
		{"sigint after sigterm exits now", []os.Signal{syscall.SIGTERM, syscall.SIGINT}, true, 130},
		{"repeated sigterm keeps draining", []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigs := make(chan os.Signal, len(tt.sigs))
			for _, s := range tt.sigs {
				sigs <- s
			}
			close(sigs)
			cancelled, exitCode := false, -1
			var stderr bytes.Buffer
			handleSignals(sigs, func() { cancelled = true }, func(c int) { exitCode = c }, &stderr)
			if cancelled != tt.wantCancel || exitCode != tt.wantExit {
				t.Errorf("signals %v: cancelled %v exit %d, want %v %d", tt.sigs, cancelled, exitCode, tt.wantCancel, tt.wantExit)
			}
		})
	}
}

// TestPublicIP: how the advertised address is chosen, and that the choice
// is explained.
func TestPublicIP(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantIP  string // empty: any valid address
		wantHow string
		wantErr bool
	}{
		{"configured", map[string]string{"SWITCHBOARD_PUBLIC_IP": "203.0.113.7"}, "203.0.113.7", "SWITCHBOARD_PUBLIC_IP", false},
		{"turn listener bound to one address", map[string]string{"SWITCHBOARD_TURN_ADDR": "127.0.0.1:0"}, "127.0.0.1", "SWITCHBOARD_TURN_ADDR", false},
		{"interface", map[string]string{"SWITCHBOARD_TURN_ADDR": ":0"}, "", "", false},
		// A STUN server that does not answer (nothing listens on that
		// loopback port): start-up must fail rather than guess.
		{"stun asked but silent", map[string]string{"SWITCHBOARD_TURN_ADDR": ":0", "SWITCHBOARD_PUBLIC_IP_STUN": "127.0.0.1:" + strconv.Itoa(closedUDPPort(t))}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfigMap(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			a, err := newApp(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.close()
			ip, how, err := a.publicIP(t.Context())
			if tt.wantErr {
				if err == nil {
					t.Errorf("publicIP = %v (%s), want an error", ip, how)
				}
				return
			}
			if err != nil || !ip.IsValid() || how == "" {
				t.Fatalf("publicIP = %v, %q, %v", ip, how, err)
			}
			if tt.wantIP != "" && ip.String() != tt.wantIP {
				t.Errorf("publicIP = %v, want %s", ip, tt.wantIP)
			}
			if !strings.Contains(how, tt.wantHow) {
				t.Errorf("publicIP how = %q, want it to mention %q", how, tt.wantHow)
			}
		})
	}
}

func closedUDPPort(tb testing.TB) int {
	tb.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestTokenWorks: a token printed by `switchboard token` opens a session on
// a hub with the same AUTH_SECRET; hello without one is refused.
func TestTokenWorks(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-token"
	a := startStack(t, map[string]string{"AUTH_SECRET": secret})
	mintWith := func(secret string, args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), append([]string{"token"}, args...), []string{"SWITCHBOARD_AUTH_SECRET=" + secret}, &stdout, &stderr); code != 0 {
			t.Fatalf("token %q = %d: %s", args, code, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	mint := func(args ...string) string { return mintWith(secret, args...) }
	tests := []struct {
		name     string
		hello    map[string]any
		wantType string
	}{
		{"no token", map[string]any{"type": "hello", "name": "x"}, "error"},
		{"token", map[string]any{"type": "hello", "name": "x", "token": mint("--sub", "alice", "--ttl", "5m")}, "welcome"},
		{"room token in its room", map[string]any{"type": "hello", "name": "x", "room": "demo", "token": mint("--sub", "bob", "--room", "demo")}, "welcome"},
		{"token of another secret", map[string]any{"type": "hello", "name": "x", "token": mintWith("another-secret-0123456789abcdef0123", "--sub", "carol")}, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			c, _, err := websocket.Dial(ctx, strings.Replace(a.httpURL(), "http", "ws", 1)+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if err := wsjson.Write(ctx, c, tt.hello); err != nil {
				t.Fatal(err)
			}
			var m struct{ Type, Code string }
			err = wsjson.Read(ctx, c, &m)
			switch {
			case tt.wantType == "error" && err != nil && websocket.CloseStatus(err) == websocket.StatusPolicyViolation:
				// Refused by closing with 1008: also a refusal.
			case err != nil:
				t.Fatalf("read: %v", err)
			case m.Type != tt.wantType:
				t.Errorf("hello %v answered %+v, want %s", tt.hello["token"] != nil, m, tt.wantType)
			}
		})
	}
}

// TestMetricsGuard: /metrics on the public listeners answers this host, or
// a scraper with the token; not the internet (the documented port-80 forward).
func TestMetricsGuard(t *testing.T) {
	open := startStack(t, nil)
	withToken := startStack(t, map[string]string{"METRICS_TOKEN": "scrape-token-123", "TRUSTED_PROXIES": "127.0.0.2/32"})
	tests := []struct {
		name   string
		a      *app
		remote string
		header map[string]string
		want   int
	}{
		{"loopback", open, "127.0.0.1:5000", nil, 200},
		{"remote", open, "198.51.100.7:5000", nil, 403},
		{"local untrusted proxy forwarding someone", open, "127.0.0.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.7"}, 403},
		{"local proxy, Forwarded header", open, "127.0.0.1:5000", map[string]string{"Forwarded": "for=198.51.100.7"}, 403},
		{"remote with a token nobody configured", open, "198.51.100.7:5000", map[string]string{"Authorization": "Bearer x"}, 403},
		{"remote with the token", withToken, "198.51.100.7:5000", map[string]string{"Authorization": "Bearer scrape-token-123"}, 200},
		{"remote with a wrong token", withToken, "198.51.100.7:5000", map[string]string{"Authorization": "Bearer scrape-token-124"}, 401},
		{"trusted proxy forwarding a remote client", withToken, "127.0.0.2:5000", map[string]string{"X-Forwarded-For": "198.51.100.7"}, 401},
		{"trusted proxy forwarding a local client", withToken, "127.0.0.2:5000", map[string]string{"X-Forwarded-For": "127.0.0.1"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/metrics", nil)
			r.RemoteAddr = tt.remote
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			tt.a.httpSrv.Handler.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("GET /metrics from %s %v = %d, want %d", tt.remote, tt.header, w.Code, tt.want)
			}
			if w.Code == 200 && !strings.Contains(w.Body.String(), "switchboard_ready") {
				t.Errorf("metrics body lacks switchboard_ready")
			}
		})
	}
	// Every answer of the app keeps its URL out of Referer headers.
	w := httptest.NewRecorder()
	open.httpSrv.Handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Header().Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("GET / Referrer-Policy = %q, want no-referrer", got)
	}
}

// TestDrainRelay: the drain ends when the allocations end, when nothing has
// been relayed for the idle window (browsers gone), or at the timeout; live
// traffic keeps it waiting. Fake time (synctest).
func TestDrainRelay(t *testing.T) {
	const idle, poll = 10 * time.Second, 500 * time.Millisecond
	tests := []struct {
		name     string
		timeout  time.Duration
		allocs   func(elapsed time.Duration) int
		traffic  func(elapsed time.Duration) uint64
		quietFor time.Duration // no traffic for this long before the drain
		want     drainEnd
		wantTook time.Duration // upper bound, in fake time
	}{
		{"no allocations", time.Minute, func(time.Duration) int { return 0 }, func(time.Duration) uint64 { return 0 }, 0, drainEndDone, 0},
		{"call ends after 3 s", time.Minute, func(e time.Duration) int {
			if e < 3*time.Second {
				return 2
			}
			return 0
		}, func(e time.Duration) uint64 { return uint64(e / time.Millisecond) }, 0, drainEndDone, 3*time.Second + poll},
		{"browsers gone: no traffic", 25 * time.Second, func(time.Duration) int { return 4 }, func(time.Duration) uint64 { return 100 }, 0, drainEndIdle, idle + poll},
		{"browsers left a minute before the stop", 25 * time.Second, func(time.Duration) int { return 4 }, func(time.Duration) uint64 { return 100 }, time.Minute, drainEndIdle, 0},
		{"browsers left 4 s before the stop", 25 * time.Second, func(time.Duration) int { return 4 }, func(time.Duration) uint64 { return 100 }, 4 * time.Second, drainEndIdle, idle - 4*time.Second + poll},
		{"traffic stops after 5 s", 25 * time.Second, func(time.Duration) int { return 1 }, func(e time.Duration) uint64 {
			return uint64(min(e, 5*time.Second) / time.Millisecond)
		}, 0, drainEndIdle, 5*time.Second + idle + poll},
		{"live call until the timeout", 25 * time.Second, func(time.Duration) int { return 1 }, func(e time.Duration) uint64 { return uint64(e / time.Millisecond) }, 0, drainEndTimeout, 25 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
				defer cancel()
				el := func() time.Duration { return time.Since(start) }
				got := drainRelay(ctx, func() int { return tt.allocs(el()) }, func() uint64 { return tt.traffic(el()) }, start.Add(-tt.quietFor), idle, poll)
				if got != tt.want {
					t.Errorf("drainRelay = %d, want %d", got, tt.want)
				}
				if took := el(); took > tt.wantTook {
					t.Errorf("drainRelay took %s of fake time, want at most %s", took, tt.wantTook)
				}
			})
		})
	}
}

// TestStopSummary: the closing line counts what really happened: an
// allocation nobody uses is closed after the idle window, and reported.
func TestStopSummary(t *testing.T) {
	a := startStack(t, map[string]string{"DRAIN_TIMEOUT": "60s"})
	ws, servers := hello(t, t.Context(), a.httpURL())
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	user, pass := turnCreds(t, servers)
	if _, _, err := turnClient(t, a, user, pass); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := a.shutdown(ctx); err != nil {
		t.Fatalf("shutdown = %v", err)
	}
	want := stopSummary{Sessions: 1, Allocations: 1, Ended: 0, Closed: 1, End: drainEndIdle}
	if a.summary != want {
		t.Errorf("summary = %+v, want %+v (an idle allocation is closed before the 60 s drain timeout)", a.summary, want)
	}
}

// TestEnvExamplePlaceholdersWarn: a deploy/.env.example copied but not
// edited (the guide's step 3 skipped) is called out at start.
func TestEnvExamplePlaceholdersWarn(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := dotenv.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfigMap(m)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(startupWarnings(&cfg, cfg.PublicIP, false), "\n")
	for _, want := range []string{"public ip 203.0.113.7 is a documentation example", "domain call.example.com is an example name"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings for the untouched .env.example:\n%s\nwant %q", got, want)
		}
	}
}
