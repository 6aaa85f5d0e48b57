package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
)

// natEvent is one JSON line a role process writes to its stdout for the test.
type natEvent struct {
	Ev   string `json:"ev"`
	Name string `json:"name,omitempty"` // client name

	// ready (client): a welcome arrived.
	ID      string   `json:"id,omitempty"`
	Resumed bool     `json:"resumed,omitempty"`
	Conn    int      `json:"conn,omitempty"` // 1 for the first connection, +1 per reconnect
	ICE     []string `json:"ice,omitempty"`  // the STUN/TURN URLs of the welcome

	// closed (client): the signaling connection ended.
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`

	// peers (client): the names of the other peers in the room, sorted.
	Peers []string `json:"peers,omitempty"`

	// media (client): this side of a call receives RTP. stats (client): RTP so far.
	// ice-failed (client): ICE gave up on the call; Local lists the candidate types
	// this side gathered.
	Call       string `json:"call,omitempty"`
	Peer       string `json:"peer,omitempty"` // remote peer's name
	RTP        int    `json:"rtp,omitempty"`  // packets received so far
	Local      string `json:"local,omitempty"`
	Remote     string `json:"remote,omitempty"`
	LocalAddr  string `json:"localAddr,omitempty"`
	RemoteAddr string `json:"remoteAddr,omitempty"`

	// probe (client): a TCP dial result.
	Addr string `json:"addr,omitempty"`
	OK   bool   `json:"ok,omitempty"`

	// metrics (server): counters and gauges of its /metrics, "name{label=value}" → value.
	Metrics map[string]float64 `json:"metrics,omitempty"`

	// exit (server): run returned this status.
	Status int `json:"status,omitempty"`

	Err string `json:"err,omitempty"` // error: what failed
}

// natCommand is one JSON line the test writes to a client role's stdin.
type natCommand struct {
	Cmd  string `json:"cmd"`            // client: "call", "hangup", "stats", "probe"; server: "metrics"
	To   string `json:"to,omitempty"`   // call: callee's name
	Call string `json:"call,omitempty"` // call, hangup, stats: call id
	Addr string `json:"addr,omitempty"` // probe: host:port to dial over TCP

	// Direct (call): use no TURN server, only STUN; both peers then have host and srflx
	// candidates only, and the call can connect only over a direct path.
	Direct bool `json:"direct,omitempty"`
}

// natProc is a re-executed test binary running one role inside a namespace.
type natProc struct {
	t        testing.TB
	label    string
	role     string
	name     string   // client role: its display name
	peers    []string // client role: the last peer list it reported; owned by the test goroutine
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	events   chan natEvent // closed when stdout ends
	done     chan struct{} // closed when the process has been waited for
	err      error         // Wait's result; read after done
	raced    atomic.Bool   // the race detector reported a data race on stderr
	waited   bool          // the test checked the exit itself (wait); owned by the test goroutine
	stdinM   sync.Mutex
	stopOnce sync.Once
}

// natProcEventBuffer bounds the events a role may have pending before the test reads
// them; a test run produces a few dozen, so the reader never blocks in practice.
const natProcEventBuffer = 256

// startNATProc starts this test binary as role inside namespace ns with extra env.
// t.Cleanup stops it (see stop) unless the test did.
func startNATProc(t testing.TB, n *natNet, ns, label, role string, env map[string]string) *natProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	// `ip netns exec` enters the namespace and execs the binary (no fork), so the
	// process we signal is the role itself. -test.run=^$ makes sure that, should the
	// role variable somehow not arrive, the child runs no test instead of recursing.
	cmd := exec.Command("ip", "netns", "exec", n.name(ns), exe, "-test.run=^$")
	cmd.Env = natChildEnv(role, env)
	p := &natProc{t: t, label: label, role: role, cmd: cmd, events: make(chan natEvent, natProcEventBuffer), done: make(chan struct{})}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("%s: stdin pipe: %v", label, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: stdout pipe: %v", label, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%s: stderr pipe: %v", label, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", label, err)
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev natEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Logf("%s stdout: %s", label, sc.Bytes())
				continue
			}
			t.Logf("%s event: %s", label, sc.Bytes())
			select {
			case p.events <- ev:
			default:
				// Never block: a blocked reader would keep the process from being
				// waited for, and stop from returning.
				t.Errorf("%s: more than %d unread events; dropped %s", label, natProcEventBuffer, sc.Bytes())
			}
		}
	})
	readers.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "WARNING: DATA RACE") {
				p.raced.Store(true)
			}
			t.Logf("%s: %s", label, sc.Text())
		}
	})
	go func() {
		// Pipes must be drained before Wait (os/exec rule).
		readers.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// stop ends the role and checks it ended well; it runs once, from the test or from
// t.Cleanup. A clean stop, and a clean exit status, are part of what is tested: every
// role ends at stdin EOF (not a signal, which could race its exit); TestNAT sends the
// server a real SIGTERM where that is what it tests. Under -race a child that saw a
// race exits 66 and has printed the report to stderr (logged).
func (p *natProc) stop() {
	p.stopOnce.Do(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(natStopTimeout):
			p.signal(syscall.SIGKILL)
			<-p.done
			p.t.Errorf("%s: still running %v after being told to stop; killed", p.label, natStopTimeout)
			return
		}
		if p.err != nil && !p.waited {
			p.t.Errorf("%s: %v", p.label, p.err)
		}
		if p.raced.Load() {
			p.t.Errorf("%s: the race detector reported a data race (see its log above)", p.label)
		}
	})
}

// natStopTimeout bounds a role's clean stop at the end of the test: the server then has
// no allocation left to drain (natDrainTimeout caps it anyway) and clients only close
// their sockets.
const natStopTimeout = 15 * time.Second

// natChildEnv is the environment of a role process: ours minus every SWITCHBOARD_
// variable (a developer's own settings must not leak into the simulated server) and
// every proxy variable (a proxy is unreachable from the namespaces, and no traffic may
// leave them anyway), plus the role and env.
func natChildEnv(role string, env map[string]string) []string {
	extra := []string{envTestRole + "=" + role}
	for k, v := range env {
		extra = append(extra, k+"="+v)
	}
	return proc.ChildEnv(extra...)
}

func (p *natProc) signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig) // it may have exited since; Wait reports that
	}
}

// send writes one command to the role's stdin.
func (p *natProc) send(c natCommand) {
	p.t.Helper()
	b, _ := json.Marshal(c)
	p.stdinM.Lock()
	defer p.stdinM.Unlock()
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: send %s: %v", p.label, b, err)
	}
}

// errNATProcExited is returned by waitEvent when the role ended before the event.
var errNATProcExited = errors.New("process exited")

// waitEvent returns the first event for which match is true, discarding the others
// (they are logged as they arrive). An "error" event from a client fails the wait.
func (p *natProc) waitEvent(ctx context.Context, what string, timeout time.Duration, match func(natEvent) bool) (natEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return natEvent{}, fmt.Errorf("%s: waiting for %s: %w", p.label, what, errNATProcExited)
			}
			if ev.Ev == "peers" {
				p.peers = ev.Peers
			}
			if match(ev) {
				return ev, nil
			}
			if ev.Ev == "error" {
				return ev, fmt.Errorf("%s: waiting for %s: role reported: %s", p.label, what, ev.Err)
			}
		case <-ctx.Done():
			return natEvent{}, fmt.Errorf("%s: waiting for %s: %w", p.label, what, context.Cause(ctx))
		}
	}
}

// mustEvent is waitEvent failing the test.
func (p *natProc) mustEvent(ctx context.Context, what string, timeout time.Duration, match func(natEvent) bool) natEvent {
	p.t.Helper()
	ev, err := p.waitEvent(ctx, what, timeout, match)
	if err != nil {
		p.t.Fatal(err)
	}
	return ev
}

// wait waits up to timeout for the process to exit and returns Wait's error.
func (p *natProc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		p.waited = true
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v", p.label, timeout)
	}
}

// natEmit writes events to stdout as JSON lines, one writer at a time; used by roles.
type natEmit struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newNATEmit(w io.Writer) *natEmit { return &natEmit{enc: json.NewEncoder(w)} }

func (e *natEmit) emit(ev natEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.enc.Encode(ev) // stdout gone means the test is gone; nothing left to tell
}
