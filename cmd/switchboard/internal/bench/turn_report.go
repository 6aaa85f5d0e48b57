package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// describe prints what a TURN run loads.
func describe(w io.Writer, c loadgen.Config) {
	mode := fmt.Sprintf("closed loop, %d packets in flight per allocation", c.Window)
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop, clients send %d packets/s", c.Rate)
	}
	dir := "echo peers on 127.0.0.2 (both directions relayed)"
	if c.SinkOnly {
		dir = "sink peers on 127.0.0.2 (client→peer only)"
	}
	sizes := fmt.Sprintf("%d-byte payloads", c.PayloadSize)
	if c.PayloadMax > 0 {
		sizes = fmt.Sprintf("payloads of %d-%d bytes (random per packet)", c.PayloadSize, c.PayloadMax)
	}
	fmt.Fprintf(w, "bench turn: %d allocations (ChannelData), %s, %s, %s, %v per run\n",
		c.Allocations, sizes, mode, dir, c.Duration)
}

// legend prints what the columns mean, once per report.
func legend(w io.Writer) {
	fmt.Fprintln(w, "pps = packets the server delivered per second, both directions; µs/pkt = CPU time per delivered packet;")
	fmt.Fprintln(w, "gen = this load generator's own CPU (it shares the machine); machine = all CPUs busy incl. softirq;")
	fmt.Fprintln(w, "other = machine busy time neither server nor generator used (other processes, kernel threads): noise if large;")
	fmt.Fprintln(w, "drops: srv = at the server's socket buffers (it fell behind), gen = at the generator's sockets or client queues,")
	fmt.Fprintln(w, "backlog = machine-wide per-CPU input backlog overflows (net.core.netdev_max_backlog);")
	fmt.Fprintln(w, "softirq = the part of machine spent in softirq (the kernel's packet path, and any eBPF fast path there);")
	fmt.Fprintln(w, "p50/p99 = one-way latency through the relay, both directions (send time in the payload, one clock); in the")
	fmt.Fprintln(w, "closed loop it is mostly the window's own queue (window x allocations in flight / pps), in open loop the relay's delay")
	fmt.Fprintln(w)
}

// The per-run table is printed one row per finished run (fixed widths
// rather than tabwriter, which would hold every row until the end).
const (
	headFmt = "%6s  %-21s %9s %7s %14s %11s %15s %10s %8s %10s %10s %14s %15s %8s %8s\n"
	rowFmt  = "%6s  %-21s %9.0f %7.2f %14s %11.2f %15.2f %10s %8.0f %10s %10d %14d %15.2f %8s %8s\n"
)

func header(w io.Writer) {
	fmt.Fprintf(w, headFmt, "round", "server", "pps", "loss %", "server µs/pkt", "gen µs/pkt", "machine µs/pkt",
		"CPUs busy", "other %", "srv drops", "gen drops", "backlog drops", "softirq µs/pkt", "p50 µs", "p99 µs")
}

func row(w io.Writer, round, name string, r loadgen.Result) {
	srv, srvDrops := "-", "-"
	if r.ServerMeasured {
		srv = fmt.Sprintf("%.2f", r.ServerCPUPerPacket())
		srvDrops = strconv.FormatUint(r.ServerSocketDrops, 10)
	}
	// CPUs busy: over the time the meter really measured (phase and
	// drain), so it never reads above the CPU count.
	busy := 0.0
	if r.Wall > 0 {
		busy = r.MachineBusy.Seconds() / r.Wall.Seconds()
	}
	fmt.Fprintf(w, rowFmt, round, name, r.PPS(), 100*r.Loss(), srv, r.GeneratorCPUPerPacket(), r.MachineCPUPerPacket(),
		fmt.Sprintf("%.2f/%d", busy, r.CPUs), otherShare(r), srvDrops, r.GeneratorSocketDrops+r.GeneratorDrops, r.BacklogDrops,
		r.SoftIRQPerPacket(), latency(r, 0.50), latency(r, 0.99))
	if r.BindFailures > 0 {
		fmt.Fprintf(w, "        %s: %d ChannelBinds failed: part of this run used Send indications\n", name, r.BindFailures)
	}
}

// otherShare is the percentage of the machine's busy CPU time used by
// neither the server nor the generator.
func otherShare(r loadgen.Result) float64 {
	if r.MachineBusy <= 0 || !r.ServerMeasured {
		return 0
	}
	return 100 * max(0, (r.MachineBusy-r.ServerCPU-r.GeneratorCPU).Seconds()) / r.MachineBusy.Seconds()
}

// latency is a run's q-quantile one-way latency in µs, "-" without samples
// (payloads under 12 bytes carry no send time).
func latency(r loadgen.Result, q float64) string {
	if r.Latency.Count() == 0 {
		return "-"
	}
	return micros(float64(r.Latency.Quantile(q)) / 1e3)
}

// micros formats a latency in µs: whole µs from 100 up, one decimal below.
func micros(us float64) string {
	switch {
	case us <= 0:
		return "-"
	case us >= 100:
		return fmt.Sprintf("%.0f", us)
	default:
		return fmt.Sprintf("%.1f", us)
	}
}

// summary holds the per-figure medians of several runs of one server;
// p50 and p99 in µs, 0 without samples.
type summary struct{ pps, loss, server, gen, machine, softirq, p50, p99 float64 }

// bestOf returns the highest throughput and the lowest server CPU per
// packet among rs, each taken on its own, over the runs that lost at most
// 1% (a run that lost many packets in full socket buffers spent no CPU on
// them, which flatters its CPU per packet); over all runs if none did.
func bestOf(rs []loadgen.Result) summary {
	var ok []loadgen.Result
	for _, r := range rs {
		if r.Loss() <= 0.01 {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		ok = rs
	}
	var b summary
	for i, r := range ok {
		if i == 0 || r.PPS() > b.pps {
			b.pps = r.PPS()
		}
		if i == 0 || r.ServerCPUPerPacket() < b.server {
			b.server = r.ServerCPUPerPacket()
		}
	}
	return b
}

func summarize(rs []loadgen.Result) summary {
	med := func(f func(loadgen.Result) float64) float64 {
		if len(rs) == 0 {
			return 0
		}
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 0 {
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[len(v)/2]
	}
	return summary{
		pps:     med(loadgen.Result.PPS),
		loss:    med(func(r loadgen.Result) float64 { return 100 * r.Loss() }),
		server:  med(loadgen.Result.ServerCPUPerPacket),
		gen:     med(loadgen.Result.GeneratorCPUPerPacket),
		machine: med(loadgen.Result.MachineCPUPerPacket),
		softirq: med(loadgen.Result.SoftIRQPerPacket),
		p50:     med(func(r loadgen.Result) float64 { return float64(r.LatencyP50()) / 1e3 }),
		p99:     med(func(r loadgen.Result) float64 { return float64(r.LatencyP99()) / 1e3 }),
	}
}

// summaryTable prints every shape's medians side by side, each switchboard
// server's figure followed by its ratio to coturn's (names[0]) from the
// same run: the table the README's performance section shows.
func summaryTable(w io.Writer, rounds int, names []string, shapes []shapeResult) error {
	fmt.Fprintf(w, "summary: medians over %d rounds per shape; (xN) = this server's figure / %s's, same run\n", rounds, names[0])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shape\tserver\tpkts/s\tloss %\tp50 µs\tp99 µs\tserver µs/pkt\tmachine µs/pkt\tsoftirq µs/pkt\t")
	saturation := false
	for _, sh := range shapes {
		c := sh.med[names[0]]
		for i, name := range names {
			m := sh.med[name]
			cell := func(v, ref float64, f string) string {
				s := fmt.Sprintf(f, v)
				if f == "" {
					s = micros(v)
				}
				// A CPU figure of 0 (under one 10 ms tick in the run) still
				// compares; a latency of 0 means no samples and does not.
				if i > 0 && ref > 0 && (v > 0 || f != "") {
					s += fmt.Sprintf(" (x%.2f)", v/ref)
				}
				return s
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", shapeLabel(sh.shape, sh.load), name,
				cell(m.pps, c.pps, "%.0f"), m.loss, cell(m.p50, c.p50, ""), cell(m.p99, c.p99, ""),
				cell(m.server, c.server, "%.2f"), cell(m.machine, c.machine, "%.2f"), cell(m.softirq, c.softirq, "%.2f"))
		}
		saturation = saturation || closedLoop(sh.load)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if saturation {
		fmt.Fprintln(w, "* closed loop: pkts/s is the saturation throughput (the most relayed with a fixed window in flight)")
	}
	return nil
}
