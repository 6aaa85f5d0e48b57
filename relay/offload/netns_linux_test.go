package offload

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test network. Every address exists only inside namespaces the test makes; the
// host namespace gets no interface, route or packet of it.
//
//	client ns              server ns                       peer ns
//	c0 10.201.1.2  ──veth── s0 10.201.1.1 | s1 10.201.2.1 ──veth── p0 10.201.2.2
//	   fd00:201:1::2           fd00:201:1::1 | fd00:201:2::1           fd00:201:2::2
//
// The server does not forward (ip_forward stays 0): a packet reaches the peer side only
// if the program redirects it.
const (
	cmdTimeout     = 10 * time.Second // one ip invocation; they take milliseconds
	ethtoolSTXCSUM = 0x17             // ETHTOOL_STXCSUM, linux/ethtool.h
	siocETHTOOL    = 0x8946           // SIOCETHTOOL, linux/sockios.h
)

type topo struct {
	client, server, peer string // namespace names
}

var nsSeq atomic.Int64

// requireNetns skips without root or ip, unless SWITCHBOARD_E2E=1.
func requireNetns(t testing.TB) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("SWITCHBOARD_E2E=1 but "+format, args...)
		}
		t.Skipf(format+" (set SWITCHBOARD_E2E=1 to make this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		missing("network namespaces and eBPF need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing("ip not on PATH: %v", err)
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTopo builds the three namespaces. Checksum offload is turned off on the client's
// and peer's interfaces so their packets arrive with complete checksums, as from a
// real NIC (a veth otherwise hands over CHECKSUM_PARTIAL packets, which the program
// leaves to user space unless they stay on the host; see TestPartialChecksumToUserSpace).
func newTopo(t *testing.T, txCsumOff bool) topo {
	t.Helper()
	requireNetns(t)
	p := fmt.Sprintf("sbo%d-%d-", os.Getpid(), nsSeq.Add(1))
	tp := topo{client: p + "c", server: p + "s", peer: p + "p"}
	for _, ns := range []string{tp.client, tp.server, tp.peer} {
		addNetns(t, ns)
	}
	run(t, "ip", "-n", tp.client, "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", tp.server)
	run(t, "ip", "-n", tp.peer, "link", "add", "p0", "type", "veth", "peer", "name", "s1", "netns", tp.server)
	for _, a := range [][]string{
		{tp.client, "c0", "10.201.1.2/24", "fd00:201:1::2/64"},
		{tp.server, "s0", "10.201.1.1/24", "fd00:201:1::1/64"},
		{tp.server, "s1", "10.201.2.1/24", "fd00:201:2::1/64"},
		{tp.peer, "p0", "10.201.2.2/24", "fd00:201:2::2/64"},
	} {
		run(t, "ip", "-n", a[0], "addr", "add", a[2], "dev", a[1])
		run(t, "ip", "-n", a[0], "addr", "add", a[3], "dev", a[1], "nodad")
		run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	run(t, "ip", "-n", tp.client, "route", "add", "default", "via", "10.201.1.1")
	run(t, "ip", "-n", tp.client, "-6", "route", "add", "default", "via", "fd00:201:1::1")
	run(t, "ip", "-n", tp.peer, "route", "add", "default", "via", "10.201.2.1")
	run(t, "ip", "-n", tp.peer, "-6", "route", "add", "default", "via", "fd00:201:2::1")
	if txCsumOff {
		tp.txChecksum(t, tp.client, "c0", false)
		tp.txChecksum(t, tp.peer, "p0", false)
	}
	return tp
}

// addNetns makes namespace ns with lo up, deleted when the test ends (with what is in
// it: its end of every veth, the programs attached there).
func addNetns(t *testing.T, ns string) {
	t.Helper()
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if t.Failed() {
			// The kernel's drop counters say where a missing packet went.
			out, _ := exec.Command("ip", "netns", "exec", ns, "nstat", "-az").CombinedOutput()
			t.Logf("namespace %s counters:\n%s", ns, grepNonZero(string(out)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		_ = exec.CommandContext(ctx, "ip", "netns", "del", ns).Run()
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// inNS runs fn on a thread inside namespace ns. The thread is never unlocked, so it
// exits with the goroutine instead of going back to the pool in another namespace.
// Sockets and links made in fn stay in ns after it returns.
func inNS(t testing.TB, ns string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

// txChecksum switches a device's transmit checksum offload (ethtool -K dev tx on|off).
func (tp topo) txChecksum(t testing.TB, ns, dev string, on bool) {
	t.Helper()
	inNS(t, ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: ethtoolSTXCSUM}
		if on {
			val.data = 1
		}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data uintptr
			_    [16]byte
		}
		copy(ifr.name[:], dev)
		ifr.data = uintptr(unsafe.Pointer(&val))
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&val)
		if errno != 0 {
			return fmt.Errorf("ethtool tx %v on %s: %w", on, dev, errno)
		}
		return nil
	})
}

// listen opens a UDP socket in ns.
func listen(t testing.TB, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() error {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// attach attaches an Offloader inside the server namespace.
func (tp topo) attach(t testing.TB, cfg Config) *Offloader {
	t.Helper()
	var o *Offloader
	inNS(t, tp.server, func() error {
		var err error
		o, err = Attach(cfg)
		return err
	})
	t.Cleanup(func() { o.Close() })
	return o
}

func grepNonZero(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[1] != "0" && (strings.Contains(f[0], "Ip") || strings.Contains(f[0], "Udp") || strings.Contains(f[0], "Drop")) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
