package web

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envE2E makes a missing tool a failure instead of a skip (CI sets it).
const envE2E = "SWITCHBOARD_E2E"

// tool finds a command line tool: web/node_modules/.bin first (npm ci
// --prefix web), then PATH. It skips the test when the tool is absent, or
// fails under SWITCHBOARD_E2E=1.
func tool(tb testing.TB, name, install string) string {
	tb.Helper()
	if p, err := filepath.Abs(filepath.Join("node_modules", ".bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv(envE2E) == "1" {
		tb.Fatalf("%s not found (web/node_modules/.bin or PATH) and %s=1: %s", name, envE2E, install)
	}
	tb.Skipf("%s not found in web/node_modules/.bin or on PATH (%s; set %s=1 to make this a failure)", name, install, envE2E)
	return ""
}

// run runs a tool in the web directory and fails with its output.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	// Generous: tsc takes a few seconds, the node tests about one; the
	// deadline only stops a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
}

// TestTypeCheck type-checks every browser module from its JSDoc (tsc
// --noEmit -p web, strict): app.js and check.js against the library's code.
func TestTypeCheck(t *testing.T) {
	tool(t, "node", "apt-get install -y nodejs")
	tsc := tool(t, "tsc", "npm ci --prefix web")
	run(t, tsc, "--noEmit", "-p", ".")
}

// TestDeclarationsGenerated: static/types/*.d.ts, the published types of
// /switchboard.js, are what tsc generates from the JSDoc now, so the types
// exist once (in the code) and the declarations cannot drift from it.
// Regenerate with: npm run types --prefix web.
func TestDeclarationsGenerated(t *testing.T) {
	tool(t, "node", "apt-get install -y nodejs")
	tsc := tool(t, "tsc", "npm ci --prefix web")
	dir := t.TempDir()
	run(t, tsc, "-p", "tsconfig.types.json", "--declarationDir", dir)
	want, err := filepath.Glob(filepath.Join(dir, "*.d.ts"))
	if err != nil || len(want) == 0 {
		t.Fatalf("tsc generated no declarations in %s (%v)", dir, err)
	}
	have, _ := filepath.Glob(filepath.Join("static", "types", "*.d.ts"))
	if len(have) != len(want) {
		t.Errorf("static/types has %d .d.ts files, tsc generates %d: run npm run types --prefix web", len(have), len(want))
	}
	for _, w := range want {
		name := filepath.Base(w)
		gen, err := os.ReadFile(w)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("static", "types", name))
		if err != nil {
			t.Errorf("static/types/%s: %v (run npm run types --prefix web)", name, err)
			continue
		}
		if !bytes.Equal(got, gen) {
			t.Errorf("static/types/%s differs from what tsc generates from the code: run npm run types --prefix web", name)
		}
	}
}

// TestNodeUnit runs the pure modules' unit tests (web/test/*.test.js) under
// node --test: no browser needed.
func TestNodeUnit(t *testing.T) {
	node := tool(t, "node", "apt-get install -y nodejs")
	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.js files (%v)", err)
	}
	run(t, node, append([]string{"--test", "--test-reporter=spec"}, files...)...)
}
