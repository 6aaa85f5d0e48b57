package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

// peerJSHeartbeat is the peerjs browser client's pingInterval.
const peerJSHeartbeat = 5 * time.Second

// startSignalingSwitchboard starts `switchboard serve` on a free loopback
// port with an auth secret (open mode rate-limits credentials per client
// IP, and every bench session comes from 127.0.0.1).
func startSignalingSwitchboard(ctx context.Context, cfg SignalingConfig, logDir string) (target, error) {
	exe := cfg.Bin
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return target{}, fmt.Errorf("find this binary: %w", err)
		}
	}
	port, err := proc.FreePort()
	if err != nil {
		return target{}, err
	}
	authSecret := randomHex(32)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env := switchboardEnv(cfg, addr, authSecret, randomHex(16))
	p, err := proc.Start(ctx, proc.Config{
		Name:  "switchboard",
		Path:  exe,
		Args:  []string{"serve"},
		Env:   append(env, cfg.ServerEnv...),
		Log:   filepath.Join(logDir, "switchboard.log"),
		Ready: proc.HTTPReady("http://" + addr + "/readyz"),
	})
	if err != nil {
		return target{}, err
	}
	t := target{
		name: "switchboard", proto: loadgen.Switchboard,
		nodes: []node{{name: "switchboard", wsURL: "ws://" + addr + "/ws", metricsURL: "http://" + addr + "/metrics", pid: p.PID(), proc: p}},
		token: tokens([]byte(authSecret)),
		note: fmt.Sprintf("started `%s serve`: SWITCHBOARD_PING_INTERVAL=%v (keepalive pings run during settle), AUTH_SECRET set (hello carries a JWT)",
			filepath.Base(exe), cfg.PingInterval),
	}
	if len(cfg.ServerEnv) > 0 {
		t.note += ", " + strings.Join(cfg.ServerEnv, " ")
	}
	return t, nil
}

// switchboardEnv is the environment of a Switchboard the bench starts on
// addr, cluster or not.
func switchboardEnv(cfg SignalingConfig, addr, authSecret, turnSecret string) []string {
	return []string{
		"SWITCHBOARD_HTTP_ADDR=" + addr,
		"SWITCHBOARD_TURN_ADDR=127.0.0.1:0",
		"SWITCHBOARD_PUBLIC_IP=127.0.0.1", // no detection at start
		"SWITCHBOARD_TURN_SECRET=" + turnSecret,
		"SWITCHBOARD_AUTH_SECRET=" + authSecret,
		// The cap counts sessions in resume grace too; leave room for a re-run.
		"SWITCHBOARD_MAX_SESSIONS=" + strconv.Itoa(2*cfg.Sessions+100),
		"SWITCHBOARD_PING_INTERVAL=" + cfg.PingInterval.String(),
		"SWITCHBOARD_DRAIN_TIMEOUT=1s",
		"SWITCHBOARD_LOG_LEVEL=warn",
	}
}

// startPeerJS starts PeerJS's CLI from PeerJSDir/node_modules/peer on a
// free loopback port.
func startPeerJS(ctx context.Context, cfg SignalingConfig, logDir string) (target, error) {
	dir := cfg.PeerJSDir
	cli := filepath.Join(dir, "node_modules", "peer", "dist", "bin", "peerjs.js")
	if _, err := os.Stat(cli); err != nil {
		return target{}, fmt.Errorf("--peerjs-dir: %w (run `npm install peer` there)", err)
	}
	version := "?"
	if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "peer", "package.json")); err == nil {
		version = packageVersion(b)
	}
	port, err := proc.FreePort()
	if err != nil {
		return target{}, err
	}
	limit := 2*cfg.Sessions + 100
	p, err := proc.Start(ctx, proc.Config{
		Name: "peerjs",
		Path: cfg.Node,
		Args: []string{cli,
			"--host", "127.0.0.1", "--port", strconv.Itoa(port),
			// Default 5000 would refuse half of the sessions.
			"--concurrent_limit", strconv.Itoa(limit),
		},
		Log:   filepath.Join(logDir, "peerjs.log"),
		Ready: proc.HTTPReady("http://127.0.0.1:" + strconv.Itoa(port) + "/"),
	})
	if err != nil {
		return target{}, err
	}
	return target{
		name: "peerjs", proto: loadgen.PeerJS,
		nodes: []node{{name: "peerjs", wsURL: "ws://127.0.0.1:" + strconv.Itoa(port) + "/peerjs", pid: p.PID(), proc: p}},
		note: fmt.Sprintf("started peer %s CLI (node %s) with --concurrent_limit %d; keepalive is client-driven: HEARTBEAT every %v unless --client-heartbeat",
			version, nodeVersion(cfg.Node), limit, peerJSHeartbeat),
	}, nil
}

// packageVersion is the "version" of a package.json, "?" if it has none.
func packageVersion(b []byte) string {
	var pkg struct{ Version string }
	if json.Unmarshal(b, &pkg) != nil || pkg.Version == "" {
		return "?"
	}
	return pkg.Version
}

func nodeVersion(node string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// tokens mints one JWT per session with the hub's own minting function.
func tokens(secret []byte) func(int) string {
	return func(i int) string {
		tok, err := signaling.MintToken(secret, "bench-"+strconv.Itoa(i), "", time.Hour)
		if err != nil {
			return "" // the hello then fails with unauthorized, which is counted
		}
		return tok
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
