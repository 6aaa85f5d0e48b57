package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strconv"
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
}

// target is one server under load.
type target struct {
	name  string
	proto loadgen.Protocol
	wsURL string
	pid   int
	token func(int) string
	note  string        // how it was started, printed with its figures
	proc  *proc.Process // nil when attached
	// metricsURL is Switchboard's /metrics, scraped for disconnect
	// reasons; empty: none.
	metricsURL string
}

// alive is nil for an attached server, whose process is not ours.
func (t target) alive() error {
	if t.proc == nil {
		return nil
	}
	return t.proc.Alive()
}

// figures are one server's results.
type figures struct {
	name       string
	held       int     // sessions connected when idle RSS was read
	perSession float64 // idle RSS growth per held session, bytes
	relays     []loadgen.RelayResult
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

	var sb, pj *figures
	if !cfg.SkipSwitchboard {
		t := target{name: "switchboard", proto: loadgen.Switchboard}
		if cfg.AttachURL != "" {
			t.wsURL, t.pid = cfg.AttachURL, cfg.AttachPID
			if u, err := url.Parse(cfg.AttachURL); err == nil {
				t.metricsURL = "http://" + u.Host + "/metrics"
			}
			t.note = "attached to pid " + strconv.Itoa(t.pid) + " (its own ping interval applies)"
			if cfg.AttachSecret != "" {
				t.token = tokens([]byte(cfg.AttachSecret))
			}
		} else {
			var err error
			if t, err = startSignalingSwitchboard(ctx, cfg, logDir); err != nil {
				return err
			}
			// Stopped before PeerJS starts: its sessions sit in their resume
			// grace for a while and must not take CPU from the next server.
			defer t.proc.Stop()
		}
		f, err := runSignaling(ctx, t, cfg, w)
		if t.proc != nil {
			_ = t.proc.Stop()
		}
		if err != nil {
			return err
		}
		sb = &f
	}
	if cfg.PeerJSDir != "" {
		t, err := startPeerJS(ctx, cfg, logDir)
		if err != nil {
			return err
		}
		f, err := runSignaling(ctx, t, cfg, w)
		_ = t.proc.Stop()
		if err != nil {
			return err
		}
		pj = &f
	}
	printSummary(w, sb, pj)
	return nil
}

// runSignaling drives one server through connect, idle and relay phases.
func runSignaling(ctx context.Context, t target, o SignalingConfig, w io.Writer) (figures, error) {
	f := figures{name: t.name}
	fmt.Fprintf(w, "\n== %s  pid %d  %s\n", t.name, t.pid, t.wsURL)
	if t.note != "" {
		fmt.Fprintf(w, "   %s\n", t.note)
	}
	base, err := proc.RSS(t.pid)
	if err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}

	r, err := loadgen.New(loadgen.Config{
		URL: t.wsURL, Protocol: t.proto, Sessions: o.Sessions,
		ConnectRate: o.ConnectRate, Token: t.token, Heartbeat: o.ClientHeartbeat,
		PayloadSize: o.Payload, Logger: o.Log,
	})
	if err != nil {
		return f, err
	}
	defer r.Close()

	cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	cres, err := r.Connect(cctx)
	cancel()
	if ctx.Err() != nil {
		return f, ctx.Err()
	}
	fmt.Fprintf(w, "   connect: %d/%d sessions in %v (handshake p50 %v p99 %v max %v)",
		cres.Connected, o.Sessions, cres.Elapsed.Round(time.Millisecond),
		dur(cres.Handshake.P50), dur(cres.Handshake.P99), dur(cres.Handshake.Max))
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

	idle, last, err := idleRSS(ctx, t.pid, o.Settle)
	if err != nil {
		return f, err
	}
	if err := t.alive(); err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}
	f.held = r.Active()
	if f.held > 0 {
		f.perSession = float64(idle-base) / float64(f.held)
	}
	fmt.Fprintf(w, "   idle: %d sessions held after %v settle (dropped %d); RSS %s → %s (peak of the settle's second half; %s at its end) = %s per idle session",
		f.held, o.Settle, r.Dropped(), sizeOf(float64(base)), sizeOf(float64(idle)), sizeOf(float64(last)), sizeOf(f.perSession))
	if t.name == "switchboard" && o.Sessions >= TargetSessions {
		fmt.Fprintf(w, "  [target ≤ %s at %d sessions: %s]", sizeOf(targetIdleBytes), TargetSessions,
			verdict(f.perSession <= targetIdleBytes && f.held >= TargetSessions))
	}
	fmt.Fprintln(w)
	if errs := r.ServerErrors(); len(errs) > 0 {
		fmt.Fprintf(w, "   server errors while idle: %s\n", loadgen.FormatCounts(errs))
	}
	m0 := watchedCounters(ctx, t.metricsURL)
	if d := counterDiff(nil, m0); d != "" {
		fmt.Fprintf(w, "   server counters so far: %s\n", d)
	}

	for i := range o.Runs {
		cpu0, _ := proc.ProcessCPU(t.pid)
		self0, _ := proc.SelfCPU()
		res, err := r.Relay(ctx, o.Rate, o.Duration)
		cpu1, _ := proc.ProcessCPU(t.pid)
		self1, _ := proc.SelfCPU()
		if err != nil {
			return f, fmt.Errorf("%s relay: %w", t.name, err)
		}
		f.relays = append(f.relays, res)
		relayLine(w, t.name, i+1, o.Rate, res, cpu1-cpu0, self1-self0)
		m1 := watchedCounters(ctx, t.metricsURL)
		if d := counterDiff(m0, m1); d != "" {
			fmt.Fprintf(w, "   server counters during run %d: %s\n", i+1, d)
		}
		m0 = m1
	}
	if err := t.alive(); err != nil {
		return f, fmt.Errorf("%s: %w", t.name, err)
	}
	return f, nil
}

// idleRSS waits out the settle, reading pid's RSS every second of its second
// half, and returns the peak of those readings and the last one. Idle RSS is not
// flat: keepalive garbage grows the heap to the GC's goal, then a cycle frees it
// and the runtime keeps the pages. One reading early in the settle caught the
// heap on its way up (12 s read ~10% under the steady state); the peak of the
// second half of a settle that spans several ping intervals is the steady state.
func idleRSS(ctx context.Context, pid int, settle time.Duration) (peak, last int64, err error) {
	deadline := time.Now().Add(settle)
	if err := sleep(ctx, settle/2); err != nil {
		return 0, 0, err
	}
	for {
		if last, err = proc.RSS(pid); err != nil {
			return 0, 0, err
		}
		peak = max(peak, last)
		left := time.Until(deadline)
		if left <= 0 {
			return peak, last, nil
		}
		if err := sleep(ctx, min(left, time.Second)); err != nil {
			return 0, 0, err
		}
	}
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
