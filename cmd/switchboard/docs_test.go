package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsGoVersion: the Go release the README asks for and the Dockerfile
// builds with is the one go.mod names.
func TestDocsGoVersion(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`).FindStringSubmatch(read("go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := m[1]
	if s := read("README.md"); !strings.Contains(s, "Go "+want+" or newer") {
		t.Errorf("README.md does not say \"Go %s or newer\" (go.mod: go %s)", want, want)
	}
	if s := read(filepath.Join("deploy", "Dockerfile")); !regexp.MustCompile(`(?m)^FROM golang:` + regexp.QuoteMeta(want) + `\b`).MatchString(s) {
		t.Errorf("deploy/Dockerfile does not build with golang:%s (go.mod: go %s)", want, want)
	}
}
