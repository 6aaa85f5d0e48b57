package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// TURNConfig is one `switchboard bench turn`.
type TURNConfig struct {
	// Load is every run's load; Server, Secret and Meter are set per run.
	Load loadgen.Config
	// Server, Secret and PID name a running TURN server to load once (PID 0:
	// its CPU is not measured). Not with Compare.
	Server, Secret string
	PID            int
	// Compare starts coturn and switchboard on 127.0.0.1 and loads each in
	// turn, Rounds times, alternating who goes first.
	Compare bool
	Rounds  int
	// Coturn is how coturn is started (Path, Threads); Secret and ports are
	// the benchmark's.
	Coturn CoturnConfig
	// Switchboard is the executable run with `serve`; "" this binary.
	Switchboard string
	// WaitIdle, if above 0, waits before each run (up to 30s) until all CPUs
	// together were at most this busy (0-1).
	WaitIdle float64
}

// idleWait bounds a WaitIdle: long enough to catch a gap between other
// jobs, short enough that a busy machine still gets measured (and flagged
// by the other % column).
const idleWait = 30 * time.Second

// TURN loads one TURN server, or coturn and switchboard side by side, and
// prints a row per run, then medians, best runs and the ratios.
func TURN(ctx context.Context, cfg TURNConfig, w io.Writer) error {
	if !cfg.Compare {
		if cfg.Server == "" || cfg.Secret == "" {
			return errors.New("need --server and --secret, or --compare")
		}
		load := cfg.Load
		load.Server, load.Secret, load.Meter = cfg.Server, cfg.Secret, meter(cfg.PID)
		if err := waitIdle(ctx, cfg.WaitIdle); err != nil {
			return err
		}
		res, err := loadgen.Run(ctx, load)
		if err != nil {
			return err
		}
		describe(w, load)
		header(w)
		row(w, "1", cfg.Server, res)
		return nil
	}
	if cfg.Server != "" || cfg.PID != 0 {
		return errors.New("--compare starts its own servers; drop --server and --pid")
	}

	key := make([]byte, 16)
	_, _ = rand.Read(key) // never fails (crypto/rand panics instead)
	load := cfg.Load
	load.Secret = hex.EncodeToString(key)
	cc := cfg.Coturn
	cc.Secret = load.Secret
	coturn, err := startCoturn(ctx, cc)
	if err != nil {
		return err
	}
	defer coturn.Stop()
	sb, err := startSwitchboard(ctx, cfg.Switchboard, load.Secret)
	if err != nil {
		return err
	}
	defer sb.Stop()
	describe(w, load)
	fmt.Fprintf(w, "coturn pid %d at %s; switchboard pid %d at %s\n\n", coturn.PID(), coturn.Addr, sb.PID(), sb.Addr)

	results := map[string][]loadgen.Result{}
	header(w)
	for r := range cfg.Rounds {
		order := []*turnServer{coturn, sb}
		if r%2 == 1 { // alternate who goes first, so drift (heat, other load) hits both alike
			slices.Reverse(order)
		}
		for _, s := range order {
			if err := waitIdle(ctx, cfg.WaitIdle); err != nil {
				return err
			}
			run := load
			run.Server, run.Meter = s.Addr, meter(s.PID())
			res, err := loadgen.Run(ctx, run)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", s.Name, r+1, err)
			}
			if err := s.Alive(); err != nil {
				return err
			}
			results[s.Name] = append(results[s.Name], res)
			row(w, strconv.Itoa(r+1), s.Name, res)
		}
	}
	return compareTURN(w, load, cfg.Rounds, results)
}

func waitIdle(ctx context.Context, maxBusy float64) error {
	if maxBusy <= 0 {
		return nil
	}
	_, err := proc.WaitIdle(ctx, maxBusy, idleWait)
	return err
}

// compareTURN prints the medians and best runs of coturn and switchboard
// and whether switchboard met the bar.
func compareTURN(w io.Writer, load loadgen.Config, rounds int, results map[string][]loadgen.Result) error {
	// Each figure's median over the rounds, taken separately: contention
	// from other processes moves throughput much more than CPU per packet.
	fmt.Fprintf(w, "\nmedians over %d rounds:\n", rounds)
	sw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(sw, "server\tpps\tloss %\tserver µs/pkt\tgen µs/pkt\tmachine µs/pkt\t")
	med := map[string]summary{}
	for _, name := range []string{"coturn", "switchboard"} {
		m := summarize(results[name])
		med[name] = m
		fmt.Fprintf(sw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, m.pps, m.loss, m.server, m.gen, m.machine)
	}
	if err := sw.Flush(); err != nil {
		return err
	}
	// Other processes only ever add time, so each figure's best run is the
	// least disturbed one: on a shared machine it shows what each server
	// does undisturbed, where the median shows what it does under load.
	best := map[string]summary{}
	fmt.Fprintf(w, "\nbest of %d rounds (highest pps, lowest µs/pkt, each on its own, among runs with loss <= 1%%):\n", rounds)
	bw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(bw, "server\tpps\tserver µs/pkt\t")
	for _, name := range []string{"coturn", "switchboard"} {
		b := bestOf(results[name])
		best[name] = b
		fmt.Fprintf(bw, "%s\t%.0f\t%.2f\t\n", name, b.pps, b.server)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	c, s := med["coturn"], med["switchboard"]
	pps, cpu := s.pps/c.pps, s.server/c.server
	fmt.Fprintf(w, "\nswitchboard/coturn (medians): throughput x%.2f, server CPU per packet x%.2f, machine CPU per packet x%.2f\n",
		pps, cpu, s.machine/c.machine)
	fmt.Fprintf(w, "switchboard/coturn (best runs): throughput x%.2f, server CPU per packet x%.2f\n",
		best["switchboard"].pps/best["coturn"].pps, best["switchboard"].server/best["coturn"].server)
	verdict := "MET"
	if load.Rate > 0 {
		// Open loop: both deliver the offered rate unless they fall behind,
		// which shows as loss, so loss stands in for throughput.
		if s.loss > c.loss+0.1 || cpu > 1 {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "bar at %d pps offered (medians: loss <= coturn's + 0.1 point, CPU per packet <= coturn's): %s\n", load.Rate, verdict)
	} else {
		if pps < 1 || cpu > 1 {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "bar (medians: throughput >= coturn's, CPU per packet <= coturn's): %s\n", verdict)
	}
	var others []float64
	for _, rs := range results {
		for _, r := range rs {
			others = append(others, otherShare(r))
		}
	}
	slices.Sort(others)
	if o := others[len(others)/2]; o > 20 {
		fmt.Fprintf(w, "warning: other processes used %.0f%% of busy CPU time (median): throughput figures are noisy; CPU per packet less so\n", o)
	}
	return nil
}
