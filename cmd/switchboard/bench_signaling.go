package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

// Targets of issue 3 on the reference 2-core machine.
const (
	sigTargetSessions      = 10_000
	sigTargetIdleBytes     = 16 << 10
	sigTargetP99           = 5 * time.Millisecond
	sigTargetRate          = 20_000
	sigServerReadyTimeout  = 20 * time.Second // a cold start binds HTTP + TURN in well under 1 s
	sigServerStopTimeout   = 10 * time.Second // DRAIN_TIMEOUT is set to 1 s for the child
	sigPeerJSHeartbeat     = 5 * time.Second  // the peerjs browser client's pingInterval
	sigFDMargin            = 64               // descriptors the bench needs besides sessions
	sigHubMessageRateLimit = 50               // signaling.Config.MessageRate default, per session
)

// benchSignaling is `switchboard bench signaling`: opens N WebSocket
// sessions against a signaling server running as a separate process,
// measures its RSS per idle session, then relays signals between pairs at
// a fixed rate and reports throughput and one-way latency. With
// --peerjs-dir it runs the same load against PeerJS's server and prints
// the ratios.
func benchSignaling(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench signaling", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		sessions     = fs.Int("sessions", sigTargetSessions, "sessions to open (even); pairs relay to each other")
		rate         = fs.Float64("rate", sigTargetRate, "signals per second in total during the relay phase (open loop)")
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
	)
	var serverEnv sigKVList
	fs.Var(&serverEnv, "server-env", "extra KEY=VALUE for the Switchboard server (repeatable), e.g. GOGC=50")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: switchboard bench signaling [flags]\n\n"+
			"Starts `switchboard serve` on 127.0.0.1 as a child process (or attaches with --url/--pid),\n"+
			"opens --sessions WebSocket sessions, reads the server's RSS while idle, then relays\n"+
			"signals between pairs at --rate for --duration and reports msg/s and latency.\n"+
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
	}
	if lim, err := sigFDLimit(); err == nil && uint64(*sessions+sigFDMargin) > lim {
		return fmt.Errorf("--sessions %d needs %d file descriptors, RLIMIT_NOFILE is %d", *sessions, *sessions+sigFDMargin, lim)
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

	o := sigOptions{
		sessions: *sessions, rate: *rate, duration: *duration, runs: *runs,
		connectRate: *connectRate, connectTimeout: *connectTime, settle: *settle,
		clientHB: *clientHB, payload: *payload,
	}
	if *verbose {
		o.log = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	logDir := *serverLog
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

	fmt.Fprintf(stdout, "switchboard bench signaling  %s  %s/%s  %d CPUs  (client and server are separate processes on 127.0.0.1;\n"+
		"  the CPUs are shared with the client and anything else running: figures include that noise)\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(stdout, "host: load average %s, this process's nice %s (servers inherit it)\n", sigLoadAvg(), sigNice())
	fmt.Fprintf(stdout, "load: %d sessions (%d pairs, each in its own room), connect %.0f/s, settle %v, relay %.0f signals/s × %v × %d run(s), payload %d B\n",
		o.sessions, o.sessions/2, o.connectRate, o.settle, o.rate, o.duration, o.runs, o.payload)
	if per := o.rate / float64(o.sessions); per > 0.9*sigHubMessageRateLimit {
		fmt.Fprintf(stdout, "WARNING: %.1f signals/s per session is near the hub's default per-session limit (%d/s): expect rate-limited errors\n", per, sigHubMessageRateLimit)
	}

	var sb, pj *sigFigures
	if !*skipSB {
		t := sigTarget{name: "switchboard", proto: loadgen.Switchboard}
		if *attachURL != "" {
			t.wsURL, t.pid = *attachURL, *attachPID
			if u, err := url.Parse(*attachURL); err == nil {
				t.metricsURL = "http://" + u.Host + "/metrics"
			}
			t.note = "attached to pid " + strconv.Itoa(t.pid) + " (its own ping interval applies)"
			if *attachSecret != "" {
				t.token = sigTokens([]byte(*attachSecret))
			}
		} else {
			exe := *bin
			if exe == "" {
				var err error
				if exe, err = os.Executable(); err != nil {
					return fmt.Errorf("find this binary: %w", err)
				}
			}
			stop, err := sigStartSwitchboard(ctx, &t, exe, o, *pingInterval, serverEnv, logDir)
			if err != nil {
				return err
			}
			// Stopped before PeerJS starts: its sessions sit in their resume
			// grace for a while and must not take CPU from the next server.
			defer stop()
		}
		f, err := sigRun(ctx, t, o, stdout)
		if t.proc != nil {
			t.proc.stop(sigServerStopTimeout)
		}
		if err != nil {
			return err
		}
		sb = &f
	}
	if *peerjsDir != "" {
		t := sigTarget{name: "peerjs", proto: loadgen.PeerJS}
		stop, err := sigStartPeerJS(ctx, &t, *nodeBin, *peerjsDir, o, logDir)
		if err != nil {
			return err
		}
		f, err := sigRun(ctx, t, o, stdout)
		stop()
		if err != nil {
			return err
		}
		pj = &f
	}
	sigSummary(stdout, sb, pj)
	return nil
}

type sigOptions struct {
	sessions       int
	rate           float64
	duration       time.Duration
	runs           int
	connectRate    float64
	connectTimeout time.Duration
	settle         time.Duration
	clientHB       time.Duration
	payload        int
	log            *slog.Logger // nil: quiet
}

// sigTarget is one server under load.
type sigTarget struct {
	name  string
	proto loadgen.Protocol
	wsURL string
	pid   int
	token func(int) string
	note  string   // how it was started, printed with its figures
	proc  *sigProc // nil when attached
	// metricsURL is Switchboard's /metrics, scraped for disconnect
	// reasons; empty: none.
	metricsURL string
}

// sigFigures are one server's results.
type sigFigures struct {
	name       string
	held       int     // sessions connected when idle RSS was read
	perSession float64 // idle RSS growth per held session, bytes
	relays     []loadgen.RelayResult
}

// sigRun drives one server through connect, idle and relay phases.
func sigRun(ctx context.Context, t sigTarget, o sigOptions, w io.Writer) (sigFigures, error) {
	f := sigFigures{name: t.name}
	fmt.Fprintf(w, "\n== %s  pid %d  %s\n", t.name, t.pid, t.wsURL)
	if t.note != "" {
		fmt.Fprintf(w, "   %s\n", t.note)
	}
	base, err := loadgen.RSS(t.pid)
	if err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}

	r, err := loadgen.New(loadgen.Config{
		URL: t.wsURL, Protocol: t.proto, Sessions: o.sessions,
		ConnectRate: o.connectRate, Token: t.token, Heartbeat: o.clientHB,
		PayloadSize: o.payload, Logger: o.log,
	})
	if err != nil {
		return f, err
	}
	defer r.Close()

	cctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	cres, err := r.Connect(cctx)
	cancel()
	if ctx.Err() != nil {
		return f, ctx.Err()
	}
	fmt.Fprintf(w, "   connect: %d/%d sessions in %v (handshake p50 %v p99 %v max %v)",
		cres.Connected, o.sessions, cres.Elapsed.Round(time.Millisecond),
		sigDur(cres.Handshake.P50), sigDur(cres.Handshake.P99), sigDur(cres.Handshake.Max))
	if len(cres.Errors) > 0 {
		fmt.Fprintf(w, "; failures: %s", loadgen.FormatCounts(cres.Errors))
	}
	fmt.Fprintln(w)
	if err != nil && cres.Connected == 0 {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}
	hb := "none"
	if cres.Heartbeat > 0 {
		hb = cres.Heartbeat.String()
	}
	fmt.Fprintf(w, "   client heartbeat: %s\n", hb)

	idle, last, err := sigIdleRSS(ctx, t.pid, o.settle)
	if err != nil {
		return f, err
	}
	if err := t.proc.alive(); err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}
	f.held = r.Active()
	if f.held > 0 {
		f.perSession = float64(idle-base) / float64(f.held)
	}
	fmt.Fprintf(w, "   idle: %d sessions held after %v settle (dropped %d); RSS %s → %s (peak of the settle's second half; %s at its end) = %s per idle session",
		f.held, o.settle, r.Dropped(), sigBytes(float64(base)), sigBytes(float64(idle)), sigBytes(float64(last)), sigBytes(f.perSession))
	if t.name == "switchboard" && o.sessions >= sigTargetSessions {
		fmt.Fprintf(w, "  [target ≤ %s at %d sessions: %s]", sigBytes(sigTargetIdleBytes), sigTargetSessions,
			sigVerdict(f.perSession <= sigTargetIdleBytes && f.held >= sigTargetSessions))
	}
	fmt.Fprintln(w)
	if errs := r.ServerErrors(); len(errs) > 0 {
		fmt.Fprintf(w, "   server errors while idle: %s\n", loadgen.FormatCounts(errs))
	}
	m0 := sigScrape(ctx, t.metricsURL)
	if d := sigMetricDiff(nil, m0); d != "" {
		fmt.Fprintf(w, "   server counters so far: %s\n", d)
	}

	for i := range o.runs {
		cpu0, _ := loadgen.CPUTime(t.pid)
		self0 := sigSelfCPU()
		res, err := r.Relay(ctx, o.rate, o.duration)
		cpu1, _ := loadgen.CPUTime(t.pid)
		selfCPU := sigSelfCPU() - self0
		if err != nil {
			return f, fmt.Errorf("%s relay: %w", t.name, err)
		}
		f.relays = append(f.relays, res)
		cpu := (cpu1 - cpu0).Seconds()
		fmt.Fprintf(w, "   relay %d: %d pairs, target %.0f/s: sent %d delivered %d lost %d; %.0f msg/s delivered; "+
			"latency p50 %v p90 %v p99 %v p99.9 %v max %v; send lag p99 %v; CPU server %.0f%% client %.0f%% (of one core)",
			i+1, res.Senders/2, res.TargetRate, res.Sent, res.Delivered, res.Lost, res.Rate,
			sigDur(res.Latency.P50), sigDur(res.Latency.P90), sigDur(res.Latency.P99),
			sigDur(res.Latency.P999), sigDur(res.Latency.Max), sigDur(res.SendLag.P99),
			100*cpu/max(res.Window.Seconds(), 1e-9), 100*selfCPU.Seconds()/max(res.Window.Seconds(), 1e-9))
		if res.Skipped+res.Abandoned+res.WriteErrors > 0 || res.Dropped > 0 || len(res.ServerErrors) > 0 {
			fmt.Fprintf(w, "; not sent: %d (peer gone) + %d (schedule overran); write errors %d; sessions dropped %d; server errors %s",
				res.Skipped, res.Abandoned, res.WriteErrors, res.Dropped, loadgen.FormatCounts(res.ServerErrors))
		}
		if t.name == "switchboard" && o.rate >= sigTargetRate {
			ok := res.Latency.P99 < sigTargetP99 && res.Rate >= 0.98*sigTargetRate && res.Lost == 0
			fmt.Fprintf(w, "  [target p99 < %v at %d msg/s, none lost: %s]", sigTargetP99, sigTargetRate, sigVerdict(ok))
		}
		fmt.Fprintln(w)
		m1 := sigScrape(ctx, t.metricsURL)
		if d := sigMetricDiff(m0, m1); d != "" {
			fmt.Fprintf(w, "   server counters during run %d: %s\n", i+1, d)
		}
		m0 = m1
	}
	if err := t.proc.alive(); err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}
	return f, nil
}

// sigSummary prints the figures side by side and the ratios.
func sigSummary(w io.Writer, sb, pj *sigFigures) {
	fmt.Fprintf(w, "\n== summary (median over relay runs)\n")
	line := func(f *sigFigures) {
		if f == nil {
			return
		}
		res := sigMedian(f.relays)
		fmt.Fprintf(w, "   %-11s sessions held %5d  RSS/idle session %9s  msg/s %7.0f  p50 %8v  p99 %8v  lost %d\n",
			f.name, f.held, sigBytes(f.perSession), res.Rate, sigDur(res.Latency.P50), sigDur(res.Latency.P99), res.Lost)
	}
	line(sb)
	line(pj)
	if sb == nil || pj == nil {
		return
	}
	a, b := sigMedian(sb.relays), sigMedian(pj.relays)
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

// sigMedian picks the run with the median p99.
func sigMedian(rs []loadgen.RelayResult) loadgen.RelayResult {
	if len(rs) == 0 {
		return loadgen.RelayResult{}
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b loadgen.RelayResult) int { return int(a.Latency.P99 - b.Latency.P99) })
	return s[len(s)/2]
}

// sigStartSwitchboard starts exe serve on a free loopback port with an auth
// secret (open mode rate-limits credentials per client IP, and every bench
// session comes from 127.0.0.1) and fills t. stop ends the process.
func sigStartSwitchboard(ctx context.Context, t *sigTarget, exe string, o sigOptions, ping time.Duration, extra sigKVList, logDir string) (stop func(), err error) {
	port, err := sigFreePort()
	if err != nil {
		return nil, err
	}
	authSecret := sigRandomHex(32)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env := []string{
		"SWITCHBOARD_HTTP_ADDR=" + addr,
		"SWITCHBOARD_TURN_ADDR=127.0.0.1:0",
		"SWITCHBOARD_PUBLIC_IP=127.0.0.1", // no detection at start
		"SWITCHBOARD_TURN_SECRET=" + sigRandomHex(16),
		"SWITCHBOARD_AUTH_SECRET=" + authSecret,
		// The cap counts sessions in resume grace too; leave room for a re-run.
		"SWITCHBOARD_MAX_SESSIONS=" + strconv.Itoa(2*o.sessions+100),
		"SWITCHBOARD_PING_INTERVAL=" + ping.String(),
		"SWITCHBOARD_DRAIN_TIMEOUT=1s",
		"SWITCHBOARD_LOG_LEVEL=warn",
	}
	env = append(env, extra...)
	p, err := sigStartProc(exe, []string{"serve"}, sigChildEnv(env), filepath.Join(logDir, "switchboard.log"))
	if err != nil {
		return nil, fmt.Errorf("start switchboard: %w", err)
	}
	if err := p.waitHTTP(ctx, "http://"+addr+"/readyz", sigServerReadyTimeout); err != nil {
		p.stop(sigServerStopTimeout)
		return nil, fmt.Errorf("switchboard: %w", err)
	}
	t.wsURL = "ws://" + addr + "/ws"
	t.metricsURL = "http://" + addr + "/metrics"
	t.pid = p.cmd.Process.Pid
	t.proc = p
	t.token = sigTokens([]byte(authSecret))
	t.note = fmt.Sprintf("started `%s serve`: SWITCHBOARD_PING_INTERVAL=%v (keepalive pings run during settle), AUTH_SECRET set (hello carries a JWT)", filepath.Base(exe), ping)
	if len(extra) > 0 {
		t.note += ", " + strings.Join(extra, " ")
	}
	return func() { p.stop(sigServerStopTimeout) }, nil
}

// sigStartPeerJS starts PeerJS's CLI from dir/node_modules/peer on a free
// loopback port and fills t.
func sigStartPeerJS(ctx context.Context, t *sigTarget, node, dir string, o sigOptions, logDir string) (stop func(), err error) {
	cli := filepath.Join(dir, "node_modules", "peer", "dist", "bin", "peerjs.js")
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("--peerjs-dir: %w (run `npm install peer` there)", err)
	}
	version := "?"
	if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "peer", "package.json")); err == nil {
		if i := bytes.Index(b, []byte(`"version"`)); i >= 0 {
			rest := b[i+len(`"version"`):]
			if q := bytes.IndexByte(rest, '"'); q >= 0 {
				if e := bytes.IndexByte(rest[q+1:], '"'); e >= 0 {
					version = string(rest[q+1 : q+1+e])
				}
			}
		}
	}
	port, err := sigFreePort()
	if err != nil {
		return nil, err
	}
	args := []string{cli,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		// Default 5000 would refuse half of the sessions.
		"--concurrent_limit", strconv.Itoa(2*o.sessions + 100),
	}
	p, err := sigStartProc(node, args, sigChildEnv(nil), filepath.Join(logDir, "peerjs.log"))
	if err != nil {
		return nil, fmt.Errorf("start peerjs: %w", err)
	}
	if err := p.waitHTTP(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/", sigServerReadyTimeout); err != nil {
		p.stop(sigServerStopTimeout)
		return nil, fmt.Errorf("peerjs: %w", err)
	}
	t.wsURL = "ws://127.0.0.1:" + strconv.Itoa(port) + "/peerjs"
	t.pid = p.cmd.Process.Pid
	t.proc = p
	t.note = fmt.Sprintf("started peer %s CLI (node %s) with --concurrent_limit %d; keepalive is client-driven: HEARTBEAT every %v unless --client-heartbeat",
		version, sigNodeVersion(node), 2*o.sessions+100, sigPeerJSHeartbeat)
	return func() { p.stop(sigServerStopTimeout) }, nil
}

func sigNodeVersion(node string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// sigTokens mints one JWT per session with the hub's own minting function.
func sigTokens(secret []byte) func(int) string {
	return func(i int) string {
		tok, err := signaling.MintToken(secret, "bench-"+strconv.Itoa(i), "", time.Hour)
		if err != nil {
			return "" // the hello then fails with unauthorized, which is counted
		}
		return tok
	}
}

// sigChildEnv is this process's environment without SWITCHBOARD_ variables
// (a stray one in the shell must not change the measured server), plus env.
func sigChildEnv(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// sigProc is a server child process. Its output goes to a log file whose
// tail is shown when it fails.
type sigProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

func sigStartProc(exe string, args, env []string, logPath string) (*sigProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &sigProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // owned by p: stop waits for done
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// alive reports an error with the log tail if the process has exited.
// A nil p (attached server) is always alive.
func (p *sigProc) alive() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("server exited (%v); log tail:\n%s", p.waitErr, p.tail())
	default:
		return nil
	}
}

// waitHTTP polls url until it answers 200, the process exits or timeout.
func (p *sigProc) waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := p.alive(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sigSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not ready after %v; log tail:\n%s", u, timeout, p.tail())
}

// stop sends SIGTERM, waits up to timeout, then kills.
func (p *sigProc) stop(timeout time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *sigProc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// sigWatched are the Switchboard counters that explain lost or late
// signals; sigScrape keys them as name or name{label=value}.
var sigWatched = map[string]bool{
	"switchboard_signaling_disconnects_total":    true,
	"switchboard_signaling_slow_consumers_total": true,
	"switchboard_signaling_rate_limited_total":   true,
	"switchboard_signaling_undeliverable_total":  true,
}

// sigScrape reads the watched counters from a Switchboard /metrics page;
// nil when there is none or it cannot be read.
func sigScrape(ctx context.Context, u string) map[string]float64 {
	if u == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for name, fam := range fams {
		if !sigWatched[name] {
			continue
		}
		short := strings.TrimSuffix(strings.TrimPrefix(name, "switchboard_signaling_"), "_total")
		for _, m := range fam.GetMetric() {
			key := short
			for _, lp := range m.GetLabel() {
				key += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// sigMetricDiff renders the counters that grew from a to b.
func sigMetricDiff(a, b map[string]float64) string {
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

// sigLoadAvg is the 1/5/15-minute load average, "?" if unknown.
func sigLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sigNice is this process's nice value, "?" if unknown.
func sigNice() string {
	// The raw getpriority syscall returns 20 - nice on Linux.
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return "?"
	}
	return strconv.Itoa(20 - p)
}

// sigSelfCPU is this process's user+system CPU time so far.
func sigSelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sigFDLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	// The Go runtime already raised the soft limit to the hard one at start.
	return l.Cur, nil
}

func sigFreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func sigRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sigIdleRSS waits out the settle, reading pid's RSS every second of its second
// half, and returns the peak of those readings and the last one. Idle RSS is not
// flat: keepalive garbage grows the heap to the GC's goal, then a cycle frees it
// and the runtime keeps the pages. One reading early in the settle caught the
// heap on its way up (12 s read ~10% under the steady state); the peak of the
// second half of a settle that spans several ping intervals is the steady state.
func sigIdleRSS(ctx context.Context, pid int, settle time.Duration) (peak, last int64, err error) {
	deadline := time.Now().Add(settle)
	if err := sigSleep(ctx, settle/2); err != nil {
		return 0, 0, err
	}
	for {
		if last, err = loadgen.RSS(pid); err != nil {
			return 0, 0, err
		}
		peak = max(peak, last)
		left := time.Until(deadline)
		if left <= 0 {
			return peak, last, nil
		}
		if err := sigSleep(ctx, min(left, time.Second)); err != nil {
			return 0, 0, err
		}
	}
}

func sigSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func sigBytes(b float64) string {
	switch {
	case b >= 1<<20 || b <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10 || b <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func sigDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Microsecond).String()
}

func sigVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// sigKVList collects repeated KEY=VALUE flags.
type sigKVList []string

func (l *sigKVList) String() string { return strings.Join(*l, " ") }

func (l *sigKVList) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	*l = append(*l, s)
	return nil
}
