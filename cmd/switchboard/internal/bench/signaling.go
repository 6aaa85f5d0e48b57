package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

// Targets of issue 3 on the reference 2-core machine.
const (
	TargetSessions      = 10_000
	TargetRate          = 20_000
	targetIdleBytes     = 16 << 10
	targetP99           = 5 * time.Millisecond
	hubMessageRateLimit = 50 // signaling.Config.MessageRate default, per session
)

// SignalingConfig is one `switchboard bench signaling`.
type SignalingConfig struct {
	Sessions       int           // sessions to open (even); pairs relay to each other
	Rate           float64       // signals per second in total during a relay run
	Duration       time.Duration // length of each relay run
	Runs           int           // relay runs over the same sessions
	ConnectRate    float64       // new sessions per second
	ConnectTimeout time.Duration // bound on the connect phase
	// Settle is the idle time after connecting; RSS is the peak of its
	// second half, read every second.
	Settle time.Duration
	// PingInterval is SWITCHBOARD_PING_INTERVAL of the server this starts.
	PingInterval time.Duration
	// ClientHeartbeat is the client application heartbeat; 0: the
	// protocol's default, negative: none.
	ClientHeartbeat time.Duration
	Payload         int // padding bytes per signal

	// AttachURL and AttachPID name a running Switchboard to load instead
	// of starting one; AttachSecret is its SWITCHBOARD_AUTH_SECRET ("" open).
	AttachURL    string
	AttachPID    int
	AttachSecret string
	// Bin is the switchboard executable to start; "" this binary.
	Bin string
	// ServerEnv is extra KEY=VALUE for the started Switchboard.
	ServerEnv []string
	// PeerJSDir, if set, is where `npm install peer` ran: the same load
	// then runs against PeerJS's server, started with Node.
	PeerJSDir, Node string
	// SkipSwitchboard runs PeerJS only.
	SkipSwitchboard bool
	// ServerLog is a directory for the servers' output; "" a temporary one,
	// removed at the end.
	ServerLog string
	// Log receives every session failure; nil: quiet.
	Log *slog.Logger

	// Nodes is how many Switchboard processes to start as one embedded
	// cluster (SWITCHBOARD_CLUSTER=embedded, all on 127.0.0.1); pair k's
	// sessions connect to nodes k and k+1 mod Nodes, so every signal crosses
	// from one node to another. 0 or 1: one server, clustering off.
	Nodes int
	// CompareNodes runs one server (clustering off) first, then Nodes, and
	// prints both in the summary.
	CompareNodes bool
	// Handoffs is how many sessions the handoff phase cuts after the relay
	// runs and resumes on another node (the same one when there is only
	// one); 0: no handoff phase.
	Handoffs int
	// HandoffQueued is how many signals each cut session's peer sends it
	// before it resumes; the resume replays them. 0: loadgen's default (1).
	HandoffQueued int
	// WaitIdle, if above 0, waits before each relay run and handoff phase
	// (up to 30s) until all CPUs together were at most this busy (0-1): on a
	// shared machine the runs then start in a quiet moment.
	WaitIdle float64
}

// nodes is how many Switchboard processes a run starts.
func (c SignalingConfig) nodes() int { return max(c.Nodes, 1) }

// target is one server under load: one process, or a cluster of them.
type target struct {
	name  string
	proto loadgen.Protocol
	nodes []node // one per process; pair k's sessions are on nodes k and k+1 mod len
	token func(int) string
	note  string // how it was started, printed with its figures
}

// node is one server process of a target.
type node struct {
	name  string
	wsURL string
	pid   int
	proc  *proc.Process // nil when attached
	// metricsURL is Switchboard's /metrics, scraped for disconnect
	// reasons; empty: none.
	metricsURL string
}

// alive is nil when every process runs; an attached server's process is
// not ours and counts as running.
func (t target) alive() error {
	for _, n := range t.nodes {
		if n.proc == nil {
			continue
		}
		if err := n.proc.Alive(); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
	}
	return nil
}

// stop stops the processes this bench started, all at once: a cluster
// node stopped after another would first try to hand its sessions over.
func (t target) stop() {
	var wg sync.WaitGroup
	for _, n := range t.nodes {
		if n.proc != nil {
			wg.Go(func() { _ = n.proc.Stop() })
		}
	}
	wg.Wait()
}

// figures are one server's results.
type figures struct {
	name       string
	nodes      int     // server processes (1: clustering off)
	held       int     // sessions connected when idle RSS was read
	perSession float64 // idle RSS growth per held session, bytes, all nodes together
	relays     []loadgen.RelayResult
	cpu        []time.Duration        // server CPU (all nodes) per relay run
	handoff    *loadgen.HandoffResult // nil: no handoff phase
}

// Signaling loads Switchboard (started or attached) and optionally PeerJS
// with the same sessions and signals, and prints each one's figures and
// the ratios.
func Signaling(ctx context.Context, cfg SignalingConfig, w io.Writer) error {
	logDir := cfg.ServerLog
	if logDir == "" {
		d, err := os.MkdirTemp("", "switchboard-bench-*")
		if err != nil {
			return fmt.Errorf("log directory: %w", err)
		}
		defer os.RemoveAll(d)
		logDir = d
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("--server-log: %w", err)
	}

	fmt.Fprintf(w, "switchboard bench signaling  %s  %s/%s  %d CPUs  (client and server are separate processes on 127.0.0.1;\n"+
		"  the CPUs are shared with the client and anything else running: figures include that noise)\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "host: load average %s, this process's nice %s (servers inherit it)\n", proc.LoadAvg(), proc.Nice())
	fmt.Fprintf(w, "load: %d sessions (%d pairs, each in its own room), connect %.0f/s, settle %v, relay %.0f signals/s × %v × %d run(s), payload %d B\n",
		cfg.Sessions, cfg.Sessions/2, cfg.ConnectRate, cfg.Settle, cfg.Rate, cfg.Duration, cfg.Runs, cfg.Payload)
	if per := cfg.Rate / float64(cfg.Sessions); per > 0.9*hubMessageRateLimit {
		fmt.Fprintf(w, "WARNING: %.1f signals/s per session is near the hub's default per-session limit (%d/s): expect rate-limited errors\n", per, hubMessageRateLimit)
	}

	if n := cfg.nodes(); n > 1 {
		fmt.Fprintf(w, "cluster: %d nodes (SWITCHBOARD_CLUSTER=embedded, separate processes on 127.0.0.1); pair k's sessions are on nodes k and k+1 mod %d: every signal crosses nodes\n", n, n)
	}
	if cfg.CompareNodes && cfg.nodes() > 1 {
		fmt.Fprintf(w, "compare: one server (clustering off) and %d nodes hold their sessions side by side; their relay runs alternate (ABBA…), so machine noise falls on both\n", cfg.nodes())
	}
	if cfg.Handoffs > 0 {
		fmt.Fprintf(w, "handoff: after the relay runs, %d sessions are cut (no close frame), their peers send each %d signal(s), and they resume with hello{resume, ack, attempt+1} on another node (the same one when there is one)\n",
			cfg.Handoffs, max(cfg.HandoffQueued, 1))
	}

	var rows []*figures
	if !cfg.SkipSwitchboard {
		counts := []int{cfg.nodes()}
		if cfg.CompareNodes && cfg.nodes() > 1 {
			counts = []int{1, cfg.nodes()}
		}
		if len(counts) == 2 {
			fs, err := compareNodes(ctx, cfg, logDir, w)
			if err != nil {
				return err
			}
			rows = append(rows, fs...)
		} else {
			f, err := runSwitchboard(ctx, cfg, counts[0], logDir, w)
			if err != nil {
				return err
			}
			rows = append(rows, f)
		}
	}
	if cfg.PeerJSDir != "" {
		t, err := startPeerJS(ctx, cfg, logDir)
		if err != nil {
			return err
		}
		f, err := runSignaling(ctx, t, cfg, w)
		t.stop()
		if err != nil {
			return err
		}
		rows = append(rows, &f)
	}
	printSummary(w, rows)
	return nil
}

// compareNodes starts one server (clustering off) and connects its sessions,
// then the same for cfg.Nodes nodes, and alternates their relay runs, so
// that what else the machine is doing falls on both alike; then each one's
// handoff phase. The client holds both sets of sessions.
func compareNodes(ctx context.Context, cfg SignalingConfig, logDir string, w io.Writer) ([]*figures, error) {
	t1, err := startSignalingSwitchboard(ctx, cfg, logDir)
	if err != nil {
		return nil, err
	}
	defer t1.stop()
	l1, err := connectTarget(ctx, t1, cfg, w)
	if err != nil {
		return nil, err
	}
	defer l1.r.Close()
	tN, err := startSignalingCluster(ctx, cfg, cfg.nodes(), logDir)
	if err != nil {
		return nil, err
	}
	defer tN.stop()
	lN, err := connectTarget(ctx, tN, cfg, w)
	if err != nil {
		return nil, err
	}
	defer lN.r.Close()
	l1.tag, lN.tag = "[1 node] ", fmt.Sprintf("[%d nodes] ", cfg.nodes())

	fmt.Fprintf(w, "\n== relay runs, alternating\n")
	order := []*loaded{l1, lN}
	for i := range cfg.Runs {
		for _, l := range order {
			if err := l.relay(ctx, cfg, w, i+1); err != nil {
				return nil, err
			}
		}
		slices.Reverse(order) // neither always runs first
	}
	for _, l := range []*loaded{l1, lN} {
		if err := l.handoff(ctx, cfg, w); err != nil {
			return nil, err
		}
		if err := l.t.alive(); err != nil {
			return nil, fmt.Errorf("%s: %w", l.t.name, err)
		}
	}
	return []*figures{&l1.f, &lN.f}, nil
}

// runSwitchboard starts (or attaches to) Switchboard with n nodes, loads it
// and stops it.
func runSwitchboard(ctx context.Context, cfg SignalingConfig, n int, logDir string, w io.Writer) (*figures, error) {
	var t target
	switch {
	case cfg.AttachURL != "":
		t = target{name: "switchboard", proto: loadgen.Switchboard,
			nodes: []node{{name: "switchboard", wsURL: cfg.AttachURL, pid: cfg.AttachPID}}}
		if u, err := url.Parse(cfg.AttachURL); err == nil {
			t.nodes[0].metricsURL = "http://" + u.Host + "/metrics"
		}
		t.note = "attached to pid " + strconv.Itoa(cfg.AttachPID) + " (its own ping interval applies)"
		if cfg.AttachSecret != "" {
			t.token = tokens([]byte(cfg.AttachSecret))
		}
	case n > 1:
		var err error
		if t, err = startSignalingCluster(ctx, cfg, n, logDir); err != nil {
			return nil, err
		}
	default:
		var err error
		if t, err = startSignalingSwitchboard(ctx, cfg, logDir); err != nil {
			return nil, err
		}
	}
	// Stopped before the next server starts: its sessions sit in their
	// resume grace for a while and must not take CPU from the next one.
	defer t.stop()
	f, err := runSignaling(ctx, t, cfg, w)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// runSignaling drives one server (or cluster) through connect, idle, relay
// and, if configured, handoff phases.
func runSignaling(ctx context.Context, t target, o SignalingConfig, w io.Writer) (figures, error) {
	l, err := connectTarget(ctx, t, o, w)
	if err != nil {
		return figures{name: t.name, nodes: len(t.nodes)}, err
	}
	defer l.r.Close()
	for i := range o.Runs {
		if err := l.relay(ctx, o, w, i+1); err != nil {
			return l.f, err
		}
	}
	if err := l.handoff(ctx, o, w); err != nil {
		return l.f, err
	}
	if err := t.alive(); err != nil {
		return l.f, fmt.Errorf("%s: %w", t.name, err)
	}
	return l.f, nil
}

// loaded is a target with its sessions connected, between phases.
type loaded struct {
	t    target
	r    *loadgen.Runner
	f    figures
	pids []int
	// tag starts each of its relay and handoff lines when the runs of
	// several targets interleave ("[1 node] "); "" alone.
	tag string
	m0  map[string]float64 // watched counters after the last phase
}

// connectTarget opens the sessions on t and measures its idle RSS. The
// caller closes the returned runner.
func connectTarget(ctx context.Context, t target, o SignalingConfig, w io.Writer) (*loaded, error) {
	l := &loaded{t: t, f: figures{name: t.name, nodes: len(t.nodes)}}
	urls := make([]string, len(t.nodes))
	for _, n := range t.nodes {
		l.pids = append(l.pids, n.pid)
	}
	for i, n := range t.nodes {
		urls[i] = n.wsURL
	}
	if len(t.nodes) == 1 {
		fmt.Fprintf(w, "\n== %s  pid %d  %s\n", t.name, l.pids[0], urls[0])
	} else {
		fmt.Fprintf(w, "\n== %s  %d nodes\n", t.name, len(t.nodes))
		for _, n := range t.nodes {
			fmt.Fprintf(w, "   %s  pid %d  %s\n", n.name, n.pid, n.wsURL)
		}
	}
	if t.note != "" {
		fmt.Fprintf(w, "   %s\n", t.note)
	}
	base := make([]int64, len(l.pids))
	for i, pid := range l.pids {
		var err error
		if base[i], err = proc.RSS(pid); err != nil {
			return nil, fmt.Errorf("%s: %w", t.nodes[i].name, err)
		}
	}

	lc := loadgen.Config{
		Protocol: t.proto, Sessions: o.Sessions,
		ConnectRate: o.ConnectRate, Token: t.token, Heartbeat: o.ClientHeartbeat,
		PayloadSize: o.Payload, Logger: o.Log,
	}
	if len(urls) == 1 {
		lc.URL = urls[0]
	} else {
		lc.Nodes = urls
	}
	r, err := loadgen.New(lc)
	if err != nil {
		return nil, err
	}
	l.r = r
	fail := func(err error) (*loaded, error) {
		r.Close()
		return nil, err
	}

	cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	cres, err := r.Connect(cctx)
	cancel()
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	fmt.Fprintf(w, "   connect: %d/%d sessions in %v (handshake p50 %v p99 %v max %v)",
		cres.Connected, o.Sessions, cres.Elapsed.Round(time.Millisecond),
		dur(cres.Handshake.P50), dur(cres.Handshake.P99), dur(cres.Handshake.Max))
	if len(cres.Errors) > 0 {
		fmt.Fprintf(w, "; failures: %s", loadgen.FormatCounts(cres.Errors))
	}
	fmt.Fprintln(w)
	if err != nil && cres.Connected == 0 {
		return fail(fmt.Errorf("%s: %w", t.name, err))
	}
	hb := "none"
	if cres.Heartbeat > 0 {
		hb = cres.Heartbeat.String()
	}
	fmt.Fprintf(w, "   client heartbeat: %s\n", hb)

	idle, last, err := idleRSS(ctx, l.pids, o.Settle)
	if err != nil {
		return fail(err)
	}
	if err := t.alive(); err != nil {
		return fail(fmt.Errorf("%s: %w", t.name, err))
	}
	f := &l.f
	f.held = r.Active()
	if f.held > 0 {
		f.perSession = float64(sum(idle)-sum(base)) / float64(f.held)
	}
	fmt.Fprintf(w, "   idle: %d sessions held after %v settle (dropped %d); RSS %s → %s (peak of the settle's second half; %s at its end) = %s per idle session",
		f.held, o.Settle, r.Dropped(), sizeOf(float64(sum(base))), sizeOf(float64(sum(idle))), sizeOf(float64(sum(last))), sizeOf(f.perSession))
	if t.name == "switchboard" && len(l.pids) == 1 && o.Sessions >= TargetSessions {
		fmt.Fprintf(w, "  [target ≤ %s at %d sessions: %s]", sizeOf(targetIdleBytes), TargetSessions,
			verdict(f.perSession <= targetIdleBytes && f.held >= TargetSessions))
	}
	fmt.Fprintln(w)
	if len(l.pids) > 1 {
		parts := make([]string, len(t.nodes))
		for i, n := range t.nodes {
			parts[i] = fmt.Sprintf("%s %s → %s", n.name, sizeOf(float64(base[i])), sizeOf(float64(idle[i])))
		}
		fmt.Fprintf(w, "   idle RSS per node: %s\n", strings.Join(parts, ", "))
	}
	if errs := r.ServerErrors(); len(errs) > 0 {
		fmt.Fprintf(w, "   server errors while idle: %s\n", loadgen.FormatCounts(errs))
	}
	l.m0 = t.watchedCounters(ctx)
	if d := counterDiff(nil, l.m0); d != "" {
		fmt.Fprintf(w, "   server counters so far: %s\n", d)
	}
	return l, nil
}

// relay runs relay run number run and prints it.
func (l *loaded) relay(ctx context.Context, o SignalingConfig, w io.Writer, run int) error {
	if err := waitIdle(ctx, o.WaitIdle); err != nil {
		return err
	}
	cpu0 := processCPU(l.pids)
	self0, _ := proc.SelfCPU()
	busy0, _, busyErr0 := proc.MachineBusy()
	res, err := l.r.Relay(ctx, o.Rate, o.Duration)
	cpu1 := processCPU(l.pids)
	self1, _ := proc.SelfCPU()
	busy1, _, busyErr1 := proc.MachineBusy()
	if err != nil {
		return fmt.Errorf("%s relay: %w", l.t.name, err)
	}
	cpu := make([]time.Duration, len(l.pids))
	for k := range cpu {
		cpu[k] = cpu1[k] - cpu0[k]
	}
	// What the machine did besides this bench's processes: other jobs on a
	// shared machine (and the kernel's loopback work, charged to no
	// process). -1: unknown.
	other := time.Duration(-1)
	if busyErr0 == nil && busyErr1 == nil {
		other = max(busy1-busy0-sum(cpu)-(self1-self0), 0)
	}
	l.f.relays = append(l.f.relays, res)
	l.f.cpu = append(l.f.cpu, sum(cpu))
	relayLine(w, l.tag, l.t.name, run, o.Rate, res, cpu, self1-self0, other)
	m1 := l.t.watchedCounters(ctx)
	if d := counterDiff(l.m0, m1); d != "" {
		fmt.Fprintf(w, "   %sserver counters during run %d: %s\n", l.tag, run, d)
	}
	l.m0 = m1
	return nil
}

// handoff runs the handoff phase, if configured, and prints it.
func (l *loaded) handoff(ctx context.Context, o SignalingConfig, w io.Writer) error {
	if o.Handoffs <= 0 || l.t.proto != loadgen.Switchboard {
		return nil
	}
	if err := waitIdle(ctx, o.WaitIdle); err != nil {
		return err
	}
	res, err := l.r.Handoff(ctx, loadgen.HandoffConfig{Count: o.Handoffs, Queued: o.HandoffQueued})
	if err != nil {
		return fmt.Errorf("%s handoff: %w", l.t.name, err)
	}
	l.f.handoff = &res
	handoffLine(w, l.tag, len(l.pids), res)
	m1 := l.t.watchedCounters(ctx)
	if d := counterDiff(l.m0, m1); d != "" {
		fmt.Fprintf(w, "   %sserver counters during handoff: %s\n", l.tag, d)
	}
	l.m0 = m1
	return nil
}

// idleRSS waits out the settle, reading each pid's RSS every second of its
// second half, and returns the peak of those readings and the last one, per
// pid. Idle RSS is not flat: keepalive garbage grows the heap to the GC's
// goal, then a cycle frees it and the runtime keeps the pages. One reading
// early in the settle caught the heap on its way up (12 s read ~10% under the
// steady state); the peak of the second half of a settle that spans several
// ping intervals is the steady state.
func idleRSS(ctx context.Context, pids []int, settle time.Duration) (peak, last []int64, err error) {
	deadline := time.Now().Add(settle)
	if err := sleep(ctx, settle/2); err != nil {
		return nil, nil, err
	}
	peak, last = make([]int64, len(pids)), make([]int64, len(pids))
	for {
		for i, pid := range pids {
			if last[i], err = proc.RSS(pid); err != nil {
				return nil, nil, err
			}
			peak[i] = max(peak[i], last[i])
		}
		left := time.Until(deadline)
		if left <= 0 {
			return peak, last, nil
		}
		if err := sleep(ctx, min(left, time.Second)); err != nil {
			return nil, nil, err
		}
	}
}

// processCPU is each pid's CPU time so far (0 for one that cannot be read).
func processCPU(pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		out[i], _ = proc.ProcessCPU(pid)
	}
	return out
}

func sum[T int64 | time.Duration](xs []T) T {
	var s T
	for _, x := range xs {
		s += x
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
