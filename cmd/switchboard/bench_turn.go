package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// benchTURN is `switchboard bench turn`: relayed packets per second and
// server CPU per relayed packet on loopback, against one TURN server
// (--server, --secret, --pid) or, with --compare, against coturn and this
// binary's own relay started side by side and loaded alternately.
func benchTURN(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench turn", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		server      = fs.String("server", "", "TURN server UDP address on loopback (e.g. 127.0.0.1:3478); not with --compare")
		secret      = fs.String("secret", "", "TURN REST shared secret of --server")
		pid         = fs.Int("pid", 0, "process id of --server, to measure its CPU per packet (0: not measured)")
		compare     = fs.Bool("compare", false, "start coturn and switchboard on 127.0.0.1 and load each in turn")
		rounds      = fs.Int("rounds", 3, "with --compare: rounds, each loading both servers (order alternates)")
		coturnPath  = fs.String("coturn", "turnserver", "with --compare: coturn's turnserver executable")
		coturnThr   = fs.Int("coturn-threads", 0, "with --compare: coturn relay-threads (0: its default, one per CPU)")
		sbPath      = fs.String("switchboard", "", "with --compare: switchboard executable, run with the serve subcommand (default: this binary)")
		allocations = fs.Int("allocations", 16, "TURN allocations, each with its own client socket")
		peers       = fs.Int("peers", 0, "UDP peer sockets on 127.0.0.2 (0: min(allocations, 4))")
		size        = fs.Int("size", 100, "payload bytes per packet")
		sizeMax     = fs.Int("size-max", 0, "if above --size: each packet's payload size is random, uniform in --size..--size-max (0: all --size)")
		rate        = fs.Int("rate", 0, "total packets/s the clients send (with echo the server relays twice that); 0: closed loop (--window in flight per allocation)")
		window      = fs.Int("window", 32, "closed loop: packets in flight per allocation")
		duration    = fs.Duration("duration", 5*time.Second, "measured time per run")
		warmup      = fs.Duration("warmup", 500*time.Millisecond, "untimed traffic before each measured run")
		maxPackets  = fs.Uint64("max-packets", 20_000_000, "cap on packets sent per measured run")
		sink        = fs.Bool("sink", false, "peers do not echo: relay client→peer only (needs --rate)")
		waitIdle    = fs.Float64("wait-idle", 0, "before each run wait (up to 30s) until all CPUs together were at most this busy (0-1), for shared machines; 0: no wait")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// Bounded so that a typo cannot keep a box saturated for hours.
	if *duration <= 0 || *duration > 10*time.Minute {
		return fmt.Errorf("--duration %v out of range (0, 10m]", *duration)
	}
	if *rounds < 1 || *rounds > 100 {
		return fmt.Errorf("--rounds %d out of range 1-100", *rounds)
	}
	load := loadgen.Config{
		Allocations: *allocations,
		Peers:       *peers,
		PayloadSize: *size,
		PayloadMax:  *sizeMax,
		Rate:        *rate,
		Window:      *window,
		Duration:    *duration,
		Warmup:      *warmup,
		MaxPackets:  *maxPackets,
		SinkOnly:    *sink,
	}
	if !*compare {
		if *server == "" || *secret == "" {
			return errors.New("need --server and --secret, or --compare")
		}
		load.Server, load.Secret, load.ServerPID = *server, *secret, *pid
		if *waitIdle > 0 {
			if _, err := loadgen.WaitIdle(ctx, *waitIdle, 30*time.Second); err != nil {
				return err
			}
		}
		res, err := loadgen.Run(ctx, load)
		if err != nil {
			return err
		}
		describe(stdout, load)
		header(stdout)
		row(stdout, "1", *server, res)
		return nil
	}
	if *server != "" || *pid != 0 {
		return errors.New("--compare starts its own servers; drop --server and --pid")
	}

	key := make([]byte, 16)
	_, _ = rand.Read(key) // never fails (crypto/rand panics instead)
	load.Secret = hex.EncodeToString(key)

	coturn, err := loadgen.StartCoturn(ctx, loadgen.CoturnConfig{Path: *coturnPath, Secret: load.Secret, Threads: *coturnThr})
	if err != nil {
		return err
	}
	defer coturn.Stop()
	sb, err := startSwitchboard(ctx, *sbPath, load.Secret)
	if err != nil {
		return err
	}
	defer sb.Stop()
	describe(stdout, load)
	fmt.Fprintf(stdout, "coturn pid %d at %s; switchboard pid %d at %s\n\n", coturn.PID(), coturn.Addr, sb.PID(), sb.Addr)

	results := map[string][]loadgen.Result{}
	header(stdout)
	for r := range *rounds {
		order := []*loadgen.Process{coturn, sb}
		if r%2 == 1 { // alternate who goes first, so drift (heat, other load) hits both alike
			slices.Reverse(order)
		}
		for _, p := range order {
			if *waitIdle > 0 {
				// 30s: long enough to catch a gap between other jobs, short
				// enough that a busy machine still gets measured (and flagged
				// by the other % column).
				if _, err := loadgen.WaitIdle(ctx, *waitIdle, 30*time.Second); err != nil {
					return err
				}
			}
			cfg := load
			cfg.Server, cfg.ServerPID = p.Addr, p.PID()
			res, err := loadgen.Run(ctx, cfg)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", p.Name, r+1, err)
			}
			results[p.Name] = append(results[p.Name], res)
			row(stdout, strconv.Itoa(r+1), p.Name, res)
		}
	}

	// Each figure's median over the rounds, taken separately: contention
	// from other processes moves throughput much more than CPU per packet.
	fmt.Fprintf(stdout, "\nmedians over %d rounds:\n", *rounds)
	sw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	fmt.Fprintf(stdout, "\nbest of %d rounds (highest pps, lowest µs/pkt, each on its own, among runs with loss <= 1%%):\n", *rounds)
	bw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	fmt.Fprintf(stdout, "\nswitchboard/coturn (medians): throughput x%.2f, server CPU per packet x%.2f, machine CPU per packet x%.2f\n",
		pps, cpu, s.machine/c.machine)
	fmt.Fprintf(stdout, "switchboard/coturn (best runs): throughput x%.2f, server CPU per packet x%.2f\n",
		best["switchboard"].pps/best["coturn"].pps, best["switchboard"].server/best["coturn"].server)
	verdict := "MET"
	if load.Rate > 0 {
		// Open loop: both deliver the offered rate unless they fall behind,
		// which shows as loss, so loss stands in for throughput.
		if s.loss > c.loss+0.1 || cpu > 1 {
			verdict = "NOT MET"
		}
		fmt.Fprintf(stdout, "bar at %d pps offered (medians: loss <= coturn's + 0.1 point, CPU per packet <= coturn's): %s\n", load.Rate, verdict)
	} else {
		if pps < 1 || cpu > 1 {
			verdict = "NOT MET"
		}
		fmt.Fprintf(stdout, "bar (medians: throughput >= coturn's, CPU per packet <= coturn's): %s\n", verdict)
	}
	var others []float64
	for _, rs := range results {
		for _, r := range rs {
			others = append(others, otherShare(r))
		}
	}
	slices.Sort(others)
	if o := others[len(others)/2]; o > 20 {
		fmt.Fprintf(stdout, "warning: other processes used %.0f%% of busy CPU time (median): throughput figures are noisy; CPU per packet less so\n", o)
	}
	return nil
}

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
	fmt.Fprintln(w, "pps = packets the server delivered per second, both directions; µs/pkt = CPU time per delivered packet;")
	fmt.Fprintln(w, "gen = this load generator's own CPU (it shares the machine); machine = all CPUs busy incl. softirq;")
	fmt.Fprintln(w, "other = machine busy time neither server nor generator used (other processes, kernel threads): noise if large;")
	fmt.Fprintln(w, "drops: srv = at the server's socket buffers (it fell behind), gen = at the generator's sockets or client queues,")
	fmt.Fprintln(w, "backlog = machine-wide per-CPU input backlog overflows (net.core.netdev_max_backlog)")
	fmt.Fprintln(w)
}

// The per-run table is printed one row per finished run (fixed widths
// rather than tabwriter, which would hold every row until the end).
const (
	headFmt = "%6s  %-21s %9s %7s %14s %11s %15s %10s %8s %10s %10s %14s\n"
	rowFmt  = "%6s  %-21s %9.0f %7.2f %14s %11.2f %15.2f %10s %8.0f %10s %10d %14d\n"
)

func header(w io.Writer) {
	fmt.Fprintf(w, headFmt, "round", "server", "pps", "loss %", "server µs/pkt", "gen µs/pkt", "machine µs/pkt",
		"CPUs busy", "other %", "srv drops", "gen drops", "backlog drops")
}

func row(w io.Writer, round, name string, r loadgen.Result) {
	srv, srvDrops := "-", "-"
	if r.ServerMeasured {
		srv = fmt.Sprintf("%.2f", r.ServerCPUPerPacket())
		srvDrops = strconv.FormatUint(r.ServerSocketDrops, 10)
	}
	busy := 0.0
	if r.Elapsed > 0 {
		busy = r.MachineBusy.Seconds() / r.Elapsed.Seconds()
	}
	fmt.Fprintf(w, rowFmt, round, name, r.PPS(), 100*r.Loss(), srv, r.GeneratorCPUPerPacket(), r.MachineCPUPerPacket(),
		fmt.Sprintf("%.2f/%d", busy, r.CPUs), otherShare(r), srvDrops, r.GeneratorSocketDrops+r.GeneratorDrops, r.BacklogDrops)
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

// summary holds the per-figure medians of several runs of one server.
type summary struct{ pps, loss, server, gen, machine float64 }

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
	}
}

// startSwitchboard runs `switchboard serve` on loopback with a relay
// configured like StartCoturn's coturn: 127.0.0.1 only, peers on 127.0.0.0/8.
func startSwitchboard(ctx context.Context, path, secret string) (*loadgen.Process, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("own executable: %w", err)
		}
		path = exe
	}
	port, err := loadgen.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The child's environment is ours minus any SWITCHBOARD_ setting, so the
	// caller's own server configuration cannot change what is measured.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	env = append(env,
		envPrefix+"TURN_ADDR="+addr,
		envPrefix+"HTTP_ADDR=127.0.0.1:0",
		envPrefix+"PUBLIC_IP=127.0.0.1",
		envPrefix+"PEER_ALLOW=127.0.0.0/8",
		envPrefix+"TURN_SECRET="+secret,
		// Beside coturn's 61000-62999, above Linux's default ephemeral range
		// (32768-60999) where the generator's sockets get their ports.
		envPrefix+"RELAY_PORTS=63000-64999",
		envPrefix+"LOG_LEVEL=warn",
		// Every run releases its allocations, so a stop has nothing to wait for;
		// this only bounds a stop after an interrupted run.
		envPrefix+"DRAIN_TIMEOUT=2s",
	)
	return loadgen.StartProcess(ctx, loadgen.ProcessConfig{
		Name: "switchboard",
		Path: path,
		Args: []string{"serve"},
		Env:  env,
		Addr: addr,
	})
}
