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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// TURNConfig is one `switchboard bench turn`.
type TURNConfig struct {
	// Load is every run's load; Server, Secret and Meter are set per run,
	// and a fixed Shape overrides its allocations, peers, sizes and rate.
	Load loadgen.Config
	// Shapes are the loads to run, in order, each on every server.
	// Default: the default shape alone (Load as given).
	Shapes []Shape
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
	// Offload lists SWITCHBOARD_RELAY_OFFLOAD modes (auto, off, require) to
	// start Switchboard with, one server each, named switchboard/<mode>.
	// A server that does not start with require is reported as "offload
	// unavailable: <its reason>" and the run goes on without it. Default
	// nil: one server named switchboard with the variable unset (auto).
	Offload []string
	// WaitIdle, if above 0, waits before each run (up to 30s) until all CPUs
	// together were at most this busy (0-1).
	WaitIdle float64
}

// idleWait bounds a WaitIdle: long enough to catch a gap between other
// jobs, short enough that a busy machine still gets measured (and flagged
// by the other % column).
const idleWait = 30 * time.Second

// shapeResult is one shape's medians per server, for the summary.
type shapeResult struct {
	shape Shape
	load  loadgen.Config
	med   map[string]summary
}

// TURN loads one TURN server, or coturn and switchboard side by side, and
// prints, per shape, a row per run, then medians, best runs and the
// ratios, and at the end a summary of every shape.
func TURN(ctx context.Context, cfg TURNConfig, w io.Writer) error {
	shapes := cfg.Shapes
	if len(shapes) == 0 {
		shapes = shapePresets[:1]
	}
	self, err := proc.FDLimit()
	if err != nil {
		return err
	}
	if !cfg.Compare {
		if cfg.Server == "" || cfg.Secret == "" {
			return errors.New("need --server and --secret, or --compare")
		}
		var srv []*turnServer
		if cfg.PID > 0 {
			if lim, err := proc.OpenFileLimit(cfg.PID); err == nil {
				srv = append(srv, &turnServer{Process: &proc.Process{Name: cfg.Server}, fdLimit: lim})
			}
		}
		for _, sh := range shapes {
			load := sh.Load(cfg.Load)
			load.Server, load.Secret, load.Meter = cfg.Server, cfg.Secret, meter(cfg.PID)
			if err := fitLimits(load, self, srv); err != nil {
				return fmt.Errorf("shape %s: %w", sh.Name, err)
			}
			if err := waitIdle(ctx, cfg.WaitIdle); err != nil {
				return err
			}
			res, err := loadgen.Run(ctx, load)
			if err != nil {
				return fmt.Errorf("shape %s: %w", sh.Name, err)
			}
			if len(shapes) > 1 || sh.Fixed {
				fmt.Fprintf(w, "shape %s: %s\n", sh.Name, sh.About)
			}
			describe(w, load)
			legend(w)
			header(w)
			row(w, "1", cfg.Server, res)
			fmt.Fprintln(w)
		}
		return nil
	}
	if cfg.Server != "" || cfg.PID != 0 {
		return errors.New("--compare starts its own servers; drop --server and --pid")
	}
	if len(cfg.Offload) > len(relayPorts) {
		return fmt.Errorf("at most %d --offload modes", len(relayPorts))
	}

	key := make([]byte, 16)
	_, _ = rand.Read(key) // never fails (crypto/rand panics instead)
	secret := hex.EncodeToString(key)
	cc := cfg.Coturn
	cc.Secret = secret
	coturn, err := startCoturn(ctx, cc)
	if err != nil {
		return err
	}
	defer coturn.Stop()
	servers := []*turnServer{coturn}
	modes := cfg.Offload
	if len(modes) == 0 {
		modes = []string{""}
	}
	for i, mode := range modes {
		name := "switchboard"
		if mode != "" {
			name += "/" + mode
		}
		sb, err := startSwitchboard(ctx, cfg.Switchboard, secret, name, mode, i)
		var se *proc.StartError
		if mode == "require" && errors.As(err, &se) {
			// The machine cannot load the fast path (no root, no BPF, an
			// old kernel): say why and compare the rest.
			fmt.Fprintf(w, "offload unavailable: %s\n", se.LastLine())
			continue
		}
		if err != nil {
			return err
		}
		defer sb.Stop()
		servers = append(servers, sb)
	}
	if len(servers) == 1 {
		return errors.New("no switchboard server started")
	}
	var names, pids []string
	for _, s := range servers {
		names = append(names, s.Name)
		pids = append(pids, fmt.Sprintf("%s pid %d at %s", s.Name, s.PID(), s.Addr))
	}
	fmt.Fprintf(w, "%s\n", strings.Join(pids, "; "))
	legend(w)

	var all []shapeResult
	for _, sh := range shapes {
		load := sh.Load(cfg.Load)
		load.Secret = secret
		if err := fitLimits(load, self, servers); err != nil {
			return fmt.Errorf("shape %s: %w", sh.Name, err)
		}
		fmt.Fprintf(w, "shape %s: %s\n", sh.Name, sh.About)
		describe(w, load)
		fmt.Fprintln(w)
		results := map[string][]loadgen.Result{}
		header(w)
		for r := range cfg.Rounds {
			order := slices.Clone(servers)
			if r%2 == 1 { // alternate who goes first, so drift (heat, other load) hits all alike
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
					return fmt.Errorf("shape %s: %s round %d: %w", sh.Name, s.Name, r+1, err)
				}
				if err := s.Alive(); err != nil {
					return err
				}
				results[s.Name] = append(results[s.Name], res)
				row(w, strconv.Itoa(r+1), s.Name, res)
			}
		}
		med, err := compareTURN(w, load, cfg.Rounds, names, results)
		if err != nil {
			return err
		}
		all = append(all, shapeResult{shape: sh, load: load, med: med})
		fmt.Fprintln(w)
	}
	return summaryTable(w, cfg.Rounds, names, all)
}

func waitIdle(ctx context.Context, maxBusy float64) error {
	if maxBusy <= 0 {
		return nil
	}
	_, err := proc.WaitIdle(ctx, maxBusy, idleWait)
	return err
}

// compareTURN prints the medians and best runs of coturn and each
// switchboard server (names, coturn first) and whether each met the bar,
// and returns the medians.
func compareTURN(w io.Writer, load loadgen.Config, rounds int, names []string, results map[string][]loadgen.Result) (map[string]summary, error) {
	// Each figure's median over the rounds, taken separately: contention
	// from other processes moves throughput much more than CPU per packet.
	fmt.Fprintf(w, "\nmedians over %d rounds:\n", rounds)
	sw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(sw, "server\tpps\tloss %\tserver µs/pkt\tgen µs/pkt\tmachine µs/pkt\tsoftirq µs/pkt\tp50 µs\tp99 µs\t")
	med := map[string]summary{}
	for _, name := range names {
		m := summarize(results[name])
		med[name] = m
		fmt.Fprintf(sw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", name, m.pps, m.loss, m.server, m.gen, m.machine, m.softirq,
			micros(m.p50), micros(m.p99))
	}
	if err := sw.Flush(); err != nil {
		return nil, err
	}
	// Other processes only ever add time, so each figure's best run is the
	// least disturbed one: on a shared machine it shows what each server
	// does undisturbed, where the median shows what it does under load.
	best := map[string]summary{}
	fmt.Fprintf(w, "\nbest of %d rounds (highest pps, lowest µs/pkt, each on its own, among runs with loss <= 1%%):\n", rounds)
	bw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(bw, "server\tpps\tserver µs/pkt\t")
	for _, name := range names {
		b := bestOf(results[name])
		best[name] = b
		fmt.Fprintf(bw, "%s\t%.0f\t%.2f\t\n", name, b.pps, b.server)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	c := med[names[0]]
	fmt.Fprintln(w)
	for _, name := range names[1:] {
		s := med[name]
		pps, cpu := s.pps/c.pps, s.server/c.server
		fmt.Fprintf(w, "%s/coturn (medians): throughput x%.2f, server CPU per packet x%.2f, machine CPU per packet x%.2f\n",
			name, pps, cpu, s.machine/c.machine)
		fmt.Fprintf(w, "%s/coturn (best runs): throughput x%.2f, server CPU per packet x%.2f\n",
			name, best[name].pps/best[names[0]].pps, best[name].server/best[names[0]].server)
		prefix := ""
		if len(names) > 2 {
			prefix = name + " "
		}
		verdict := "MET"
		if load.Rate > 0 {
			// Open loop: both deliver the offered rate unless they fall behind,
			// which shows as loss, so loss stands in for throughput.
			if s.loss > c.loss+0.1 || cpu > 1 {
				verdict = "NOT MET"
			}
			fmt.Fprintf(w, "%sbar at %d pps offered (medians: loss <= coturn's + 0.1 point, CPU per packet <= coturn's): %s\n", prefix, load.Rate, verdict)
		} else {
			if pps < 1 || cpu > 1 {
				verdict = "NOT MET"
			}
			fmt.Fprintf(w, "%sbar (medians: throughput >= coturn's, CPU per packet <= coturn's): %s\n", prefix, verdict)
		}
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
	return med, nil
}
