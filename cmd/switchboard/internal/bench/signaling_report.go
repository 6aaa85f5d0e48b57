package bench

import (
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
// (serverCPU) and of this client (selfCPU), what was not delivered, and the
// target's verdict.
func relayLine(w io.Writer, name string, run int, rate float64, res loadgen.RelayResult, serverCPU, selfCPU time.Duration) {
	window := max(res.Window.Seconds(), 1e-9)
	fmt.Fprintf(w, "   relay %d: %d pairs, target %.0f/s: sent %d delivered %d lost %d; %.0f msg/s delivered; "+
		"latency p50 %v p90 %v p99 %v p99.9 %v max %v; send lag p99 %v; CPU server %.0f%% client %.0f%% (of one core)",
		run, res.Senders/2, res.TargetRate, res.Sent, res.Delivered, res.Lost, res.Rate,
		dur(res.Latency.P50), dur(res.Latency.P90), dur(res.Latency.P99),
		dur(res.Latency.P999), dur(res.Latency.Max), dur(res.SendLag.P99),
		100*serverCPU.Seconds()/window, 100*selfCPU.Seconds()/window)
	if res.Skipped+res.Abandoned+res.WriteErrors > 0 || res.Dropped > 0 || len(res.ServerErrors) > 0 {
		fmt.Fprintf(w, "; not sent: %d (peer gone) + %d (schedule overran); write errors %d; sessions dropped %d; server errors %s",
			res.Skipped, res.Abandoned, res.WriteErrors, res.Dropped, loadgen.FormatCounts(res.ServerErrors))
	}
	if name == "switchboard" && rate >= TargetRate {
		ok := res.Latency.P99 < targetP99 && res.Rate >= 0.98*TargetRate && res.Lost == 0
		fmt.Fprintf(w, "  [target p99 < %v at %d msg/s, none lost: %s]", targetP99, TargetRate, verdict(ok))
	}
	fmt.Fprintln(w)
}

// printSummary prints the figures side by side and the ratios.
func printSummary(w io.Writer, sb, pj *figures) {
	fmt.Fprintf(w, "\n== summary (median over relay runs)\n")
	line := func(f *figures) {
		if f == nil {
			return
		}
		res := median(f.relays)
		fmt.Fprintf(w, "   %-11s sessions held %5d  RSS/idle session %9s  msg/s %7.0f  p50 %8v  p99 %8v  lost %d\n",
			f.name, f.held, sizeOf(f.perSession), res.Rate, dur(res.Latency.P50), dur(res.Latency.P99), res.Lost)
	}
	line(sb)
	line(pj)
	if sb == nil || pj == nil {
		return
	}
	a, b := median(sb.relays), median(pj.relays)
	ratio := func(x, y float64) string {
		if y == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}
	fmt.Fprintf(w, "   Switchboard/PeerJS: RSS per idle session %s (lower is better), msg/s %s, p50 %s, p99 %s (lower is better)\n",
		ratio(sb.perSession, pj.perSession), ratio(a.Rate, b.Rate),
		ratio(float64(a.Latency.P50), float64(b.Latency.P50)), ratio(float64(a.Latency.P99), float64(b.Latency.P99)))
}

// median picks the run with the median p99.
func median(rs []loadgen.RelayResult) loadgen.RelayResult {
	if len(rs) == 0 {
		return loadgen.RelayResult{}
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b loadgen.RelayResult) int { return int(a.Latency.P99 - b.Latency.P99) })
	return s[len(s)/2]
}

// watched are the Switchboard counters that explain lost or late signals.
var watched = map[string]bool{
	"switchboard_signaling_disconnects_total":    true,
	"switchboard_signaling_slow_consumers_total": true,
	"switchboard_signaling_rate_limited_total":   true,
	"switchboard_signaling_undeliverable_total":  true,
}

// watchedCounters reads the watched counters from a Switchboard /metrics
// page, keyed without the switchboard_signaling_ prefix and _total suffix
// (`disconnects{reason=slow}`); nil when there is none or it cannot be read.
func watchedCounters(ctx context.Context, u string) map[string]float64 {
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
		short := strings.TrimSuffix(strings.TrimPrefix(name, "switchboard_signaling_"), "_total")
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
