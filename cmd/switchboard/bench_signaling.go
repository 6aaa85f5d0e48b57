package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/bench"
	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
)

// fdMargin is the file descriptors the bench needs besides its sessions.
const fdMargin = 64

// maxBenchNodes bounds --nodes: every node is a process on this machine.
const maxBenchNodes = 9

// defaultHandoffs is --handoffs in a cluster run: enough samples for a p99,
// few enough to finish in seconds.
const defaultHandoffs = 200

// benchSignaling is `switchboard bench signaling`: opens N WebSocket
// sessions against a signaling server running as a separate process,
// measures its RSS per idle session, then relays signals between pairs at
// a fixed rate and reports throughput and one-way latency. With --nodes N
// it starts N processes as one embedded cluster and puts the two ends of
// every pair on different nodes; --compare-nodes runs one node first for the
// side-by-side figures; --handoffs times resumes on another node. With
// --peerjs-dir it runs the same load against PeerJS's server and prints
// the ratios.
func benchSignaling(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench signaling", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		sessions     = fs.Int("sessions", bench.TargetSessions, "sessions to open (even); pairs relay to each other")
		rate         = fs.Float64("rate", bench.TargetRate, "signals per second in total during the relay phase (open loop)")
		duration     = fs.Duration("duration", 20*time.Second, "length of each relay run")
		runs         = fs.Int("runs", 1, "relay runs over the same sessions (stability)")
		connectRate  = fs.Float64("connect-rate", 1000, "new sessions per second")
		connectTime  = fs.Duration("connect-timeout", 90*time.Second, "bound on the connect phase")
		settle       = fs.Duration("settle", 50*time.Second, "idle time after connecting; RSS is the peak of its second half, read every second: keep it several ping intervals long (the idle heap takes ~45 s to reach its steady state at 10,000 sessions)")
		pingInterval = fs.Duration("ping-interval", 5*time.Second, "SWITCHBOARD_PING_INTERVAL for the server this command starts: short, so keepalive runs during --settle; 5s also makes the welcome ask clients for the same heartbeat as PeerJS's client (5s)")
		clientHB     = fs.Duration("client-heartbeat", 0, "client application heartbeat; 0: protocol default (Switchboard: welcome's heartbeat.interval; PeerJS: 5s); negative: none")
		payload      = fs.Int("payload", 200, "padding bytes per signal (200 ≈ one ICE candidate)")
		attachURL    = fs.String("url", "", "attach to a running Switchboard: its WebSocket URL (ws://127.0.0.1:PORT/ws); needs --pid")
		attachPID    = fs.Int("pid", 0, "with --url: the server's process id, for RSS")
		attachSecret = fs.String("auth-secret", "", "with --url: the server's SWITCHBOARD_AUTH_SECRET, to mint hello tokens (empty: open mode, which rate-limits credentials per IP and refuses most of N sessions)")
		bin          = fs.String("bin", "", "switchboard executable to start with the serve subcommand (default: this binary)")
		peerjsDir    = fs.String("peerjs-dir", "", "directory where 'npm install peer' was run; runs the same load against PeerJS's CLI on loopback")
		nodeBin      = fs.String("node", "node", "node executable for --peerjs-dir")
		skipSB       = fs.Bool("skip-switchboard", false, "only run PeerJS (needs --peerjs-dir)")
		serverLog    = fs.String("server-log", "", "directory for the servers' stdout/stderr (default: a temporary one, removed)")
		verbose      = fs.Bool("v", false, "log every session failure (to stdout)")
		cpuProfile   = fs.String("client-cpuprofile", "", "write a CPU profile of this (client) process to this file")
		nodes        = fs.Int("nodes", 1, "Switchboard processes to start as one embedded cluster on 127.0.0.1 (SWITCHBOARD_CLUSTER=embedded); pair k's sessions connect to nodes k and k+1 mod N, so every signal crosses nodes. 1: one server, clustering off")
		compareNodes = fs.Bool("compare-nodes", false, "with --nodes N > 1: also start one server (clustering off); both hold --sessions (the client twice as many) and their relay runs alternate; prints both rows and their ratio")
		handoffs     = fs.Int("handoffs", -1, "after the relay runs, cut this many sessions (no close frame) and resume each on another node with hello{resume, ack, attempt+1}; reports resumed/failed and hello→welcome p50/p99. -1: 200 (at most one per pair) when --nodes > 1, else 0")
		waitIdle     = fs.Float64("wait-idle", 0, "before each relay run and handoff phase wait (up to 30s) until all CPUs together were at most this busy (0-1), for shared machines; 0: no wait")
		handoffQueue = fs.Int("handoff-queued", 1, "signals each cut session's peer sends it before it resumes (the resume replays them)")
	)
	var serverEnv kvList
	fs.Var(&serverEnv, "server-env", "extra KEY=VALUE for the Switchboard server (repeatable), e.g. GOGC=50")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: switchboard bench signaling [flags]\n\n"+
			"Starts `switchboard serve` on 127.0.0.1 as a child process (or attaches with --url/--pid),\n"+
			"opens --sessions WebSocket sessions, reads the server's RSS while idle, then relays\n"+
			"signals between pairs at --rate for --duration and reports msg/s and latency.\n"+
			"Cluster: --nodes 3 starts three nodes (SWITCHBOARD_CLUSTER=embedded) with the two ends of\n"+
			"every pair on different nodes; --compare-nodes adds a one-node run; --handoffs times resumes.\n"+
			"PeerJS comparison: (cd /tmp/pj && npm install peer) then --peerjs-dir /tmp/pj.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *sessions < 2 || *sessions%2 != 0:
		return fmt.Errorf("--sessions %d: want an even number >= 2", *sessions)
	case *rate <= 0 || *duration <= 0 || *duration > 10*time.Minute:
		return fmt.Errorf("--rate %v / --duration %v: want rate > 0 and duration in (0, 10m]", *rate, *duration)
	case *runs < 1 || *runs > 20:
		return fmt.Errorf("--runs %d out of range 1-20", *runs)
	case *settle < 0 || *settle > 10*time.Minute || *connectTime <= 0 || *connectTime > 30*time.Minute:
		return errors.New("--settle must be in [0, 10m] and --connect-timeout in (0, 30m]")
	case (*attachURL == "") != (*attachPID == 0):
		return errors.New("--url and --pid go together")
	case *skipSB && *peerjsDir == "":
		return errors.New("--skip-switchboard needs --peerjs-dir")
	case *nodes < 1 || *nodes > maxBenchNodes:
		return fmt.Errorf("--nodes %d out of range 1-%d", *nodes, maxBenchNodes)
	case *compareNodes && *nodes < 2:
		return errors.New("--compare-nodes needs --nodes 2 or more")
	case *attachURL != "" && *nodes > 1:
		return errors.New("--url attaches to one server: drop --nodes")
	case *handoffs < -1 || *handoffs > *sessions/2:
		return fmt.Errorf("--handoffs %d out of range 0-%d (one per pair)", *handoffs, *sessions/2)
	case *waitIdle < 0 || *waitIdle > 1:
		return fmt.Errorf("--wait-idle %v out of range 0-1", *waitIdle)
	case *handoffQueue < 1 || *handoffQueue > 100:
		return fmt.Errorf("--handoff-queued %d out of range 1-100", *handoffQueue)
	}
	if *handoffs == -1 {
		*handoffs = 0
		if *nodes > 1 {
			*handoffs = min(defaultHandoffs, *sessions/2)
		}
	}
	// --compare-nodes holds both sets of sessions at once.
	held := *sessions
	if *compareNodes {
		held *= 2
	}
	if lim, err := proc.FDLimit(); err == nil && uint64(held+fdMargin) > lim {
		return fmt.Errorf("--sessions %d needs %d file descriptors, RLIMIT_NOFILE is %d", *sessions, held+fdMargin, lim)
	}

	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// The client holds ~10,000 connections with little live heap but a
	// lot of short-lived garbage per message; fewer GC cycles leave more of
	// the shared CPUs to the server under test. Memory is not what this
	// process measures about itself.
	defer debug.SetGCPercent(debug.SetGCPercent(400))

	cfg := bench.SignalingConfig{
		Sessions: *sessions, Rate: *rate, Duration: *duration, Runs: *runs,
		ConnectRate: *connectRate, ConnectTimeout: *connectTime, Settle: *settle,
		PingInterval: *pingInterval, ClientHeartbeat: *clientHB, Payload: *payload,
		AttachURL: *attachURL, AttachPID: *attachPID, AttachSecret: *attachSecret,
		Bin: *bin, ServerEnv: serverEnv, PeerJSDir: *peerjsDir, Node: *nodeBin,
		SkipSwitchboard: *skipSB, ServerLog: *serverLog,
		Nodes: *nodes, CompareNodes: *compareNodes, Handoffs: *handoffs, HandoffQueued: *handoffQueue,
		WaitIdle: *waitIdle,
	}
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return bench.Signaling(ctx, cfg, stdout)
}

// kvList collects repeated KEY=VALUE flags.
type kvList []string

func (l *kvList) String() string { return strings.Join(*l, " ") }

func (l *kvList) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	*l = append(*l, s)
	return nil
}
