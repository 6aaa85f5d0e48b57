package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/relay/loadgen"
)

// turnServer is a TURN server child process under load.
type turnServer struct {
	*proc.Process
	Addr string // its UDP address on 127.0.0.1
	// relayPorts is the size of its relay port range, fdLimit its soft
	// limit on open files (0: unknown); fitLimits checks a load against them.
	relayPorts int
	fdLimit    uint64
}

func newTURNServer(p *proc.Process, addr string, relayPorts int) *turnServer {
	lim, err := proc.OpenFileLimit(p.PID())
	if err != nil {
		lim = 0 // unknown: not checked
	}
	return &turnServer{Process: p, Addr: addr, relayPorts: relayPorts, fdLimit: lim}
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

// startCoturn writes a minimal loopback-only coturn configuration to a
// temporary directory and starts turnserver with it. Peers are allowed on
// 127.0.0.0/8 only: everything else is denied, so a mistake cannot send
// traffic anywhere else.
func startCoturn(ctx context.Context, cfg CoturnConfig) (*turnServer, error) {
	if cfg.Secret == "" {
		return nil, errors.New("bench: CoturnConfig.Secret is required")
	}
	if cfg.Path == "" {
		p, err := exec.LookPath("turnserver")
		if err != nil {
			return nil, fmt.Errorf("bench: coturn: %w", err)
		}
		cfg.Path = p
	}
	if cfg.Port == 0 {
		p, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		cfg.Port = p
	}
	if cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0 {
		cfg.RelayPortMin, cfg.RelayPortMax = 61000, 62999
	}
	dir, err := os.MkdirTemp("", "bench-coturn-")
	if err != nil {
		return nil, fmt.Errorf("bench: coturn: %w", err)
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
		return nil, fmt.Errorf("bench: coturn: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
	p, err := proc.Start(ctx, proc.Config{
		Name:  "coturn",
		Path:  cfg.Path,
		Args:  []string{"-c", confPath},
		Ready: stunReady(addr),
		// Every run releases its allocations, so a stop has nothing to wait for.
		StopTimeout: 5 * time.Second,
		Dir:         dir,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return newTURNServer(p, addr, cfg.RelayPortMax-cfg.RelayPortMin+1), nil
}

// stunReady is a proc.Config.Ready that wants a STUN answer at addr.
func stunReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error { return loadgen.ProbeSTUN(ctx, addr) }
}

// relayPorts are the relay port ranges of the Switchboard servers a
// --compare run starts, one per --offload mode (at most three): beside
// coturn's 61000-62999 and outside Linux's default ephemeral range
// (32768-60999) where the generator's sockets get their ports. 2,000 each,
// twice the largest shape's allocations.
var relayPorts = []struct{ min, max int }{{63000, 64999}, {30000, 31999}, {28000, 29999}}

// startSwitchboard runs `switchboard serve` on loopback with a relay
// configured like startCoturn's coturn: 127.0.0.1 only, peers on
// 127.0.0.0/8. name labels it; offload, if not "", is its
// SWITCHBOARD_RELAY_OFFLOAD; slot picks its relay ports (relayPorts).
func startSwitchboard(ctx context.Context, path, secret, name, offload string, slot int) (*turnServer, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("own executable: %w", err)
		}
		path = exe
	}
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ports := relayPorts[slot]
	env := []string{
		"SWITCHBOARD_TURN_ADDR=" + addr,
		"SWITCHBOARD_HTTP_ADDR=127.0.0.1:0",
		"SWITCHBOARD_PUBLIC_IP=127.0.0.1",
		"SWITCHBOARD_PEER_ALLOW=127.0.0.0/8",
		"SWITCHBOARD_TURN_SECRET=" + secret,
		fmt.Sprintf("SWITCHBOARD_RELAY_PORTS=%d-%d", ports.min, ports.max),
		"SWITCHBOARD_LOG_LEVEL=warn",
		// Every run releases its allocations, so a stop has nothing to wait for;
		// this only bounds a stop after an interrupted run.
		"SWITCHBOARD_DRAIN_TIMEOUT=2s",
	}
	if offload != "" {
		env = append(env, "SWITCHBOARD_RELAY_OFFLOAD="+offload)
	}
	p, err := proc.Start(ctx, proc.Config{
		Name:        name,
		Path:        path,
		Args:        []string{"serve"},
		Env:         env,
		Ready:       stunReady(addr),
		StopTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return newTURNServer(p, addr, ports.max-ports.min+1), nil
}
