package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a server child process started for a benchmark.
type Process struct {
	// Static after Start.
	Name string
	cmd  *exec.Cmd
	cfg  Config
	log  *os.File    // nil without Config.Log; closed by the wait goroutine
	out  *tailBuffer // last output, for errors

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	stop    sync.Once
	stopErr error
}

// Config describes a server process to start.
type Config struct {
	// Name labels the process in messages. Required.
	Name string
	// Path is the executable. Required.
	Path string
	// Args are its arguments.
	Args []string
	// Env is added to the child's environment, which is otherwise this
	// process's without SWITCHBOARD_ and proxy variables (see ChildEnv).
	Env []string
	// Log is a file that receives the child's stdout and stderr in full.
	// Default "": only the last 4 KiB are kept, in memory, for errors.
	Log string
	// Ready reports whether the server is up; Start asks it every 50ms
	// until it returns nil. Required: a benchmark must not load a server
	// that is still starting.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds that wait. Default 20s, far above the hundreds of
	// milliseconds the servers need for a cold start.
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it sends
	// SIGKILL. Default 10s, above the 1-2s drain the benchmarks configure.
	StopTimeout time.Duration
	// Dir is a directory of temporary files (a configuration, a database)
	// that Stop removes. Default "": none.
	Dir string
}

// tailSize is the output kept in memory: enough for the error a server
// prints before it exits, and the last lines of its log.
const tailSize = 4 << 10

// Start runs cfg.Path and returns once cfg.Ready reports the server up. The
// child runs in its own process group, so a ^C aimed at the benchmark
// reaches the benchmark first and it stops its servers in order; if ctx is
// cancelled the child gets SIGTERM. Call Stop when done.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	if cfg.Name == "" || cfg.Path == "" || cfg.Ready == nil {
		return nil, errors.New("proc: Config needs Name, Path and Ready")
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 20 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	p := &Process{Name: cfg.Name, cfg: cfg, out: &tailBuffer{max: tailSize}, done: make(chan struct{})}
	var w io.Writer = p.out
	if cfg.Log != "" {
		f, err := os.Create(cfg.Log)
		if err != nil {
			return nil, fmt.Errorf("proc: %s log: %w", cfg.Name, err)
		}
		p.log = f
		w = io.MultiWriter(f, p.out)
	}
	cmd := exec.CommandContext(ctx, cfg.Path, cfg.Args...)
	cmd.Env = ChildEnv(cfg.Env...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = cfg.StopTimeout // then SIGKILL, if SIGTERM is ignored
	if err := cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("proc: start %s: %w", cfg.Name, err)
	}
	p.cmd = cmd
	go func() { // owned by p: ends when the process exits; Stop waits for it
		p.waitErr = cmd.Wait()
		p.closeLog()
		close(p.done)
	}()
	if err := p.waitReady(ctx); err != nil {
		_ = p.Stop()
		return nil, &StartError{Name: cfg.Name, Err: err, Output: p.out.String(), indented: p.Output()}
	}
	return p, nil
}

// StartError is Start's error when the process ran but never became
// ready: it exited, or the wait timed out.
type StartError struct {
	Name string
	Err  error
	// Output is the tail of what the process wrote (stdout and stderr).
	Output   string
	indented string
}

func (e *StartError) Error() string {
	return fmt.Sprintf("proc: %s not ready: %v; output:\n%s", e.Name, e.Err, e.indented)
}

func (e *StartError) Unwrap() error { return e.Err }

// LastLine is the last non-empty line of Output: where a server that
// refuses to start says why.
func (e *StartError) LastLine() string {
	lines := strings.Split(strings.TrimSpace(e.Output), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (p *Process) closeLog() {
	if p.log != nil {
		_ = p.log.Close()
	}
}

// waitReady asks Ready until it answers nil, the process exits, ctx ends or
// ReadyTimeout passes.
func (p *Process) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ReadyTimeout)
	defer cancel()
	// 50ms: a started server answers in well under 1ms; one still starting
	// is asked again soon, without spinning.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = p.cfg.Ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited (%v)", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// PID is the server's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Alive returns an error with the output's tail if the process has exited.
func (p *Process) Alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); output:\n%s", p.Name, p.waitErr, p.Output())
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits for the exit (SIGKILL after StopTimeout) and
// removes Dir. It is safe to call more than once.
func (p *Process) Stop() error {
	p.stop.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(p.cfg.StopTimeout)
		select {
		case <-p.done:
			t.Stop()
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if p.cfg.Dir != "" {
			p.stopErr = os.RemoveAll(p.cfg.Dir)
		}
	})
	return p.stopErr
}

// Output returns the last few KiB the server wrote to stdout and stderr,
// indented for an error message.
func (p *Process) Output() string {
	s := strings.TrimRight(p.out.String(), "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// ChildEnv is this process's environment without any SWITCHBOARD_ variable
// (a stray one in the caller's shell must not change the measured server)
// and without proxy variables (every benchmark connection is on loopback),
// followed by extra.
func ChildEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SWITCHBOARD_") || strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// HTTPReady is a Config.Ready that wants 200 from a GET of url.
func HTTPReady(url string) func(context.Context) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// FreePort returns a port on 127.0.0.1 that was free for both UDP and TCP
// a moment ago (TURN servers listen on both).
func FreePort() (int, error) {
	// A few attempts: the UDP port the kernel picks may be taken for TCP.
	for range 20 {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("proc: free port: %w", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		_ = u.Close()
		if err == nil {
			_ = t.Close()
			return port, nil
		}
	}
	return 0, errors.New("proc: no port free for both UDP and TCP on 127.0.0.1")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
