package bench

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
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
	addr := srv.UDPAddr().String()

	var out bytes.Buffer
	err = TURN(t.Context(), TURNConfig{Load: smallLoad(), Server: addr, Secret: testSecret, PID: os.Getpid(), WaitIdle: 2}, &out)
	if err != nil {
		t.Fatalf("TURN: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"bench turn: 2 allocations (ChannelData), 100-byte payloads, open loop, clients send 2000 packets/s, echo peers on 127.0.0.2 (both directions relayed), 300ms per run\n",
		" round  server                      pps  loss %  server µs/pkt  gen µs/pkt  machine µs/pkt  CPUs busy  other %  srv drops  gen drops  backlog drops\n",
		"     1  " + addr,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TURN output lacks %q:\n%s", want, got)
		}
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
	if _, err := startSwitchboard(t.Context(), falsePath, "x"); err == nil || !strings.Contains(err.Error(), "process exited") {
		t.Errorf("startSwitchboard(false) = %v, want process exited", err)
	}
}
