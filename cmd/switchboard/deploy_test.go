package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

var deployDir = filepath.Join("..", "..", "deploy")

// loadCompose loads a compose file the way `docker compose` does (schema
// validation, interpolation, env_file resolution) from dir, with its .env.
func loadCompose(t *testing.T, dir, file string) *types.Project {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, file), Content: content}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("switchboard", true) })
	if err != nil {
		t.Fatalf("compose file %s is invalid: %v", file, err)
	}
	return p
}

// checkServiceEnv: every SWITCHBOARD_ variable the service sets exists in
// Config, and the whole environment passes the server's validation.
func checkServiceEnv(t *testing.T, svc types.ServiceConfig) map[string]string {
	t.Helper()
	known := map[string]bool{}
	for _, v := range configVars() {
		known[v.Name] = true
	}
	m := map[string]string{}
	for k, v := range svc.Environment {
		if !strings.HasPrefix(k, envPrefix) {
			continue
		}
		if !known[k] {
			t.Errorf("service %s sets %s, which Config does not have", svc.Name, k)
		}
		if v != nil {
			m[k] = *v
		}
	}
	if _, err := parseConfigMap(m); err != nil {
		t.Errorf("service %s environment does not pass validation: %v", svc.Name, err)
	}
	return m
}

func TestComposeFile(t *testing.T) {
	// With .env = .env.example, as the operator's first step makes it.
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "Dockerfile"} {
		copyFile(t, filepath.Join(deployDir, f), filepath.Join(dir, f))
	}
	copyFile(t, filepath.Join(deployDir, ".env.example"), filepath.Join(dir, ".env"))

	p := loadCompose(t, dir, "docker-compose.yml")
	svc, err := p.GetService("switchboard")
	if err != nil {
		t.Fatal(err)
	}
	if svc.NetworkMode != "host" {
		t.Errorf("network_mode = %q, want host by default", svc.NetworkMode)
	}
	if svc.HealthCheck == nil || !strings.Contains(strings.Join(svc.HealthCheck.Test, " "), "healthcheck") {
		t.Errorf("healthcheck = %+v, want switchboard healthcheck", svc.HealthCheck)
	}
	if svc.StopGracePeriod == nil {
		t.Errorf("no stop_grace_period: docker's default 10s cuts the drain short")
	}
	env := checkServiceEnv(t, svc)
	if env["SWITCHBOARD_PUBLIC_IP"] == "" {
		t.Errorf(".env.example does not reach the service: SWITCHBOARD_PUBLIC_IP missing in %v", env)
	}
	// Without any .env the file must load too (env_file is optional).
	bare := t.TempDir()
	copyFile(t, filepath.Join(deployDir, "docker-compose.yml"), filepath.Join(bare, "docker-compose.yml"))
	loadCompose(t, bare, "docker-compose.yml")
}

// TestComposeBridgeVariant uncomments the bridge-network variant and checks
// it is valid and publishes exactly the small relay range it configures.
func TestComposeBridgeVariant(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "  # switchboard:"):
			in = true
		case in && !strings.HasPrefix(line, "  #"):
			in = false
		}
		if in {
			out = append(out, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(out) == 0 {
		t.Fatal("no commented bridge variant (a block starting with '  # switchboard:') in docker-compose.yml")
	}
	doc := "name: switchboard\nservices:\n" + strings.Join(out, "\n") + "\nvolumes:\n  switchboard-state:\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p := loadCompose(t, dir, "docker-compose.yml")
	svc, err := p.GetService("switchboard")
	if err != nil {
		t.Fatal(err)
	}
	if svc.NetworkMode == "host" {
		t.Error("bridge variant uses host networking")
	}
	env := checkServiceEnv(t, svc)
	cfg, err := parseConfigMap(env)
	if err != nil {
		t.Fatal(err)
	}
	size := int(cfg.RelayPorts.max) - int(cfg.RelayPorts.min) + 1
	if size > 200 {
		t.Errorf("bridge variant relay range %s has %d ports; keep it small", cfg.RelayPorts, size)
	}
	// compose expands a published range into one entry per port.
	udp := map[uint32]bool{}
	for _, pc := range svc.Ports {
		if pc.Protocol == "udp" && pc.Published == strconv.Itoa(int(pc.Target)) {
			udp[pc.Target] = true
		}
	}
	for port := uint32(cfg.RelayPorts.min); port <= uint32(cfg.RelayPorts.max); port++ {
		if !udp[port] {
			t.Fatalf("bridge variant does not publish udp %d of its relay range %s", port, cfg.RelayPorts)
		}
	}
	for _, want := range []uint32{3478} {
		if !udp[want] {
			t.Errorf("bridge variant does not publish udp %d", want)
		}
	}
}

func TestEnvExample(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := dotenv.Parse(f)
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	known := map[string]bool{}
	for _, v := range configVars() {
		known[v.Name] = true
	}
	for k := range m {
		if !known[k] {
			t.Errorf(".env.example sets %s, which Config does not have", k)
		}
	}
	// Commented-out variables must be real ones too.
	raw, _ := os.ReadFile(filepath.Join(deployDir, ".env.example"))
	for _, name := range regexp.MustCompile(`(?m)^#\s*(SWITCHBOARD_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(raw), -1) {
		if !known[name[1]] {
			t.Errorf(".env.example mentions %s, which Config does not have", name[1])
		}
	}
	// What an operator behind NAT must set.
	for _, k := range []string{"SWITCHBOARD_PUBLIC_IP", "SWITCHBOARD_RELAY_PORTS", "SWITCHBOARD_TURN_SECRET", "SWITCHBOARD_ACME_DOMAINS", "SWITCHBOARD_AUTH_SECRET"} {
		if _, ok := m[k]; !ok {
			t.Errorf(".env.example does not set %s", k)
		}
	}
	if _, err := parseConfigMap(m); err != nil {
		t.Errorf(".env.example does not pass validation: %v", err)
	}
}

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM golang:\S+ AS build$`),
		regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/static\S*$`),
		regexp.MustCompile(`CGO_ENABLED=0 go build`),
		regexp.MustCompile(`(?m)^USER 65532:65532$`),
		regexp.MustCompile(`(?m)^HEALTHCHECK .*\n?.*CMD \["/usr/local/bin/switchboard", "healthcheck"\]`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/switchboard"\]$`),
	} {
		if !want.MatchString(s) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit (with ExecStart
// pointed at an existing binary).
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "switchboard.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "TimeoutStopSec=", "KillSignal=SIGTERM"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("switchboard.service lacks %s", want)
		}
	}
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("systemd-analyze not found and SWITCHBOARD_E2E=1: %v", err)
		}
		t.Skip("systemd-analyze not on PATH; unit syntax not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAllString(string(raw), "ExecStart="+self)
	// The commented TLS key blocks (a group, LoadCredential=) as the
	// README tells operators to uncomment them.
	tlsBlocks := regexp.MustCompile(`(?m)^#((SupplementaryGroups|LoadCredential|Environment)=)`)
	if n := len(tlsBlocks.FindAllString(unit, -1)); n < 4 {
		t.Errorf("switchboard.service has %d commented TLS key directives, want the group and LoadCredential blocks", n)
	}
	for name, text := range map[string]string{
		"as shipped":             unit,
		"TLS blocks uncommented": tlsBlocks.ReplaceAllString(unit, "$1"),
	} {
		path := filepath.Join(t.TempDir(), "switchboard.service")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(t.Context(), tool, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify (%s): %v\n%s", name, err, out)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
