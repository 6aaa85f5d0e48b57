package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// run is a measured TURN run that relayed pkts packets in a second with
// serverCPU of server time and lost lost of what it offered.
func run(pkts uint64, serverCPU time.Duration, lost uint64) loadgen.Result {
	half := pkts / 2
	return loadgen.Result{
		Elapsed: time.Second,
		Sent:    half + lost, PeerReceived: half, Echoed: half, Received: half,
		Usage: loadgen.Usage{
			ServerCPU: serverCPU, ServerMeasured: true, GeneratorCPU: serverCPU,
			MachineBusy: 3 * serverCPU, MachineSoftIRQ: serverCPU / 2, CPUs: 2,
		},
	}
}

// withLatency is r with n samples of one-way latency d.
func withLatency(r loadgen.Result, d time.Duration, n int) loadgen.Result {
	var h loadgen.Histogram
	for range n {
		h.Record(d)
	}
	r.Latency = h.Snapshot()
	return r
}

func TestRowColumns(t *testing.T) {
	tests := []struct {
		name string
		r    loadgen.Result
		// the last three columns: softirq µs/pkt, p50 µs, p99 µs
		want []string
	}{
		{"latency measured", withLatency(run(100_000, 500*time.Millisecond, 0), 40*time.Microsecond, 10), []string{"2.50", "39.9", "39.9"}},
		{"slow latency", withLatency(run(100_000, 500*time.Millisecond, 0), 2*time.Millisecond, 10), []string{"2.50", "1999", "1999"}},
		{"no latency samples", run(100_000, 500*time.Millisecond, 0), []string{"2.50", "-", "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			header(&out)
			row(&out, "1", "x", tt.r)
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			f := strings.Fields(lines[1])
			if got := f[len(f)-3:]; !slices.Equal(got, tt.want) {
				t.Errorf("row = %q; last columns %q, want %q", lines[1], got, tt.want)
			}
			// The row is as wide as the header: columns line up.
			if h, r := len([]rune(lines[0])), len([]rune(lines[1])); h != r {
				t.Errorf("header %d runes, row %d:\n%s", h, r, out.String())
			}
		})
	}
}

func TestSummaryTable(t *testing.T) {
	lat := func(r loadgen.Result, us int) loadgen.Result {
		return withLatency(r, time.Duration(us)*time.Microsecond, 100)
	}
	closed := shapePresets[0]
	slow := shapePresets[1]
	results := []struct {
		shape Shape
		load  loadgen.Config
		rs    map[string][]loadgen.Result
	}{
		{closed, loadgen.Config{}, map[string][]loadgen.Result{
			"coturn":              {lat(run(100_000, 500*time.Millisecond, 0), 100)},
			"switchboard/off":     {lat(run(120_000, 480*time.Millisecond, 0), 80)},
			"switchboard/require": {lat(run(200_000, 20*time.Millisecond, 0), 50)},
		}},
		{slow, slow.Load(loadgen.Config{}), map[string][]loadgen.Result{
			"coturn":              {lat(run(60_000, 600*time.Millisecond, 0), 60)},
			"switchboard/off":     {lat(run(60_000, 540*time.Millisecond, 0), 60)},
			"switchboard/require": {lat(run(60_000, 6*time.Millisecond, 0), 30)},
		}},
	}
	names := []string{"coturn", "switchboard/off", "switchboard/require"}
	var shapes []shapeResult
	for _, r := range results {
		med := map[string]summary{}
		for _, n := range names {
			med[n] = summarize(r.rs[n])
		}
		shapes = append(shapes, shapeResult{shape: r.shape, load: r.load, med: med})
	}
	var out bytes.Buffer
	if err := summaryTable(&out, 1, names, shapes); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Log("\n" + got)
	rows := map[string][]string{} // "shape server" -> the words after them
	for _, line := range strings.Split(got, "\n")[2:] {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "*") {
			continue
		}
		rows[f[0]+" "+f[1]] = f[2:]
	}
	tests := []struct {
		row  string
		want []string // pkts/s, loss, p50, p99, server, machine, softirq with their ratios
	}{
		// Latencies are bucket middles, within 1% of the recorded 100, 80, 60, 50 and 30 µs.
		{"default* coturn", []string{"100000", "0.00", "100", "100", "5.00", "15.00", "2.50"}},
		{"default* switchboard/off", []string{"120000", "(x1.20)", "0.00", "79.9", "(x0.80)", "79.9", "(x0.80)", "4.00", "(x0.80)", "12.00", "(x0.80)", "2.00", "(x0.80)"}},
		{"default* switchboard/require", []string{"200000", "(x2.00)", "0.00", "50.2", "(x0.50)", "50.2", "(x0.50)", "0.10", "(x0.02)", "0.30", "(x0.02)", "0.05", "(x0.02)"}},
		{"many-slow coturn", []string{"60000", "0.00", "60.4", "60.4", "10.00", "30.00", "5.00"}},
		{"many-slow switchboard/off", []string{"60000", "(x1.00)", "0.00", "60.4", "(x1.00)", "60.4", "(x1.00)", "9.00", "(x0.90)", "27.00", "(x0.90)", "4.50", "(x0.90)"}},
		{"many-slow switchboard/require", []string{"60000", "(x1.00)", "0.00", "30.2", "(x0.50)", "30.2", "(x0.50)", "0.10", "(x0.01)", "0.30", "(x0.01)", "0.05", "(x0.01)"}},
	}
	for _, tt := range tests {
		if !slices.Equal(rows[tt.row], tt.want) {
			t.Errorf("summary row %q = %q, want %q", tt.row, rows[tt.row], tt.want)
		}
	}
	// A CPU figure under one tick reads 0 and still gets its ratio.
	var zero bytes.Buffer
	z := shapeResult{shape: slow, load: slow.Load(loadgen.Config{}), med: map[string]summary{
		"coturn": {pps: 100, server: 5, machine: 10}, "switchboard": {pps: 100, machine: 5},
	}}
	if err := summaryTable(&zero, 1, []string{"coturn", "switchboard"}, []shapeResult{z}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(zero.String(), "0.00 (x0.00)") || !strings.Contains(zero.String(), "5.00 (x0.50)") {
		t.Errorf("summary with a zero CPU figure:\n%s\nwant 0.00 (x0.00) and 5.00 (x0.50)", zero.String())
	}
	if !strings.Contains(got, "* closed loop: pkts/s is the saturation throughput") {
		t.Errorf("summary lacks the saturation note:\n%s", got)
	}
}

func TestCompareTURN(t *testing.T) {
	tests := []struct {
		name    string
		rate    int
		results map[string][]loadgen.Result
		want    []string
	}{
		{
			name: "closed loop met",
			results: map[string][]loadgen.Result{
				"coturn":      {run(100_000, 800*time.Millisecond, 0), run(90_000, 800*time.Millisecond, 0)},
				"switchboard": {run(200_000, 800*time.Millisecond, 0), run(180_000, 800*time.Millisecond, 0)},
			},
			want: []string{
				"medians over 2 rounds:",
				"switchboard/coturn (medians): throughput x2.00, server CPU per packet x0.50, machine CPU per packet x0.50\n",
				"switchboard/coturn (best runs): throughput x2.00, server CPU per packet x0.50\n",
				"bar (medians: throughput >= coturn's, CPU per packet <= coturn's): MET\n",
				"warning: other processes used 33% of busy CPU time",
			},
		},
		{
			name: "closed loop slower",
			results: map[string][]loadgen.Result{
				"coturn":      {run(100_000, 800*time.Millisecond, 0)},
				"switchboard": {run(50_000, 800*time.Millisecond, 0)},
			},
			want: []string{"throughput x0.50, server CPU per packet x2.00", "): NOT MET\n"},
		},
		{
			name: "open loop with loss",
			rate: 50_000,
			results: map[string][]loadgen.Result{
				"coturn":      {run(100_000, 800*time.Millisecond, 0)},
				"switchboard": {run(100_000, 400*time.Millisecond, 5_000)},
			},
			want: []string{"bar at 50000 pps offered (medians: loss <= coturn's + 0.1 point, CPU per packet <= coturn's): NOT MET\n"},
		},
		{
			name: "user space and fast path",
			rate: 30_000,
			results: map[string][]loadgen.Result{
				"coturn":              {run(60_000, 600*time.Millisecond, 0)},
				"switchboard/off":     {run(60_000, 540*time.Millisecond, 0)},
				"switchboard/require": {run(60_000, 6*time.Millisecond, 0)},
			},
			want: []string{
				"switchboard/off/coturn (medians): throughput x1.00, server CPU per packet x0.90, machine CPU per packet x0.90\n",
				"switchboard/require/coturn (medians): throughput x1.00, server CPU per packet x0.01, machine CPU per packet x0.01\n",
				"switchboard/off bar at 30000 pps offered (medians: loss <= coturn's + 0.1 point, CPU per packet <= coturn's): MET\n",
				"switchboard/require bar at 30000 pps offered",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			rounds := len(tt.results["coturn"])
			names := []string{"coturn", "switchboard"}
			if _, ok := tt.results["switchboard"]; !ok {
				names = []string{"coturn", "switchboard/off", "switchboard/require"}
			}
			if _, err := compareTURN(&out, loadgen.Config{Rate: tt.rate}, rounds, names, tt.results); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("compareTURN output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestBestOfSkipsLossyRuns(t *testing.T) {
	// The lossy run has the best figures but lost 10%: it does not count.
	rs := []loadgen.Result{run(100_000, time.Second, 0), run(300_000, 100*time.Millisecond, 20_000)}
	b := bestOf(rs)
	if b.pps != 100_000 || b.server != 10 {
		t.Errorf("bestOf = %+v, want the clean run's 100000 pps, 10 µs/pkt", b)
	}
	// All lossy: the best of all.
	if b := bestOf(rs[1:]); b.pps != 300_000 {
		t.Errorf("bestOf(all lossy) = %+v, want 300000 pps", b)
	}
}

func TestRowUnmeasured(t *testing.T) {
	var out bytes.Buffer
	r := run(1000, 0, 0)
	r.ServerMeasured = false
	r.BindFailures = 2
	row(&out, "1", "x", r)
	if got := out.String(); !strings.Contains(got, " - ") || !strings.Contains(got, "x: 2 ChannelBinds failed") {
		t.Errorf("row = %q; want - for the unmeasured server and the bind failures", got)
	}
	if otherShare(r) != 0 {
		t.Errorf("otherShare(unmeasured) = %v, want 0", otherShare(r))
	}
}

// TestRowBusyOverWall: CPUs busy is the machine's busy time over the time
// the meter really measured (phase and drain), not over the phase alone,
// which read a 2-CPU machine as 2.36 CPUs busy.
func TestRowBusyOverWall(t *testing.T) {
	r := run(1000, 100*time.Millisecond, 0)
	r.Elapsed, r.Wall, r.MachineBusy = 500*time.Millisecond, time.Second, 1500*time.Millisecond
	var out bytes.Buffer
	row(&out, "1", "x", r)
	if !strings.Contains(out.String(), " 1.50/2 ") {
		t.Errorf("row = %q, want CPUs busy 1.50/2", out.String())
	}
}

func TestMeterLive(t *testing.T) {
	end, err := meter(0)()
	if err != nil {
		t.Fatalf("meter(0): %v", err)
	}
	u, err := end()
	if err != nil || u.ServerMeasured || u.CPUs < 1 || u.Wall < 0 {
		t.Errorf("meter(0) = %+v, %v; want the machine measured, not a server", u, err)
	}
}
