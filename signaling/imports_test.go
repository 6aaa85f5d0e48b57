package signaling

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSeamImports: package signaling never depends on a message bus (a NATS
// router lives in a package of its own and implements Router from outside),
// and package wire, which every Go client imports, needs only the standard
// library.
func TestSeamImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	tests := []struct {
		pkg    string
		forbid func(dep string) bool
		why    string
	}{
		{".", func(d string) bool { return strings.HasPrefix(d, "github.com/nats-io/") }, "signaling must not import NATS"},
		{"./wire", func(d string) bool {
			first, _, _ := strings.Cut(d, "/")
			return strings.Contains(first, ".") && !strings.HasSuffix(d, "/signaling/wire")
		},
			"wire imports only the standard library"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", tt.pkg, err)
			}
			for _, d := range strings.Fields(string(out)) {
				if tt.forbid(d) {
					t.Errorf("%s depends on %s: %s", tt.pkg, d, tt.why)
				}
			}
		})
	}
}
