package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/bench"
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
		shape       = fs.String("shape", "default", "load shape: default (the flags' load, by default the closed loop), many-slow (200 allocations, 8 peers, 30000 pps offered, 60-1200 B), video (1000 allocations at 30 pps of 900-1200 B), or all of them in turn")
		offload     = fs.String("offload", "", "with --compare: switchboard's SWITCHBOARD_RELAY_OFFLOAD: auto, off, require, or both (off and require side by side; require is skipped with the reason where the kernel fast path cannot load); default unset (the server's default, auto)")
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
	shapes, err := bench.ParseShape(*shape)
	if err != nil {
		return err
	}
	// A fixed shape sets the load itself: a flag it would override is a
	// mistake worth stopping for, not a silent surprise in the figures.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, sh := range shapes {
		if !sh.Fixed {
			continue
		}
		for _, f := range []string{"allocations", "peers", "size", "size-max", "rate", "sink"} {
			if set[f] {
				return fmt.Errorf("--shape %s sets --%s itself; drop --%s or use --shape default", *shape, f, f)
			}
		}
	}
	var modes []string
	switch *offload {
	case "":
	case "auto", "off", "require":
		modes = []string{*offload}
	case "both":
		modes = []string{"off", "require"}
	default:
		return fmt.Errorf("--offload %q: want auto, off, require or both", *offload)
	}
	if modes != nil && !*compare {
		return errors.New("--offload needs --compare (it sets the environment of the switchboard it starts)")
	}
	return bench.TURN(ctx, bench.TURNConfig{
		Load: loadgen.Config{
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
		},
		Shapes:      shapes,
		Offload:     modes,
		Server:      *server,
		Secret:      *secret,
		PID:         *pid,
		Compare:     *compare,
		Rounds:      *rounds,
		Coturn:      bench.CoturnConfig{Path: *coturnPath, Threads: *coturnThr},
		Switchboard: *sbPath,
		WaitIdle:    *waitIdle,
	}, stdout)
}
