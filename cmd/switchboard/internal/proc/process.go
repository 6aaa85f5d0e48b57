package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// Process is a TURN server child process started for a benchmark.
type Process struct {
	// Static after start.
	Name string
	Addr string // UDP address it serves STUN/TURN on
	cmd  *exec.Cmd
	dir  string // temporary files to remove on Stop; "" if none

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	out     *tailBuffer   // last output, for start-up errors
	stop    sync.Once
}

// ProcessConfig describes a server to start.
type ProcessConfig struct {
	Name string   // label in messages and tables. Required.
	Path string   // executable. Required.
	Args []string // arguments
	// Env is the complete environment of the child; nil means this process's.
	Env []string
	// Addr is the loopback UDP address the server will serve; StartProcess
	// returns once a STUN Binding request there is answered. Required.
	Addr string
	// ReadyTimeout bounds that wait. Default 10s, far above the
	// hundreds of milliseconds either server needs to start.
	ReadyTimeout time.Duration
}

// StartProcess runs cfg.Path and waits until it answers STUN at cfg.Addr.
// The process is killed when ctx is cancelled; call Stop when done.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	return startProcess(ctx, cfg, "")
}

func startProcess(ctx context.Context, cfg ProcessConfig, dir string) (*Process, error) {
	if cfg.Name == "" || cfg.Path == "" || cfg.Addr == "" {
		return nil, errors.New("loadgen: ProcessConfig needs Name, Path and Addr")
	}
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return nil, fmt.Errorf("loadgen: %s address %q is not a loopback ip:port", cfg.Name, cfg.Addr)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	cmd := exec.CommandContext(ctx, cfg.Path, cfg.Args...)
	cmd.Env = cfg.Env
	out := &tailBuffer{max: 4 << 10} // enough for the error a server prints before exiting
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a ^C aimed at the benchmark reaches the
	// benchmark first and the servers are stopped in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second // SIGKILL if SIGTERM is ignored this long
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: start %s: %w", cfg.Name, err)
	}
	p := &Process{Name: cfg.Name, Addr: cfg.Addr, cmd: cmd, dir: dir, done: make(chan struct{}), out: out}
	go func() { // owned by p: ends when the process exits; Stop waits for it
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := waitSTUN(ctx, cfg.Addr, cfg.ReadyTimeout, p.done); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("loadgen: %s not ready at %s: %w; output: %s", cfg.Name, cfg.Addr, err, out.String())
	}
	return p, nil
}

// PID is the server's process id, for ProcessCPU.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, waits for the exit (SIGKILL after 5s) and removes temporary files.
func (p *Process) Stop() error {
	var err error
	p.stop.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if p.dir != "" {
			err = os.RemoveAll(p.dir)
		}
	})
	return err
}

// Output returns the last few KiB the server wrote to stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// waitSTUN sends Binding requests to addr every 100ms until one is
// answered, the process exits, or timeout passes.
func waitSTUN(ctx context.Context, addr string, timeout time.Duration, exited <-chan struct{}) error {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer conn.Close()
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			return err
		}
		if _, err := conn.WriteToUDP(req.Raw, to); err != nil {
			return err
		}
		// 100ms: a started server answers in well under 1ms; one that is
		// still starting is asked again soon.
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break // timeout (or ICMP refused): ask again
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID && res.Type == stun.BindingSuccess {
				return nil
			}
		}
	}
	return fmt.Errorf("no STUN answer within %v", timeout)
}

// CoturnConfig describes a coturn turnserver to start on loopback.
type CoturnConfig struct {
	// Path of turnserver. Default: "turnserver" on PATH.
	Path string
	// Secret is its static-auth-secret. Required.
	Secret string
	// Port is the listening port on 127.0.0.1. Default 0: a free one.
	Port int
	// RelayPortMin and RelayPortMax bound its relay ports. Default 61000-62999,
	// above Linux's default ephemeral range (32768-60999), where the generator's
	// client and peer sockets get their ports: coturn picks relay ports at random
	// and fails an Allocate when its binds hit taken ports.
	RelayPortMin, RelayPortMax int
	// Threads sets relay-threads. Default 0: coturn's default (one per CPU).
	Threads int
}

// StartCoturn writes a minimal loopback-only coturn configuration to a
// temporary directory and starts turnserver with it. Peers are allowed on
// 127.0.0.0/8 only: everything else is denied, so a mistake cannot send
// traffic anywhere else.
func StartCoturn(ctx context.Context, cfg CoturnConfig) (*Process, error) {
	if cfg.Secret == "" {
		return nil, errors.New("loadgen: CoturnConfig.Secret is required")
	}
	if cfg.Path == "" {
		p, err := exec.LookPath("turnserver")
		if err != nil {
			return nil, fmt.Errorf("loadgen: coturn: %w", err)
		}
		cfg.Path = p
	}
	if cfg.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		cfg.Port = p
	}
	if cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0 {
		cfg.RelayPortMin, cfg.RelayPortMax = 61000, 62999
	}
	dir, err := os.MkdirTemp("", "loadgen-coturn-")
	if err != nil {
		return nil, fmt.Errorf("loadgen: coturn: %w", err)
	}
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port=%d\n", cfg.Port)
	fmt.Fprintf(&conf, "min-port=%d\nmax-port=%d\n", cfg.RelayPortMin, cfg.RelayPortMax)
	fmt.Fprintf(&conf, "use-auth-secret\nstatic-auth-secret=%s\nrealm=loadgen\n", cfg.Secret)
	conf.WriteString("allow-loopback-peers\ndenied-peer-ip=0.0.0.0-255.255.255.255\ndenied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\nallowed-peer-ip=127.0.0.0-127.255.255.255\n")
	conf.WriteString("no-tls\nno-dtls\nno-cli\nno-rfc5780\nno-software-attribute\nno-multicast-peers\nfingerprint\n")
	fmt.Fprintf(&conf, "log-file=%s\nsimple-log\nno-stdout-log\npidfile=%s\nuserdb=%s\n",
		filepath.Join(dir, "turn.log"), filepath.Join(dir, "turn.pid"), filepath.Join(dir, "turndb"))
	if cfg.Threads > 0 {
		fmt.Fprintf(&conf, "relay-threads=%d\n", cfg.Threads)
	}
	confPath := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("loadgen: coturn: %w", err)
	}
	p, err := startProcess(ctx, ProcessConfig{
		Name: "coturn",
		Path: cfg.Path,
		Args: []string{"-c", confPath},
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
	}, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// FreePort returns a port on 127.0.0.1 that was free for both UDP and TCP
// a moment ago (TURN servers listen on both).
func FreePort() (int, error) {
	// A few attempts: the UDP port the kernel picks may be taken for TCP.
	for range 20 {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("loadgen: free port: %w", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		_ = u.Close()
		if err == nil {
			_ = t.Close()
			return port, nil
		}
	}
	return 0, errors.New("loadgen: no port free for both UDP and TCP on 127.0.0.1")
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
