package offload

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary attach in the namespace it names and wait to be
// killed (see TestMain).
const helperEnv = "OFFLOAD_TEST_ATTACH_IN"

func TestMain(m *testing.M) {
	if ns := os.Getenv(helperEnv); ns != "" {
		attachAndWait(ns)
		return
	}
	os.Exit(m.Run())
}

// attachAndWait attaches in ns, says "ready" and blocks until killed.
func attachAndWait(ns string) {
	runtime.LockOSThread()
	f, err := os.Open("/var/run/netns/" + ns)
	if err == nil {
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	if _, err := Attach(Config{}); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	select {}
}

// TestKillLeavesNothing: a process killed with SIGKILL leaves no program attached: the
// TCX links belong to its file descriptors, nothing is pinned.
func TestKillLeavesNothing(t *testing.T) {
	tp := newTopo(t, true)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+tp.server)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	programs := func() int {
		n := 0
		inNS(t, tp.server, func() error {
			for _, name := range []string{"lo", "s0", "s1"} {
				ifc, err := net.InterfaceByName(name)
				if err != nil {
					return err
				}
				res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXIngress})
				if err != nil {
					return err
				}
				n += len(res.Programs)
			}
			return nil
		})
		return n
	}
	if n := programs(); n != 3 {
		t.Fatalf("helper attached %d programs, want 3 (lo, s0, s1)", n)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The kernel drops the links when the last file descriptor goes, which may be a
	// moment after the process is reaped; poll against a generous deadline.
	deadline := time.Now().Add(recvTimeout)
	for programs() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d programs still attached %v after SIGKILL", programs(), recvTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
