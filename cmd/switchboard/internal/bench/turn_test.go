package bench

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

const testSecret = "bench-test-secret"

// smallLoad is a TURN load that finishes in about a second.
func smallLoad() loadgen.Config {
	return loadgen.Config{Allocations: 2, PayloadSize: 100, Rate: 2000, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond}
}

// TestTURNServer loads Switchboard's relay, in this process, the way
// `switchboard bench turn --server --secret --pid` loads a running one.
func TestTURNServer(t *testing.T) {
	addr := startRelay(t)
	var out bytes.Buffer
	err := TURN(t.Context(), TURNConfig{Load: smallLoad(), Server: addr, Secret: testSecret, PID: os.Getpid(), WaitIdle: 2}, &out)
	if err != nil {
		t.Fatalf("TURN: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"bench turn: 2 allocations (ChannelData), 100-byte payloads, open loop, clients send 2000 packets/s, echo peers on 127.0.0.2 (both directions relayed), 300ms per run\n",
		" round  server                      pps  loss %  server µs/pkt  gen µs/pkt  machine µs/pkt  CPUs busy  other %  srv drops  gen drops  backlog drops  softirq µs/pkt   p50 µs   p99 µs\n",
		"     1  " + addr,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TURN output lacks %q:\n%s", want, got)
		}
	}
	// The new columns are filled: softirq a number (it may be 0.00 on an
	// idle machine), the latencies measured. Their values are the
	// machine's, not checked.
	for line := range strings.SplitSeq(got, "\n") {
		if !strings.HasPrefix(line, "     1  ") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 15 {
			t.Fatalf("row has %d columns, want 15: %q", len(f), line)
		}
		if _, err := strconv.ParseFloat(f[12], 64); err != nil {
			t.Errorf("softirq µs/pkt %q is not a number: %q", f[12], line)
		}
		for _, c := range f[13:] {
			if v, err := strconv.ParseFloat(c, 64); err != nil || v <= 0 {
				t.Errorf("latency column %q is not a positive number: %q", c, line)
			}
		}
	}
}

// TestTURNShapes runs every shape preset against the in-process relay in
// single-server mode, scaled down so it stays short: a section per shape,
// each with its row.
func TestTURNShapes(t *testing.T) {
	addr := startRelay(t)
	shapes, err := ParseShape("all")
	if err != nil {
		t.Fatal(err)
	}
	// Scaled-down copies: same names, fewer allocations and packets.
	var small []Shape
	for _, sh := range shapes {
		load := sh.Load(loadgen.Config{})
		sh.apply = func(c *loadgen.Config) {
			if sh.Fixed {
				c.Allocations, c.Peers, c.Rate, c.PayloadSize, c.PayloadMax = 4, 2, 400, load.PayloadSize, load.PayloadMax
			}
		}
		small = append(small, sh)
	}
	load := smallLoad()
	load.Rate, load.Window = 0, 8 // the default shape: the closed loop
	var out bytes.Buffer
	if err := TURN(t.Context(), TURNConfig{Load: load, Shapes: small, Server: addr, Secret: testSecret}, &out); err != nil {
		t.Fatalf("TURN: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"shape default: ", "closed loop, 8 packets in flight per allocation",
		"shape many-slow: many slow flows", "payloads of 60-1200 bytes",
		"shape video: 1,000 allocations at video rates", "payloads of 900-1200 bytes",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TURN output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n     1  "+addr); n != 3 {
		t.Errorf("%d rows, want one per shape:\n%s", n, got)
	}
}

// startRelay starts Switchboard's relay in this process and returns its address.
func startRelay(t *testing.T) string {
	t.Helper()
	srv, err := relay.New(relay.Config{
		ListenAddr: "127.0.0.1:0",
		Secrets:    []string{testSecret},
		PublicIPv4: netip.MustParseAddr("127.0.0.1"),
		PeerAllow:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv.UDPAddr().String()
}

// TestOffloadUnavailable: a switchboard that refuses to start with
// SWITCHBOARD_RELAY_OFFLOAD=require is reported with its reason and the
// comparison goes on without it (here, with nothing left, it ends).
func TestOffloadUnavailable(t *testing.T) {
	needCoturn(t)
	fake := filepath.Join(t.TempDir(), "switchboard")
	script := "#!/bin/sh\necho \"switchboard: SWITCHBOARD_RELAY_OFFLOAD=$SWITCHBOARD_RELAY_OFFLOAD: the kernel fast path did not load: no BTF\" >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := TURN(t.Context(), TURNConfig{Load: smallLoad(), Compare: true, Rounds: 1, Switchboard: fake, Offload: []string{"require"}}, &out)
	if err == nil || !strings.Contains(err.Error(), "no switchboard server started") {
		t.Errorf("TURN = %v, want no switchboard server started", err)
	}
	want := "offload unavailable: switchboard: SWITCHBOARD_RELAY_OFFLOAD=require: the kernel fast path did not load: no BTF\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	// Any other mode that fails to start is an error, not a skipped server.
	out.Reset()
	err = TURN(t.Context(), TURNConfig{Load: smallLoad(), Compare: true, Rounds: 1, Switchboard: fake, Offload: []string{"off"}}, &out)
	if err == nil || !strings.Contains(err.Error(), "switchboard/off not ready") {
		t.Errorf("TURN(off) = %v, want switchboard/off not ready", err)
	}
}

func TestTURNConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  TURNConfig
		want string
	}{
		{"no server", TURNConfig{Secret: "x"}, "need --server and --secret, or --compare"},
		{"no secret", TURNConfig{Server: "127.0.0.1:3478"}, "need --server and --secret, or --compare"},
		{"compare with server", TURNConfig{Compare: true, Server: "127.0.0.1:3478"}, "drop --server and --pid"},
		{"compare with pid", TURNConfig{Compare: true, PID: 1}, "drop --server and --pid"},
		{"compare without coturn", TURNConfig{Compare: true, Rounds: 1, Coturn: CoturnConfig{Path: "/nonexistent/turnserver"}}, "start coturn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := TURN(t.Context(), tt.cfg, &out); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("TURN(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// needCoturn skips without coturn's turnserver, or fails under SWITCHBOARD_E2E=1.
func needCoturn(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("turnserver"); err != nil {
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("coturn's turnserver not on PATH: %v", err)
		}
		t.Skipf("coturn's turnserver not on PATH (%v); install coturn to run (SWITCHBOARD_E2E=1 makes this fail)", err)
	}
}

// TestCoturn runs a short load against a real coturn started like
// --compare starts it, measured by the /proc meter.
func TestCoturn(t *testing.T) {
	needCoturn(t)
	s, err := startCoturn(t.Context(), CoturnConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	load := smallLoad()
	load.Server, load.Secret, load.Meter = s.Addr, testSecret, meter(s.PID())
	res, err := loadgen.Run(t.Context(), load)
	if err != nil {
		t.Fatalf("Run against coturn: %v\ncoturn output:\n%s", err, s.Output())
	}
	t.Logf("%+v pps=%.0f server µs/pkt=%.2f", res, res.PPS(), res.ServerCPUPerPacket())
	if res.Received == 0 || res.PeerReceived == 0 || res.Received > res.Echoed {
		t.Errorf("coturn run: sent %d peer received %d echoed %d received %d", res.Sent, res.PeerReceived, res.Echoed, res.Received)
	}
	if !res.ServerMeasured || res.CPUs < 1 || res.MachineBusy < 0 {
		t.Errorf("meter: ServerMeasured %v CPUs %d MachineBusy %v; want the server measured", res.ServerMeasured, res.CPUs, res.MachineBusy)
	}
	if err := s.Alive(); err != nil {
		t.Error(err)
	}
}

func TestStartCoturnErrors(t *testing.T) {
	if _, err := startCoturn(t.Context(), CoturnConfig{}); err == nil || !strings.Contains(err.Error(), "Secret is required") {
		t.Errorf("startCoturn without a secret = %v", err)
	}
	if _, err := startCoturn(t.Context(), CoturnConfig{Secret: "x", Path: "/nonexistent/turnserver"}); err == nil {
		t.Error("startCoturn with a missing binary = nil error")
	}
	// A switchboard binary that is not one: it exits before serving.
	falsePath, err := exec.LookPath("false")
	if err != nil {
		t.Skipf("no false(1) on PATH: %v", err)
	}
	if _, err := startSwitchboard(t.Context(), falsePath, "x", "switchboard", "", 0); err == nil || !strings.Contains(err.Error(), "process exited") {
		t.Errorf("startSwitchboard(false) = %v, want process exited", err)
	}
}
