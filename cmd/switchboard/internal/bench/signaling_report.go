package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/scrape"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

// relayLine prints one relay run: throughput, latency, CPU of the server
// (serverCPU, one per node), of this client (selfCPU) and of the rest of the
// machine (other; negative: unknown), what was not delivered, and the
// target's verdict.
func relayLine(w io.Writer, tag, name string, run int, rate float64, res loadgen.RelayResult, serverCPU []time.Duration, selfCPU, other time.Duration) {
	window := max(res.Window.Seconds(), 1e-9)
	pct := func(d time.Duration) string { return fmt.Sprintf("%.0f%%", 100*d.Seconds()/window) }
	cpu := "server " + pct(sum(serverCPU))
	if len(serverCPU) > 1 {
		parts := make([]string, len(serverCPU))
		for i, d := range serverCPU {
			parts[i] = pct(d)
		}
		cpu = "servers " + strings.Join(parts, "+") + " = " + pct(sum(serverCPU))
	}
	fmt.Fprintf(w, "   %srelay %d: %d pairs, target %.0f/s: sent %d delivered %d lost %d; %.0f msg/s delivered; "+
		"latency p50 %v p90 %v p99 %v p99.9 %v max %v; send lag p99 %v; CPU %s client %s",
		tag, run, res.Senders/2, res.TargetRate, res.Sent, res.Delivered, res.Lost, res.Rate,
		dur(res.Latency.P50), dur(res.Latency.P90), dur(res.Latency.P99),
		dur(res.Latency.P999), dur(res.Latency.Max), dur(res.SendLag.P99), cpu, pct(selfCPU))
	if other >= 0 {
		fmt.Fprintf(w, " rest of the machine %s", pct(other))
	}
	fmt.Fprint(w, " (of one core)")
	if res.Skipped+res.Abandoned+res.WriteErrors > 0 || res.Dropped > 0 || len(res.ServerErrors) > 0 {
		fmt.Fprintf(w, "; not sent: %d (peer gone) + %d (schedule overran); write errors %d; sessions dropped %d; server errors %s",
			res.Skipped, res.Abandoned, res.WriteErrors, res.Dropped, loadgen.FormatCounts(res.ServerErrors))
	}
	if name == "switchboard" && len(serverCPU) == 1 && rate >= TargetRate {
		ok := res.Latency.P99 < targetP99 && res.Rate >= 0.98*TargetRate && res.Lost == 0
		fmt.Fprintf(w, "  [target p99 < %v at %d msg/s, none lost: %s]", targetP99, TargetRate, verdict(ok))
	}
	fmt.Fprintln(w)
}

// handoffLine prints the handoff phase.
func handoffLine(w io.Writer, tag string, nodes int, res loadgen.HandoffResult) {
	where := "on another node"
	if nodes == 1 {
		where = "on the same node (there is one)"
	}
	fmt.Fprintf(w, "   %shandoff: %d sessions cut and resumed %s in %v: %s\n", tag, res.Attempted, where, res.Elapsed.Round(time.Millisecond), handoffFigures(res))
}

// handoffFigures renders a handoff phase's outcome: how many resumed, why
// the others did not, and the times of those that did.
func handoffFigures(res loadgen.HandoffResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d resumed", res.Resumed, res.Attempted)
	if res.Skipped > 0 {
		fmt.Fprintf(&b, " (%d more not started: phase time ran out)", res.Skipped)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(&b, " (failed: %s)", loadgen.FormatCounts(res.Failures))
	}
	fmt.Fprintf(&b, "; queued signals %d, replayed %d", res.Queued, res.Replayed)
	if res.Welcome.Count > 0 {
		fmt.Fprintf(&b, "; hello→welcome p50 %v p99 %v max %v", dur(res.Welcome.P50), dur(res.Welcome.P99), dur(res.Welcome.Max))
	}
	if res.Replay.Count > 0 {
		fmt.Fprintf(&b, "; hello→first replayed signal p50 %v p99 %v", dur(res.Replay.P50), dur(res.Replay.P99))
	}
	return b.String()
}

// label names a row of the summary: with several node counts in play, the
// Switchboard rows say how many.
func (f *figures) label(clustered bool) string {
	if !clustered || f.name != "switchboard" {
		return f.name
	}
	if f.nodes == 1 {
		return "switchboard 1 node"
	}
	return fmt.Sprintf("switchboard %d nodes", f.nodes)
}

// printSummary prints the figures side by side and the ratios: Switchboard
// (one node) against PeerJS, and N nodes against one.
func printSummary(w io.Writer, rows []*figures) {
	fmt.Fprintf(w, "\n== summary (median over relay runs)\n")
	clustered := false
	for _, f := range rows {
		clustered = clustered || f.nodes > 1
	}
	width := 11
	for _, f := range rows {
		width = max(width, len(f.label(clustered)))
	}
	var sb1, sbN, pj *figures
	for _, f := range rows {
		i := medianIndex(f.relays)
		var res loadgen.RelayResult
		if i >= 0 {
			res = f.relays[i]
		}
		fmt.Fprintf(w, "   %-*s sessions held %5d  RSS/idle session %9s  msg/s %7.0f  p50 %8v  p99 %8v  lost %d",
			width, f.label(clustered), f.held, sizeOf(f.perSession), res.Rate, dur(res.Latency.P50), dur(res.Latency.P99), res.Lost)
		if i >= 0 && i < len(f.cpu) && res.Window > 0 {
			fmt.Fprintf(w, "  CPU server%s %.0f%% of a core", plural(f.nodes), 100*f.cpu[i].Seconds()/res.Window.Seconds())
		}
		fmt.Fprintln(w)
		switch {
		case f.name == "peerjs":
			pj = f
		case f.nodes == 1 && sb1 == nil:
			sb1 = f
		case f.nodes > 1:
			sbN = f
		}
	}
	for _, f := range rows {
		if f.handoff != nil {
			fmt.Fprintf(w, "   %-*s handoff: %s\n", width, f.label(clustered), handoffFigures(*f.handoff))
		}
	}
	ratio := func(x, y float64) string {
		if y == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}
	if sb1 != nil && sbN != nil {
		a, b := median(sbN.relays), median(sb1.relays)
		fmt.Fprintf(w, "   %d nodes / 1 node: msg/s %s, p50 %s, p99 %s (lower is better)\n", sbN.nodes,
			ratio(a.Rate, b.Rate), ratio(float64(a.Latency.P50), float64(b.Latency.P50)), ratio(float64(a.Latency.P99), float64(b.Latency.P99)))
	}
	if sb1 == nil || pj == nil {
		return
	}
	a, b := median(sb1.relays), median(pj.relays)
	fmt.Fprintf(w, "   Switchboard/PeerJS: RSS per idle session %s (lower is better), msg/s %s, p50 %s, p99 %s (lower is better)\n",
		ratio(sb1.perSession, pj.perSession), ratio(a.Rate, b.Rate),
		ratio(float64(a.Latency.P50), float64(b.Latency.P50)), ratio(float64(a.Latency.P99), float64(b.Latency.P99)))
}

func plural(n int) string {
	if n > 1 {
		return "s"
	}
	return ""
}

// median picks the run with the median p99.
func median(rs []loadgen.RelayResult) loadgen.RelayResult {
	i := medianIndex(rs)
	if i < 0 {
		return loadgen.RelayResult{}
	}
	return rs[i]
}

// medianIndex is the index of the run with the median p99, -1 if none.
func medianIndex(rs []loadgen.RelayResult) int {
	if len(rs) == 0 {
		return -1
	}
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(rs[a].Latency.P99, rs[b].Latency.P99) })
	return idx[len(idx)/2]
}

// watched are the Switchboard counters that explain lost or late signals.
var watched = map[string]bool{
	"switchboard_signaling_disconnects_total":    true,
	"switchboard_signaling_slow_consumers_total": true,
	"switchboard_signaling_rate_limited_total":   true,
	"switchboard_signaling_undeliverable_total":  true,
	// Cluster runs: proof that the signals crossed nodes.
	"switchboard_cluster_routed_out_total": true,
	"switchboard_cluster_routed_in_total":  true,
}

// watchedCounters sums the watched counters over the target's nodes (see
// watchedCountersAt); nil when none can be read.
func (t target) watchedCounters(ctx context.Context) map[string]float64 {
	var out map[string]float64
	for _, n := range t.nodes {
		for k, v := range watchedCountersAt(ctx, n.metricsURL) {
			if out == nil {
				out = map[string]float64{}
			}
			out[k] += v
		}
	}
	return out
}

// watchedCountersAt reads the watched counters from a Switchboard /metrics
// page, keyed without the switchboard_signaling_ (or switchboard_) prefix and
// _total suffix (`disconnects{reason=slow}`, `cluster_routed_out`); nil when
// there is none or it cannot be read.
func watchedCountersAt(ctx context.Context, u string) map[string]float64 {
	if u == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := scrape.Get(ctx, u, func(name string) bool { return watched[name] })
	if err != nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		name, labels, _ := strings.Cut(k, "{")
		short := strings.TrimPrefix(name, "switchboard_signaling_")
		short = strings.TrimSuffix(strings.TrimPrefix(short, "switchboard_"), "_total")
		if labels != "" {
			short += "{" + labels
		}
		out[short] = v
	}
	return out
}

// counterDiff renders the counters that grew from a to b.
func counterDiff(a, b map[string]float64) string {
	d := map[string]uint64{}
	for k, v := range b {
		if v > a[k] {
			d[k] = uint64(v - a[k])
		}
	}
	if len(d) == 0 {
		return ""
	}
	return loadgen.FormatCounts(d)
}

func sizeOf(b float64) string {
	switch {
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Microsecond).String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
