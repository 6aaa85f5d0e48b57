package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerignorePatterns reads the repository's .dockerignore as compiled
// patterns. It follows Docker's rules for the forms the file uses (paths
// relative to the context root, "*" and "?" within one path element, "**"
// across elements) and refuses "!" exceptions, which it does not model.
func dockerignorePatterns(t *testing.T) []*regexp.Regexp {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pats []*regexp.Regexp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		re, err := dockerPattern(line)
		if err != nil {
			t.Fatal(err)
		}
		pats = append(pats, re)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return pats
}

// dockerPattern compiles one .dockerignore line.
func dockerPattern(line string) (*regexp.Regexp, error) {
	if strings.HasPrefix(line, "!") || strings.ContainsAny(line, "[\\") {
		return nil, fmt.Errorf(".dockerignore pattern %q: exceptions and character classes are not modelled by this test", line)
	}
	p := path.Clean(strings.TrimPrefix(line, "/"))
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			re.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			re.WriteString(".*")
			i++
		case c == '*':
			re.WriteString("[^/]*")
		case c == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	return regexp.Compile(re.String())
}

// dockerExcluded reports whether rel (slash-separated, relative to the
// context root) or one of its parent directories matches a pattern.
func dockerExcluded(pats []*regexp.Regexp, rel string) bool {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		for _, re := range pats {
			if re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

// TestDockerignore: nothing the image's build reads is excluded from the
// context (go.mod, go.sum, every source and go:embed file of the packages
// ./cmd/switchboard is built from), and what must stay out is out.
func TestDockerignore(t *testing.T) {
	pats := dockerignorePatterns(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("go not on PATH and SWITCHBOARD_E2E=1: %v", err)
		}
		t.Skip("go not on PATH; cannot list the build's files")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// As the Dockerfile builds: CGO off, for Linux.
	cmd := exec.CommandContext(t.Context(), goTool, "list", "-e", "-deps", "-json", "./cmd/switchboard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			Dir, ImportPath                                  string
			Standard                                         bool
			Module                                           *struct{ Main bool }
			GoFiles, CgoFiles, SFiles, EmbedFiles, SysoFiles []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, list := range [][]string{p.GoFiles, p.CgoFiles, p.SFiles, p.EmbedFiles, p.SysoFiles} {
			for _, f := range list {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	var embeds bool
	for _, f := range needed {
		if dockerExcluded(pats, f) {
			t.Errorf(".dockerignore excludes %s, which the image build needs", f)
		}
		embeds = embeds || strings.HasPrefix(f, "web/static/")
	}
	if len(needed) < 20 || !embeds {
		t.Fatalf("go list found only %d files (web/static embedded: %v): %v", len(needed), embeds, needed)
	}
	for _, f := range []string{".git/HEAD", "deploy/.env", "acme-cache/acme_account+key", "web/screenshots/call.png", "relay/testdata/fuzz/x"} {
		if !dockerExcluded(pats, f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

func TestDockerExcluded(t *testing.T) {
	var pats []*regexp.Regexp
	for _, line := range []string{".git", "**/testdata", "*.test", "/web/screenshots/", "a/**/b?"} {
		re, err := dockerPattern(line)
		if err != nil {
			t.Fatal(err)
		}
		pats = append(pats, re)
	}
	tests := []struct {
		path string
		want bool
	}{
		{".git/objects/ab", true},
		{".github/x", false},
		{"relay/testdata/a", true},
		{"testdata", true},
		{"relay/testdatax/a", false},
		{"x.test", true},
		{"cmd/x.test", false},
		{"web/static/app.js", false},
		{"web/screenshots/call.png", true},
		{"web/screenshotsx", false},
		{"a/bx/c", true},
		{"a/x/y/bz", true},
		{"a/b", false},
	}
	if _, err := dockerPattern("!keep"); err == nil {
		t.Error(`dockerPattern("!keep") accepted an exception it does not model`)
	}
	for _, tt := range tests {
		if got := dockerExcluded(pats, tt.path); got != tt.want {
			t.Errorf("dockerExcluded(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
