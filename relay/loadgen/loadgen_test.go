package loadgen

import (
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

const testSecret = "loadgen-test-secret"

// startPion starts an in-process pion TURN server on 127.0.0.1:0 that
// accepts REST credentials for testSecret, and returns its address.
func startPion(tb testing.TB) string {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         "loadgen",
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(testSecret, quietLoggers().NewLogger("auth")),
		LoggerFactory: quietLoggers(),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1),
				Address:      "127.0.0.1",
			},
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return conn.LocalAddr().String()
}

func TestRun(t *testing.T) {
	// Registered first so it runs last, after the server's cleanup: every
	// goroutine Run started must be gone by then.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	addr := startPion(t)
	tests := []struct {
		name string
		cfg  Config
		// wantEcho: packets must also be relayed peer→client.
		wantEcho bool
	}{
		{"closed loop echo", Config{Allocations: 3, Window: 8}, true},
		{"paced echo", Config{Allocations: 2, Rate: 2000}, true},
		{"paced sink", Config{Allocations: 2, Rate: 2000, SinkOnly: true}, false},
		// A duration no run reaches before the test's own timeout: only the
		// count can end this one.
		{"count bound", Config{Allocations: 2, Window: 4, MaxPackets: 100, Duration: time.Hour}, true},
		{"mixed sizes", Config{Allocations: 2, Window: 8, PayloadSize: 60, PayloadMax: 1200}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Server, cfg.Secret, cfg.Meter = addr, testSecret, SelfMeter
			if cfg.Duration == 0 {
				cfg.Duration = 300 * time.Millisecond
			}
			cfg.Warmup = 100 * time.Millisecond
			res, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("sent %d peer %d echoed %d received %d pps=%.0f loss=%.3f latency p50 %v p99 %v (%d samples)",
				res.Sent, res.PeerReceived, res.Echoed, res.Received, res.PPS(), res.Loss(), res.LatencyP50(), res.LatencyP99(), res.Latency.Count())
			if res.Sent == 0 || res.PeerReceived == 0 {
				t.Fatalf("Run relayed nothing to peers: sent %d, peer received %d", res.Sent, res.PeerReceived)
			}
			if res.PeerReceived > res.Sent {
				t.Errorf("peers received %d > sent %d", res.PeerReceived, res.Sent)
			}
			if tt.wantEcho {
				if res.Received == 0 || res.Received > res.Echoed {
					t.Errorf("clients received %d of %d echoed", res.Received, res.Echoed)
				}
			} else if res.Echoed != 0 || res.Received != 0 {
				t.Errorf("sink run echoed %d, received %d, want 0", res.Echoed, res.Received)
			}
			if res.Echoed > res.PeerReceived {
				t.Errorf("peers echoed %d > received %d", res.Echoed, res.PeerReceived)
			}
			// Every packet relayed in the measured phase carries a send
			// time (payloads here are all 12 bytes or more); the count can
			// fall short of Relayed only by packets stamped before it.
			if n := res.Latency.Count(); n == 0 || n > res.Relayed() {
				t.Errorf("latency samples %d, want 1..%d (relayed)", n, res.Relayed())
			}
			if res.LatencyP50() <= 0 || res.LatencyP99() < res.LatencyP50() {
				t.Errorf("latency p50 %v p99 %v, want 0 < p50 <= p99", res.LatencyP50(), res.LatencyP99())
			}
			if res.BindFailures != 0 {
				t.Errorf("%d ChannelBinds failed; the run should be all ChannelData", res.BindFailures)
			}
			if !res.ServerMeasured || res.Elapsed <= 0 {
				t.Errorf("ServerMeasured %v Elapsed %v", res.ServerMeasured, res.Elapsed)
			}
			if cfg.MaxPackets > 0 {
				if res.Sent > cfg.MaxPackets {
					t.Errorf("sent %d > MaxPackets %d", res.Sent, cfg.MaxPackets)
				}
				if res.Elapsed >= cfg.Duration {
					t.Errorf("count-bounded run ran its whole %v", cfg.Duration)
				}
			}
			if cfg.Rate > 0 {
				// Paced: never more than Rate*Duration packets (plus the one
				// each sender may start as the phase ends). Fewer is possible
				// on a loaded machine, which may starve the senders.
				want := float64(cfg.Rate)*cfg.Duration.Seconds() + float64(cfg.Allocations)
				if got := float64(res.Sent); got > want {
					t.Errorf("paced run sent %d, want at most %.0f", res.Sent, want)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no server", Config{Secret: "s"}, "Server is required"},
		{"no secret", Config{Server: "127.0.0.1:3478"}, "Secret is required"},
		{"not loopback", Config{Server: "192.0.2.1:3478", Secret: "s"}, "not a loopback"},
		{"hostname", Config{Server: "localhost:3478", Secret: "s"}, "want ip:port"},
		{"sink closed loop", Config{Server: "127.0.0.1:3478", Secret: "s", SinkOnly: true}, "needs echo"},
		{"too many allocations", Config{Server: "127.0.0.1:3478", Secret: "s", Allocations: 5000}, "Allocations"},
		{"huge payload", Config{Server: "127.0.0.1:3478", Secret: "s", PayloadSize: 9000}, "PayloadSize"},
		{"client IP not loopback", Config{Server: "127.0.0.1:3478", Secret: "s", ClientIP: netip.MustParseAddr("192.0.2.1")}, "ClientIP"},
		{"max below size", Config{Server: "127.0.0.1:3478", Secret: "s", PayloadSize: 100, PayloadMax: 100}, "PayloadMax"},
		{"huge max", Config{Server: "127.0.0.1:3478", Secret: "s", PayloadMax: 9000}, "PayloadMax"},
		{"peers over allocations", Config{Server: "127.0.0.1:3478", Secret: "s", Allocations: 2, Peers: 3}, "Peers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestRunWrongSecret(t *testing.T) {
	addr := startPion(t)
	_, err := Run(t.Context(), Config{Server: addr, Secret: "wrong", Allocations: 1, Duration: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "allocat") {
		t.Fatalf("Run with wrong secret = %v, want an allocation error", err)
	}
}

// SelfMeter measures this process's CPU time over the measured phase, as
// both generator and server CPU (in these tests the server runs in this
// process). The benchmark's full meter, which reads /proc, is in
// cmd/switchboard/internal/bench.
func SelfMeter() (func() (Usage, error), error) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() (Usage, error) {
		d := cpu() - start
		return Usage{ServerCPU: d, ServerMeasured: true, GeneratorCPU: d}, nil
	}, nil
}

func BenchmarkRelayPion(b *testing.B) {
	addr := startPion(b)
	for b.Loop() {
		res, err := Run(b.Context(), Config{
			Server: addr, Secret: testSecret, Duration: time.Second, Warmup: 200 * time.Millisecond, Meter: SelfMeter,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.PPS(), "pkt/s")
		b.ReportMetric(res.GeneratorCPUPerPacket(), "cpu-µs/pkt")
		b.ReportMetric(100*res.Loss(), "loss-%")
	}
}

// TestPacketSizes: with PayloadMax, sizes cover the range (not one size, which a
// server batching equal-sized runs would be flattered by) and stay inside it.
func TestPacketSizes(t *testing.T) {
	payload := make([]byte, 1200)
	a := &allocation{sizeLo: 60, rng: 7}
	seen := map[int]bool{}
	lo, hi := len(payload), 0
	for range 20000 {
		n := len(a.packet(payload))
		if n < 60 || n > 1200 {
			t.Fatalf("size %d outside 60-1200", n)
		}
		seen[n] = true
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo > 65 || hi < 1195 || len(seen) < 1000 {
		t.Errorf("sizes %d-%d, %d distinct; want about 60-1200 and most of them", lo, hi, len(seen))
	}
	fixed := &allocation{rng: 7}
	if n := len(fixed.packet(payload)); n != len(payload) {
		t.Errorf("without PayloadMax: size %d, want %d", n, len(payload))
	}
}

// TestClientIPFresh: each run's clients get their own loopback address by default, so
// no run reuses an earlier run's 5-tuple (which a server may still hold).
func TestClientIPFresh(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for range 20 {
		c := Config{Server: "127.0.0.1:3478", Secret: "s"}
		if err := c.setDefaults(); err != nil {
			t.Fatal(err)
		}
		ip := c.ClientIP
		if !ip.Is4() || !ip.IsLoopback() || ip == netip.MustParseAddr("127.0.0.1") || ip == netip.MustParseAddr("127.0.0.2") {
			t.Fatalf("ClientIP %v: want a loopback address other than the server's and the peers'", ip)
		}
		seen[ip] = true
	}
	if len(seen) < 19 {
		t.Errorf("20 runs got %d distinct client addresses", len(seen))
	}
}

func TestProbeSTUN(t *testing.T) {
	if err := ProbeSTUN(t.Context(), startPion(t)); err != nil {
		t.Errorf("ProbeSTUN(pion server) = %v, want nil", err)
	}
	// A port nobody serves: bound here and never read.
	quiet, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	if err := ProbeSTUN(t.Context(), quiet.LocalAddr().String()); err == nil {
		t.Error("ProbeSTUN(silent socket) = nil, want an error")
	}
	if err := ProbeSTUN(t.Context(), "not an address"); err == nil {
		t.Error("ProbeSTUN(bad address) = nil, want an error")
	}
}
