package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

type staticICE struct{}

func (staticICE) ICEServers(context.Context, string) ([]signaling.ICEServer, time.Time, error) {
	return []signaling.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}, time.Now().Add(time.Hour), nil
}

// TestSignalingAttached drives the real hub, in this process, through all
// of `switchboard bench signaling --url --pid --auth-secret`: connect, idle
// RSS, two relay runs and the summary, with the counters scraped from
// /metrics beside /ws.
func TestSignalingAttached(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	hub, err := signaling.New(signaling.Config{ICE: staticICE{}, AuthSecret: []byte(secret), PingInterval: time.Second})
	if err != nil {
		t.Fatalf("signaling.New: %v", err)
	}
	reg := prometheus.NewRegistry()
	undeliverable := prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_signaling_undeliverable_total", Help: "u"})
	undeliverable.Add(2)
	reg.MustRegister(undeliverable)
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})

	var out bytes.Buffer
	err = Signaling(t.Context(), SignalingConfig{
		Sessions: 8, Rate: 80, Duration: 200 * time.Millisecond, Runs: 2,
		ConnectRate: 1000, ConnectTimeout: time.Minute, Payload: 50,
		AttachURL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", AttachPID: os.Getpid(), AttachSecret: secret,
		ServerLog: t.TempDir(),
	}, &out)
	if err != nil {
		t.Fatalf("Signaling: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"load: 8 sessions (4 pairs, each in its own room), connect 1000/s, settle 0s, relay 80 signals/s × 200ms × 2 run(s), payload 50 B\n",
		"== switchboard  pid ",
		"attached to pid ",
		"   connect: 8/8 sessions in ",
		"   idle: 8 sessions held after 0s settle (dropped 0)",
		"   server counters so far: undeliverable ×2\n",
		"   relay 1: 4 pairs, target 80/s: sent ",
		"   relay 2: 4 pairs",
		"== summary (median over relay runs)\n   switchboard sessions held     8",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Signaling output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Switchboard/PeerJS") {
		t.Errorf("ratios printed without PeerJS:\n%s", got)
	}
}

func TestSignalingStartFails(t *testing.T) {
	falsePath, err := exec.LookPath("false")
	if err != nil {
		t.Skipf("no false(1) on PATH: %v", err)
	}
	logDir := t.TempDir()
	var out bytes.Buffer
	err = Signaling(t.Context(), SignalingConfig{Sessions: 2, Rate: 1, Duration: time.Second, Runs: 1, Bin: falsePath, ServerLog: logDir}, &out)
	if err == nil || !strings.Contains(err.Error(), "switchboard not ready: process exited") {
		t.Errorf("Signaling with a binary that exits = %v", err)
	}
	if _, err := os.Stat(filepath.Join(logDir, "switchboard.log")); err != nil {
		t.Errorf("server log: %v", err)
	}
	err = Signaling(t.Context(), SignalingConfig{Sessions: 2, Rate: 1, Duration: time.Second, Runs: 1, SkipSwitchboard: true, PeerJSDir: t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "npm install peer") {
		t.Errorf("Signaling with an empty --peerjs-dir = %v", err)
	}
}

func TestSummaryRatios(t *testing.T) {
	relay := func(p50, p99 time.Duration, rate float64) loadgen.RelayResult {
		var r loadgen.RelayResult
		r.Latency.P50, r.Latency.P99, r.Rate = p50, p99, rate
		return r
	}
	sb := &figures{name: "switchboard", nodes: 1, held: 10, perSession: 4 << 10, relays: []loadgen.RelayResult{
		relay(time.Millisecond, 2*time.Millisecond, 1000), relay(time.Millisecond, 9*time.Millisecond, 10), relay(time.Millisecond, 4*time.Millisecond, 1000),
	}}
	pj := &figures{name: "peerjs", nodes: 1, held: 10, perSession: 16 << 10, relays: []loadgen.RelayResult{relay(2*time.Millisecond, 8*time.Millisecond, 500)}}
	var out bytes.Buffer
	printSummary(&out, []*figures{sb, pj})
	want := "   Switchboard/PeerJS: RSS per idle session 0.25× (lower is better), msg/s 2.00×, p50 0.50×, p99 0.50× (lower is better)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("printSummary = %q, want it to contain %q", out.String(), want)
	}
	if m := median(nil); m.Rate != 0 {
		t.Errorf("median(nil) = %+v", m)
	}
}

// TestSummaryNodes: a 1-node and a 3-node row side by side, labelled with
// their node counts, their ratio, and each handoff's outcome, failures named.
func TestSummaryNodes(t *testing.T) {
	relay := func(p50, p99 time.Duration, rate float64) loadgen.RelayResult {
		var r loadgen.RelayResult
		r.Latency.P50, r.Latency.P99, r.Rate, r.Window = p50, p99, rate, time.Second
		return r
	}
	one := &figures{name: "switchboard", nodes: 1, held: 10, relays: []loadgen.RelayResult{relay(time.Millisecond, 2*time.Millisecond, 1000)},
		cpu: []time.Duration{500 * time.Millisecond},
		handoff: &loadgen.HandoffResult{Attempted: 4, Resumed: 4, Queued: 4, Replayed: 4,
			Welcome: loadgen.Latency{Count: 4, P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 2 * time.Millisecond},
			Replay:  loadgen.Latency{Count: 4, P50: time.Millisecond, P99: 3 * time.Millisecond}}}
	three := &figures{name: "switchboard", nodes: 3, held: 10, relays: []loadgen.RelayResult{relay(2*time.Millisecond, 8*time.Millisecond, 900)},
		cpu:     []time.Duration{1500 * time.Millisecond},
		handoff: &loadgen.HandoffResult{Attempted: 4, OtherNode: 4, Queued: 4, Failures: map[string]int{"close 4002 (resume unknown)": 4}}}
	var out bytes.Buffer
	printSummary(&out, []*figures{one, three})
	for _, want := range []string{
		"   switchboard 1 node  sessions held    10",
		"lost 0  CPU server 50% of a core\n",
		"   switchboard 3 nodes sessions held    10",
		"lost 0  CPU servers 150% of a core\n",
		"   switchboard 1 node  handoff: 4/4 resumed; queued signals 4, replayed 4; hello→welcome p50 1.00ms p99 2.00ms max 2.00ms; hello→first replayed signal p50 1.00ms p99 3.00ms\n",
		"   switchboard 3 nodes handoff: 0/4 resumed (failed: close 4002 (resume unknown) ×4); queued signals 4, replayed 0\n",
		"   3 nodes / 1 node: msg/s 0.90×, p50 2.00×, p99 4.00× (lower is better)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printSummary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{sizeOf(512), "512 B"},
		{sizeOf(16 << 10), "16.0 KiB"},
		{sizeOf(-3 << 20), "-3.0 MiB"},
		{dur(1500 * time.Microsecond), "1.50ms"},
		{dur(2500 * time.Millisecond), "2.5s"},
		{dur(1234 * time.Nanosecond), "1µs"},
		{verdict(true), "met"},
		{verdict(false), "MISSED"},
		{packageVersion([]byte(`{"name":"peer","version":"1.0.2"}`)), "1.0.2"},
		{packageVersion([]byte(`{"name":"peer"}`)), "?"},
		{packageVersion([]byte(`not json`)), "?"},
		{counterDiff(map[string]float64{"a": 1, "b": 5}, map[string]float64{"a": 3, "b": 5, "c": 1}), "a ×2, c ×1"},
		{counterDiff(nil, nil), ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
