package offload

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestObjectsCurrent regenerates the program with the go:generate line of gen.go into a
// temporary directory and checks the committed objects and Go files are what it gives,
// so nobody ships a .o that does not match channeldata.c.
func TestObjectsCurrent(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingTool(t, "%s not on PATH (Debian: apt-get install clang llvm libbpf-dev): %v", tool, err)
		}
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		missingTool(t, "libbpf headers missing (Debian: apt-get install libbpf-dev): %v", err)
	}
	if runtime.GOARCH != "amd64" {
		missingTool(t, "gen.go's include path is the amd64 one, GOARCH is %s", runtime.GOARCH)
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, l := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(l, "//go:generate go run "); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) < 2 {
		t.Fatalf("no go:generate line in gen.go")
	}
	out := t.TempDir()
	args = append([]string{"run", args[0], "-output-dir", out}, args[1:]...)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // clang on a busy 2-core box
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=offload", "GOFILE=gen.go")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	names, err := filepath.Glob(filepath.Join(out, "*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("bpf2go wrote nothing to %s (%v)", out, err)
	}
	for _, n := range names {
		want, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Base(n))
		if err != nil {
			t.Fatalf("generated %s is not committed: %v", filepath.Base(n), err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./relay/offload and commit the result", filepath.Base(n))
		}
	}
}

func missingTool(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("SWITCHBOARD_E2E") == "1" {
		t.Fatalf("SWITCHBOARD_E2E=1 but "+format, args...)
	}
	t.Skipf(format+" (set SWITCHBOARD_E2E=1 to make this a failure)", args...)
}
