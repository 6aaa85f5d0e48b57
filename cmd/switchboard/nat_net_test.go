package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The simulated network of the NAT test. Every address below exists only inside the
// network namespaces the test creates; the host namespace gets no interface, no route and
// no packet of it.
//
//	clientA 10.0.1.2          clientB 10.0.2.2
//	   │                         │
//	 natA  10.0.1.1 | 203.0.113.11      natB 10.0.2.1 | 203.0.113.12
//	(MASQUERADE --random-fully)        (MASQUERADE --random-fully)
//	   └──────────── inet: bridge 203.0.113.0/24 ────────────┘
//	                         │
//	            router 203.0.113.1 (WAN) | 192.168.77.1 (LAN bridge)
//	            DNAT 80/tcp→:8080, 3478/udp+tcp, 50000-50100/udp; no hairpin
//	                ┌────────┴────────┐
//	         server 192.168.77.10   lan 192.168.77.20
//
// Why these ranges: the "internet" is 203.0.113.0/24 (TEST-NET-3, RFC 5737), which can
// never be anybody's real address, so even a mistake could not send traffic to a real
// host. The home LAN is RFC 1918 like a real one, and the clients' own LANs too. The
// relay's default peer deny-list refuses RFC 1918 and documentation ranges (a relay must
// not be a door into its own LAN), so the server runs with SWITCHBOARD_PEER_ALLOW set to
// exactly the two segments a relay legitimately sends to here: the internet segment (the
// clients' NAT mappings) and the server's own LAN (the third client, reachable from the
// relay only directly, because the router does no hairpin NAT). The clients' private
// ranges 10.0.1.0/24 and 10.0.2.0/24 stay denied: their host candidates are unreachable
// from the relay anyway.
const (
	natPublicIP  = "203.0.113.1"
	natInetNet   = "203.0.113.0/24"
	natNATAWAN   = "203.0.113.11"
	natNATBWAN   = "203.0.113.12"
	natLANNet    = "192.168.77.0/24"
	natRouterLAN = "192.168.77.1"
	natServerIP  = "192.168.77.10"
	natLANIP     = "192.168.77.20"

	// natRelayMin and natRelayMax bound the relay port range: 101 ports are plenty for a
	// handful of allocations and keep the router's port-forward one rule, the way the
	// deploy/ docs tell operators to publish a small range instead of 16k ports.
	natRelayMin = 50000
	natRelayMax = 50100

	natHTTPPort    = "8080" // server side
	natPublicHTTP  = "80"   // router side, forwarded to natHTTPPort
	natTURNPort    = "3478"
	natCmdTimeout  = 10 * time.Second // one ip/iptables/sysctl invocation; they take ms
	natNSNameLimit = 64
)

// natTools are the programs the NAT test needs on PATH.
var natTools = []string{"ip", "iptables", "sysctl"}

// requireNetns skips the test when it cannot build namespaces (not root, tools missing),
// unless SWITCHBOARD_E2E=1, where that is a failure.
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
		missing("network namespaces need root (euid %d)", os.Geteuid())
	}
	for _, tool := range natTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing("%s not on PATH: %v", tool, err)
		}
	}
	// Being root is not enough inside some containers (no CAP_SYS_ADMIN, no netfilter):
	// probe the whole chain once, with a namespace of our own.
	probe := fmt.Sprintf("%sprobe%d", natNSPrefix, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), natCmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", probe).CombinedOutput(); err != nil {
		missing("cannot create a network namespace: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", probe).Run() //nolint:errcheck // best effort; reported below if it matters
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", probe,
		"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE", "--random-fully").CombinedOutput()
	if err != nil {
		missing("iptables MASQUERADE --random-fully does not work in a namespace: %v: %s", err, out)
	}
}

// natNSPrefix starts the name of every namespace this test creates: "sbnat<pid>-<host>".
const natNSPrefix = "sbnat"

// removeStaleNATNamespaces deletes the namespaces of earlier runs whose test process is
// gone without its cleanup (killed by go test's -timeout, SIGKILL). Only names of our
// own pattern with a dead creator pid are touched.
func removeStaleNATNamespaces(t testing.TB) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return // nothing we can clean; creating ours will report real problems
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, ok := strings.CutPrefix(name, natNSPrefix)
		if !ok {
			continue
		}
		pid, _, ok = strings.Cut(pid, "-")
		if !ok || strings.Trim(pid, "0123456789") != "" || pid == "" {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its test still runs
		}
		if err := exec.Command("ip", "netns", "del", name).Run(); err != nil {
			t.Logf("removing stale namespace %s: %v", name, err)
		} else {
			t.Logf("removed stale namespace %s", name)
		}
	}
}

// natNet owns the namespaces of one test run and removes them in t.Cleanup.
type natNet struct {
	t      testing.TB
	prefix string // unique per run: "sbnat<pid>-"
}

func newNATNet(t testing.TB) *natNet {
	t.Helper()
	removeStaleNATNamespaces(t)
	return &natNet{t: t, prefix: fmt.Sprintf("%s%d-", natNSPrefix, os.Getpid())}
}

// name is the system-wide name of the test's namespace short.
func (n *natNet) name(short string) string { return n.prefix + short }

// run runs one command and fails the test with its output when it fails.
func (n *natNet) run(args ...string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// in runs a command inside namespace short.
func (n *natNet) in(short string, args ...string) {
	n.t.Helper()
	n.run(append([]string{"ip", "netns", "exec", n.name(short)}, args...)...)
}

// addNS creates a namespace with loopback up; t.Cleanup deletes it, which also destroys
// every interface inside it (and with a veth end, its peer).
func (n *natNet) addNS(short string) {
	n.t.Helper()
	name := n.name(short)
	if len(name) > natNSNameLimit {
		n.t.Fatalf("namespace name %q too long", name)
	}
	n.run("ip", "netns", "add", name)
	n.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), natCmdTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
			n.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n.run("ip", "-n", name, "link", "set", "lo", "up")
}

// veth joins namespace a (interface ifA) to namespace b (interface ifB). Both ends are
// created directly inside their namespaces, so no interface ever appears on the host.
func (n *natNet) veth(a, ifA, b, ifB string) {
	n.t.Helper()
	n.run("ip", "link", "add", "name", ifA, "netns", n.name(a), "type", "veth",
		"peer", "name", ifB, "netns", n.name(b))
}

// up sets addr (CIDR, may be empty) on dev in namespace short and brings it up.
func (n *natNet) up(short, dev, addr string) {
	n.t.Helper()
	if addr != "" {
		n.run("ip", "-n", n.name(short), "addr", "add", addr, "dev", dev)
	}
	n.run("ip", "-n", n.name(short), "link", "set", dev, "up")
}

// bridge creates bridge br in namespace short and enslaves ports to it.
func (n *natNet) bridge(short, br string, ports ...string) {
	n.t.Helper()
	ns := n.name(short)
	n.run("ip", "-n", ns, "link", "add", br, "type", "bridge")
	for _, p := range ports {
		n.run("ip", "-n", ns, "link", "set", p, "master", br)
		n.run("ip", "-n", ns, "link", "set", p, "up")
	}
}

func (n *natNet) defaultRoute(short, via string) {
	n.t.Helper()
	n.run("ip", "-n", n.name(short), "route", "add", "default", "via", via)
}

// forwarding turns a namespace into a router. The sysctl is per namespace: the host's
// ip_forward is never touched.
func (n *natNet) forwarding(short string) {
	n.t.Helper()
	n.in(short, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

func (n *natNet) iptables(short string, rule ...string) {
	n.t.Helper()
	n.in(short, append([]string{"iptables"}, rule...)...)
}

// buildNATTopology creates the network drawn at the top of this file.
func buildNATTopology(t testing.TB) *natNet {
	t.Helper()
	n := newNATNet(t)
	for _, ns := range []string{"inet", "router", "server", "lan", "natA", "clientA", "natB", "clientB"} {
		n.addNS(ns)
	}

	// The internet: one bridge joining the WAN sides of the three routers.
	n.veth("inet", "p-router", "router", "wan")
	n.veth("inet", "p-natA", "natA", "wan")
	n.veth("inet", "p-natB", "natB", "wan")
	n.bridge("inet", "br0", "p-router", "p-natA", "p-natB")
	n.up("inet", "br0", "")

	// The home network: a bridge in the router joining its LAN address, the server and
	// the third client.
	n.veth("router", "p-server", "server", "eth0")
	n.veth("router", "p-lan", "lan", "eth0")
	n.bridge("router", "br-lan", "p-server", "p-lan")
	n.up("router", "br-lan", natRouterLAN+"/24")
	n.up("router", "wan", natPublicIP+"/24")
	n.up("server", "eth0", natServerIP+"/24")
	n.up("lan", "eth0", natLANIP+"/24")
	n.defaultRoute("server", natRouterLAN)
	n.defaultRoute("lan", natRouterLAN)

	// The home router: port-forwards to the server, masquerade for the LAN going out, a
	// stateful firewall, and deliberately no hairpin NAT: LAN hosts connecting to the
	// public address reach the router itself (nothing listens there), as on many real
	// routers. The forwards match only on the WAN interface for the same reason.
	n.forwarding("router")
	srv := natServerIP
	for _, r := range [][]string{
		{"-p", "tcp", "--dport", natPublicHTTP, "-j", "DNAT", "--to-destination", srv + ":" + natHTTPPort},
		{"-p", "udp", "--dport", natTURNPort, "-j", "DNAT", "--to-destination", srv + ":" + natTURNPort},
		{"-p", "tcp", "--dport", natTURNPort, "-j", "DNAT", "--to-destination", srv + ":" + natTURNPort},
		{"-p", "udp", "--dport", fmt.Sprintf("%d:%d", natRelayMin, natRelayMax), "-j", "DNAT", "--to-destination", srv},
	} {
		n.iptables("router", append([]string{"-t", "nat", "-A", "PREROUTING", "-i", "wan"}, r...)...)
	}
	n.iptables("router", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
	n.iptables("router", "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT")
	n.iptables("router", "-A", "FORWARD", "-i", "wan", "-j", "DROP")

	// The two clients' routers: symmetric NAT. --random-fully gives every new flow
	// (5-tuple) its own random source port, so the mapping a client learns from STUN is
	// useless to anybody but the STUN server, and the firewall drops whatever does not
	// answer a flow the inside opened: no direct path between clientA and clientB can
	// exist, hole punching included.
	for _, side := range []struct{ nat, client, wan, lanNet, gw, ip string }{
		{"natA", "clientA", natNATAWAN, "10.0.1.0/24", "10.0.1.1", "10.0.1.2"},
		{"natB", "clientB", natNATBWAN, "10.0.2.0/24", "10.0.2.1", "10.0.2.2"},
	} {
		n.veth(side.nat, "lan", side.client, "eth0")
		n.up(side.nat, "wan", side.wan+"/24")
		n.up(side.nat, "lan", side.gw+"/24")
		n.up(side.client, "eth0", side.ip+"/24")
		n.defaultRoute(side.client, side.gw)
		n.forwarding(side.nat)
		n.iptables(side.nat, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
		n.iptables(side.nat, "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		n.iptables(side.nat, "-A", "FORWARD", "-i", "wan", "-j", "DROP")
	}
	return n
}
