package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// helperEnv makes this test binary act as a server child (see TestMain).
const helperEnv = "PROC_TEST_HELPER"

// TestMain runs the helper server when started as a child: it prints a line,
// serves 200 on /ready at 127.0.0.1:$PROC_TEST_PORT and, for "stubborn",
// ignores SIGTERM.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Println("helper up; SWITCHBOARD_LEAK=" + os.Getenv("SWITCHBOARD_LEAK"))
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PROC_TEST_PORT"))
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}

func startHelper(t *testing.T, mode string, cfg Config) (*Process, string) {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "helper"
	cfg.Path = os.Args[0]
	cfg.Env = append(cfg.Env, helperEnv+"="+mode, fmt.Sprintf("PROC_TEST_PORT=%d", port))
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", port)
	cfg.Ready = HTTPReady(url)
	p, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p, url
}

func TestStartStop(t *testing.T) {
	// The caller's own server settings must not reach the child.
	t.Setenv("SWITCHBOARD_LEAK", "yes")
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "helper.log")
	p, url := startHelper(t, "serve", Config{Log: logPath, Dir: tmp})
	if err := p.Alive(); err != nil {
		t.Errorf("Alive after Start = %v", err)
	}
	if p.PID() <= 0 || p.PID() == os.Getpid() {
		t.Errorf("PID() = %d", p.PID())
	}
	if err := HTTPReady(url)(t.Context()); err != nil {
		t.Errorf("helper not serving after Start: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if err := p.Alive(); err == nil {
		t.Error("Alive after Stop = nil, want an error")
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Dir after Stop: %v, want removed", err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(b), "helper up; SWITCHBOARD_LEAK=\n") {
		t.Errorf("log = %q, %v; want the helper's line, without SWITCHBOARD_LEAK", b, err)
	}
	if !strings.Contains(p.Output(), "helper up") {
		t.Errorf("Output() = %q, want the helper's line", p.Output())
	}
}

// TestStopKills: a child that ignores SIGTERM is killed after StopTimeout.
func TestStopKills(t *testing.T) {
	p, _ := startHelper(t, "stubborn", Config{StopTimeout: 50e6})
	_ = p.Stop()
	if err := p.Alive(); err == nil {
		t.Error("stubborn child alive after Stop")
	}
}

func TestStartErrors(t *testing.T) {
	falsePath, err := exec.LookPath("false")
	if err != nil {
		t.Skipf("no false(1) on PATH: %v", err)
	}
	never := func(context.Context) error { return errors.New("not yet") }
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  Config
		want string
	}{
		{"missing fields", t.Context(), Config{Name: "x"}, "needs Name, Path and Ready"},
		{"exits at once", t.Context(), Config{Name: "x", Path: falsePath, Ready: never}, "process exited"},
		{"no such binary", t.Context(), Config{Name: "x", Path: "/nonexistent/turnserver", Ready: never}, "start x"},
		{"cancelled", ctx, Config{Name: "x", Path: "/bin/sleep", Args: []string{"60"}, Ready: never}, "context canceled"},
		{"log in a missing directory", t.Context(), Config{Name: "x", Path: falsePath, Ready: never, Log: "/nonexistent/x.log"}, "x log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(tt.ctx, tt.cfg)
			if err == nil {
				_ = p.Stop()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// TestStartErrorLastLine: a server that refuses to start says why on its
// last line, and StartError hands that line over.
func TestStartErrorLastLine(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh on PATH: %v", err)
	}
	never := func(context.Context) error { return errors.New("not yet") }
	_, err = Start(t.Context(), Config{Name: "x", Path: sh, Ready: never,
		Args: []string{"-c", "echo starting; echo 'bad SWITCHBOARD_RELAY_OFFLOAD: no bpf' >&2; echo; exit 1"}})
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("Start = %v, want a *StartError", err)
	}
	if got, want := se.LastLine(), "bad SWITCHBOARD_RELAY_OFFLOAD: no bpf"; got != want {
		t.Errorf("LastLine() = %q, want %q", got, want)
	}
	if !strings.Contains(err.Error(), "x not ready: process exited") {
		t.Errorf("Error() = %q, want the not-ready message", err)
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("SWITCHBOARD_TURN_SECRET", "x")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid")
	t.Setenv("no_proxy", "")
	t.Setenv("PROC_TEST_KEEP", "1")
	env := ChildEnv("SWITCHBOARD_HTTP_ADDR=127.0.0.1:0")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "SWITCHBOARD_TURN_SECRET" || k == "HTTPS_PROXY" || k == "no_proxy" {
			t.Errorf("ChildEnv kept %s", kv)
		}
	}
	if !slices.Contains(env, "PROC_TEST_KEEP=1") || env[len(env)-1] != "SWITCHBOARD_HTTP_ADDR=127.0.0.1:0" {
		t.Errorf("ChildEnv = %q, want PROC_TEST_KEEP=1 kept and the extra variable last", env)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp4", "tcp4"} {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		var c interface{ Close() error }
		if network == "udp4" {
			c, err = net.ListenPacket(network, addr)
		} else {
			c, err = net.Listen(network, addr)
		}
		if err != nil {
			t.Errorf("FreePort() = %d, but %s listen there: %v", port, network, err)
			continue
		}
		c.Close()
	}
}
