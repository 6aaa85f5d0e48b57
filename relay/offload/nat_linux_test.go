package offload

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/switchboard-rtc/switchboard/relay"
)

// TestBehindNAT: the deploy guide's port forward. The server has a private address and
// the router forwards the TURN port and the relay ports to it; clients and peers know
// only the router's public address. Forwarded packets leave the server through its
// default gateway (bpf_redirect_neigh to the router), and the router's connection
// tracking rewrites them as it does the user-space path's, so client and peer see the
// public address. The router also checks their checksums (nf_conntrack_checksum).
//
//	inet ns                     router ns                         server ns
//	i0 203.0.113.11 (client) ── rw 203.0.113.1 | rl 192.168.77.1 ── s0 192.168.77.10
//	   203.0.113.12 (peer)      DNAT udp 3478, 50000-50100 → .10; MASQUERADE out
//
// 203.0.113.0/24 is TEST-NET-3 (RFC 5737): no real host can have it.
func TestBehindNAT(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		missingTool(t, "iptables not on PATH: %v", err)
	}
	p := fmt.Sprintf("sbo%d-%d-", os.Getpid(), nsSeq.Add(1))
	tp := topo{client: p + "i", server: p + "s", peer: p + "i"}
	router := p + "r"
	for _, ns := range []string{tp.client, router, tp.server} {
		addNetns(t, ns)
	}
	run(t, "ip", "-n", tp.client, "link", "add", "i0", "type", "veth", "peer", "name", "rw", "netns", router)
	run(t, "ip", "-n", tp.server, "link", "add", "s0", "type", "veth", "peer", "name", "rl", "netns", router)
	for _, a := range [][]string{
		{tp.client, "i0", "203.0.113.11/24"}, {tp.client, "i0", "203.0.113.12/24"},
		{router, "rw", "203.0.113.1/24"}, {router, "rl", "192.168.77.1/24"},
		{tp.server, "s0", "192.168.77.10/24"},
	} {
		run(t, "ip", "-n", a[0], "addr", "add", a[2], "dev", a[1])
		run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	run(t, "ip", "-n", tp.server, "route", "add", "default", "via", "192.168.77.1")
	run(t, "ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "netns", "exec", router, "sysctl", "-qw", "net.netfilter.nf_conntrack_checksum=1")
	for _, rule := range [][]string{
		{"-t", "nat", "-A", "PREROUTING", "-i", "rw", "-p", "udp", "--dport", "3478", "-j", "DNAT", "--to-destination", "192.168.77.10"},
		{"-t", "nat", "-A", "PREROUTING", "-i", "rw", "-p", "udp", "--dport", "50000:50100", "-j", "DNAT", "--to-destination", "192.168.77.10"},
		{"-t", "nat", "-A", "POSTROUTING", "-o", "rw", "-j", "MASQUERADE"},
		// Only what the port forward lets in reaches the LAN, as on a home router.
		{"-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-i", "rl", "-j", "ACCEPT"},
		{"-P", "FORWARD", "DROP"},
	} {
		run(t, append([]string{"ip", "netns", "exec", router, "iptables"}, rule...)...)
	}
	tp.txChecksum(t, tp.client, "i0", false)

	s := &setup{tp: tp}
	s.o = tp.attach(t, Config{})
	s.client = listen(t, tp.client, "203.0.113.11:0")
	s.peer = listen(t, tp.client, "203.0.113.12:0")
	s.listener = listen(t, tp.server, "0.0.0.0:3478")
	s.relay = listen(t, tp.server, "0.0.0.0:50000")
	// What client and peer know: the router's address.
	s.server = netip.MustParseAddrPort("203.0.113.1:3478")
	s.relayAt = netip.MustParseAddrPort("203.0.113.1:50000")
	// What the server sees: the client and peer as they are (a port forward keeps
	// the source), its own sockets bound to the wildcard.
	s.flow = relay.Flow{
		Client:  addrPort(s.client),
		Server:  netip.MustParseAddrPort("0.0.0.0:3478"),
		Relay:   netip.MustParseAddrPort("0.0.0.0:50000"),
		Peer:    addrPort(s.peer),
		Channel: 0x4001,
	}
	// Before the flow exists both sides reach user space, which is how ICE starts
	// (and the router learns the mappings the replies ride on).
	send(t, s.client, s.server, channelData(s.flow.Channel, []byte("hello")))
	if _, from := recv(t, s.listener); from != s.flow.Client {
		t.Fatalf("listener got a packet from %v, want %v", from, s.flow.Client)
	}
	send(t, s.peer, s.relayAt, []byte("hello"))
	if _, from := recv(t, s.relay); from != s.flow.Peer {
		t.Fatalf("relay socket got a packet from %v, want %v", from, s.flow.Peer)
	}
	if err := s.o.Add(s.flow); err != nil {
		t.Fatalf("Add = %v", err)
	}
	var want relay.FlowCounts
	for i := range 20 {
		p := []byte(fmt.Sprintf("packet %d through the port forward", i))
		s.toClient(t, p)
		s.toPeerPadded(t, p, make([]byte, (4-len(p)%4)%4))
		want.ToPeerPackets++
		want.ToClientPackets++
		want.ToPeerBytes += uint64(len(p))
		want.ToClientBytes += uint64(len(p))
	}
	nothingQueued(t, s.listener, "listener")
	nothingQueued(t, s.relay, "relay socket")
	if got, err := s.o.Remove(s.flow); err != nil || got != want {
		t.Fatalf("Remove = %+v, %v, want %+v", got, err, want)
	}
}
