package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/switchboard-rtc/switchboard"

// goList runs `go list` with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	out, err := exec.CommandContext(t.Context(), goTool, append([]string{"list"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %q: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %q: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestImportRules guards the package boundaries of contracts.md with
// `go list -deps` (non-test dependencies of each package tree).
func TestImportRules(t *testing.T) {
	isStd := func(p string) bool {
		first, _, _ := strings.Cut(p, "/")
		return !strings.Contains(first, ".")
	}
	prefix := func(ps ...string) func(string) bool {
		return func(d string) bool {
			for _, p := range ps {
				if d == p || strings.HasPrefix(d, p+"/") {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		pkgs   string
		forbid func(dep string) bool
		why    string
	}{
		{"./relay/...", prefix(module+"/signaling", module+"/web", module+"/cmd"), "relay must not import signaling, web or cmd"},
		{"./relay/...", prefix("github.com/coder/websocket"), "coder/websocket only under signaling"},
		{"./signaling/...", prefix(module+"/relay", module+"/web", module+"/cmd"), "signaling must not import relay, web or cmd"},
		{"./signaling/...", prefix("github.com/pion"), "pion only under relay"},
		{"./web/...", func(d string) bool { return !isStd(d) && !prefix(module+"/web")(d) }, "web imports only the standard library"},
		{"./relay/... ./signaling/... ./web/...", prefix("github.com/prometheus"), "metrics are built in cmd from Stats(); no registration in library packages"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			args := append([]string{"-deps"}, strings.Fields(tt.pkgs)...)
			for _, d := range goList(t, append([]string{"-C", "../.."}, args...)...) {
				if tt.forbid(d) {
					t.Errorf("%s depends on %s: %s", tt.pkgs, d, tt.why)
				}
			}
		})
	}

	// A dependency list cannot show calls: look for environment reads in the
	// library packages' sources. Only cmd/switchboard reads the environment.
	t.Run("only cmd reads the environment", func(t *testing.T) {
		lines := goList(t, "-C", "../..", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}`, "./relay/...", "./signaling/...", "./web/...")
		for _, path := range lines {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []string{"os.Getenv(", "os.LookupEnv(", "os.Environ("} {
				if strings.Contains(string(src), call) {
					t.Errorf("%s calls %s; only cmd/switchboard may read the environment", filepath.Base(path), call)
				}
			}
		}
	})
}
