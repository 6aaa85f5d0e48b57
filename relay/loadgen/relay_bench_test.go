package loadgen_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// BenchmarkRelaySwitchboard loads Switchboard's relay in this process, so
// `go test -bench RelaySwitchboard -cpuprofile cpu.out ./relay/loadgen/`
// profiles its data path with pprof (the generator shows up too, under
// loadgen and pion's client). For the figure to compare with coturn, use
// `switchboard bench turn --compare`, which runs the server in its own process.
func BenchmarkRelaySwitchboard(b *testing.B) {
	const secret = "bench-secret"
	srv, err := relay.New(relay.Config{
		ListenAddr: "127.0.0.1:0",
		Secrets:    []string{secret},
		PublicIPv4: netip.MustParseAddr("127.0.0.1"),
		PeerAllow:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	for b.Loop() {
		res, err := loadgen.Run(b.Context(), loadgen.Config{
			Server: srv.UDPAddr().String(), Secret: secret,
			Duration: time.Second, Warmup: 200 * time.Millisecond, Meter: loadgen.SelfMeter,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.PPS(), "pkt/s")
		// Server and generator share this process: this is their sum.
		b.ReportMetric(res.GeneratorCPUPerPacket(), "cpu-µs/pkt")
		b.ReportMetric(100*res.Loss(), "loss-%")
	}
}
