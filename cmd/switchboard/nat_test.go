package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// natTestBudget bounds the whole NAT test (the brief asks for under 3 minutes); a
	// passing run takes a fraction of it.
	natTestBudget = 150 * time.Second
	// natStartTimeout bounds a server start or a client's (re)connection: both take well
	// under a second, the rest is slack for -race on a shared 2-core machine. A
	// reconnection also waits out the client's backoff (at most natBackoffMax).
	natStartTimeout = 30 * time.Second
	// natMediaTimeout bounds a call from "call" to RTP received on both sides: ICE over
	// a relay, DTLS and one second of media; ICE alone gives up after 25 s by default.
	natMediaTimeout = 40 * time.Second
	// natStepTimeout bounds any quick step (peer list, hangup, probe, exit event).
	natStepTimeout = 15 * time.Second
	// natDrainTimeout is the server's SWITCHBOARD_DRAIN_TIMEOUT: long enough to see a
	// call's media go on through the draining relay (the peers send 50 packets a
	// second), short enough that a drain that never ends costs the test seconds, not
	// the default 25 s.
	natDrainTimeout = "5s"
	// natDrainPackets is how many more RTP packets each peer must receive once the
	// signaling closed, proof that the draining relay did not cut the call. The test
	// waits for them (up to natStepTimeout) rather than counting what arrives in a
	// fixed window, which a loaded machine could fall short of.
	natDrainPackets = 25
)

// TestNAT proves a Switchboard behind a home router serves clients behind symmetric
// NATs and on its own LAN, on the simulated network of nat_net_test.go:
//
//   - two clients behind symmetric NATs call each other: the call connects and media
//     flows both ways, and the selected ICE pair on each side goes through the relay
//     (no direct path exists, and nothing forces relay-only ICE);
//   - a client on the server's LAN calls both (the router does no hairpin NAT, so it
//     cannot use the advertised public address: the relay must reach it directly);
//   - the relay's own counters (/metrics) show each call's media crossing it both ways;
//   - control: the same two clients with STUN only (hole punching, no TURN) cannot
//     connect at all;
//   - the server is restarted (SIGTERM, graceful) under the running clients, with a
//     call in progress: the clients are told to reconnect (close 1012), the call's
//     media goes on while the relay drains, the server exits 0, and the clients
//     reconnect to the new process (a fresh session: it knows none) and call again,
//     all without restarting a client process.
//
// Each host is a re-executed test binary in its own namespace (see TestMain); clients
// are pion/webrtc peers speaking the signaling protocol of signaling/PROTOCOL.md.
func TestNAT(t *testing.T) {
	requireNetns(t)
	ctx, cancel := context.WithTimeout(t.Context(), natTestBudget)
	defer cancel()

	n := buildNATTopology(t)

	secret := make([]byte, 32)
	rand.Read(secret)
	serverEnv := map[string]string{
		"SWITCHBOARD_HTTP_ADDR":   ":" + natHTTPPort,
		"SWITCHBOARD_TURN_ADDR":   ":" + natTURNPort,
		"SWITCHBOARD_PUBLIC_IP":   natPublicIP,
		"SWITCHBOARD_RELAY_PORTS": fmt.Sprintf("%d-%d", natRelayMin, natRelayMax),
		// The two segments the relay legitimately sends to; see nat_net_test.go.
		"SWITCHBOARD_PEER_ALLOW": natInetNet + "," + natLANNet,
		// Fixed across the restart, as an operator's would be.
		"SWITCHBOARD_TURN_SECRET":   hex.EncodeToString(secret),
		"SWITCHBOARD_DRAIN_TIMEOUT": natDrainTimeout,
		"SWITCHBOARD_LOG_LEVEL":     "info",
	}
	server := startNATServer(ctx, t, n, serverEnv, "server#1")

	publicURL := "ws://" + natPublicIP + ":" + natPublicHTTP + "/ws" // through the port-forward
	lanURL := "ws://" + natServerIP + ":" + natHTTPPort + "/ws"      // what a LAN user types
	a := startNATClient(t, n, "clientA", "A", publicURL)
	b := startNATClient(t, n, "clientB", "B", publicURL)
	lan := startNATClient(t, n, "lan", "LAN", lanURL)
	clients := []*natProc{a, b, lan}
	for _, c := range clients {
		ev := c.mustEvent(ctx, "welcome", natStartTimeout, natIs("ready"))
		checkNATICEServers(t, c.label, ev.ICE)
	}
	for _, c := range clients {
		c.waitPeers(ctx, natOthers(c, clients))
	}

	// The topology is what it claims: the port-forward works from outside, and from the
	// LAN the public address is the router itself (no hairpin).
	natProbe(ctx, t, a, natPublicIP+":"+natPublicHTTP, true)
	natProbe(ctx, t, lan, natPublicIP+":"+natPublicHTTP, false)

	natCallAndCheck(ctx, t, server, a, b, "a-b-1")
	natDirectFails(ctx, t, a, b, "a-b-direct")
	natCallAndCheck(ctx, t, server, lan, a, "lan-a-1")
	natCallAndCheck(ctx, t, server, lan, b, "lan-b-1")

	// Logged, not asserted: freeing an allocation is the client's TURN refresh(0), and
	// how fast pion sends it is not what this test is about.
	t.Logf("allocations after the hangups: %v", natMetrics(ctx, t, server)["switchboard_turn_allocations"])

	// Restart under the clients: graceful stop, then a new process with the same config.
	// A call is in progress when SIGTERM arrives: the signaling sessions are told to
	// reconnect at once, but the relay drains (up to SWITCHBOARD_DRAIN_TIMEOUT), so the
	// call's media must keep flowing meanwhile.
	natCallStart(ctx, t, server, a, b, "a-b-drain")
	server.signal(syscall.SIGTERM)
	termAt := time.Now()
	for _, c := range clients {
		ev := c.mustEvent(ctx, "close on restart", natStepTimeout, natIs("closed"))
		if ev.Code != 1012 {
			t.Errorf("%s: connection closed with code %d (%s) on graceful restart, want 1012 (service restart)", c.label, ev.Code, ev.Reason)
		}
	}
	var rtp0 [2]int
	for i, c := range []*natProc{a, b} {
		rtp0[i] = natRTP(ctx, t, c, "a-b-drain")
	}
	for i, c := range []*natProc{a, b} {
		deadline := time.Now().Add(natStepTimeout)
		for {
			got := natRTP(ctx, t, c, "a-b-drain") - rtp0[i]
			if got >= natDrainPackets {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: received %d RTP packets after the signaling closed, want >= %d: the draining relay cut a running call", c.label, got, natDrainPackets)
				break
			}
			time.Sleep(50 * time.Millisecond) // polling the peer's counter, not synchronising
		}
	}
	// Hanging up (locally: there is no signaling now) ends the last allocations, which
	// lets the server finish its drain before the timeout.
	for _, c := range []*natProc{a, b} {
		c.send(natCommand{Cmd: "hangup", Call: "a-b-drain"})
		c.mustEvent(ctx, "end of a-b-drain", natStepTimeout, func(ev natEvent) bool { return ev.Ev == "ended" && ev.Call == "a-b-drain" })
	}
	exit := server.mustEvent(ctx, "exit", natStartTimeout, natIs("exit"))
	if exit.Status != 0 {
		t.Errorf("server#1 exit status after SIGTERM = %d, want 0", exit.Status)
	}
	t.Logf("server#1 exited %v after SIGTERM (drain timeout %s)", time.Since(termAt).Round(time.Millisecond), natDrainTimeout)
	if err := server.wait(natStepTimeout); err != nil {
		t.Errorf("server#1: %v", err)
	}
	server = startNATServer(ctx, t, n, serverEnv, "server#2")
	for _, c := range clients {
		ev := c.mustEvent(ctx, "welcome after restart", natStartTimeout, natIs("ready"))
		// A restarted server knows no session; a client must get a fresh one (by a
		// welcome with resumed=false, or a 4002 close and a fresh hello).
		if ev.Resumed {
			t.Errorf("%s: session resumed on a restarted server", c.label)
		}
		checkNATICEServers(t, c.label, ev.ICE)
	}
	for _, c := range clients {
		c.waitPeers(ctx, natOthers(c, clients))
	}
	natCallAndCheck(ctx, t, server, a, b, "a-b-2")
	natCallAndCheck(ctx, t, server, lan, a, "lan-a-2")

	// Clients first, so that they do not see the server go and try to reconnect.
	for _, p := range []*natProc{a, b, lan, server} {
		p.stop()
	}
}

// startNATServer starts Switchboard in the server namespace and waits until its /readyz
// answers.
func startNATServer(ctx context.Context, t testing.TB, n *natNet, env map[string]string, label string) *natProc {
	t.Helper()
	p := startNATProc(t, n, "server", label, "nat-server", env)
	ev := p.mustEvent(ctx, "ready", natStartTimeout, func(ev natEvent) bool { return ev.Ev == "ready" || ev.Ev == "exit" })
	if ev.Ev == "exit" {
		t.Fatalf("%s exited with status %d before it was ready", label, ev.Status)
	}
	return p
}

func startNATClient(t testing.TB, n *natNet, ns, name, wsURL string) *natProc {
	t.Helper()
	p := startNATProc(t, n, ns, "client "+name, "nat-client", map[string]string{
		envNATClientName: name,
		envNATClientURL:  wsURL,
	})
	p.name = name
	return p
}

// natCallAndCheck is natCallStart followed by a hangup.
func natCallAndCheck(ctx context.Context, t *testing.T, server, caller, callee *natProc, id string) {
	t.Helper()
	natCallStart(ctx, t, server, caller, callee, id)
	caller.send(natCommand{Cmd: "hangup", Call: id})
	for _, side := range []*natProc{caller, callee} {
		side.mustEvent(ctx, "end of "+id, natStepTimeout, func(ev natEvent) bool { return ev.Ev == "ended" && ev.Call == id })
	}
}

// natCallStart has caller call callee, waits for media on both sides, and checks each
// side's selected pair goes through the relay and that the server's relay counted the
// media both ways. The call goes on.
func natCallStart(ctx context.Context, t *testing.T, server, caller, callee *natProc, id string) {
	t.Helper()
	before := natMetrics(ctx, t, server)
	caller.send(natCommand{Cmd: "call", To: callee.name, Call: id})
	for _, side := range []*natProc{caller, callee} {
		ev := side.mustEvent(ctx, "media on "+id, natMediaTimeout, func(ev natEvent) bool { return ev.Ev == "media" && ev.Call == id })
		t.Logf("%s: %s receives %d+ RTP packets over %s %s ↔ %s %s", id, side.label, ev.RTP, ev.Local, ev.LocalAddr, ev.Remote, ev.RemoteAddr)
		if ev.Err != "" {
			t.Errorf("%s: %s: %s", id, side.label, ev.Err)
		}
		if !natRelayed(ev) {
			t.Errorf("%s: %s: selected pair %s %s ↔ %s %s does not go through the relay", id, side.label, ev.Local, ev.LocalAddr, ev.Remote, ev.RemoteAddr)
		}
	}
	// Both sides received natMediaPackets, and every one of them crossed the relay, so
	// the relay's own counters must have moved by at least that much each way
	// (to_peer: a client sending through its allocation; from_peer: the other way).
	after := natMetrics(ctx, t, server)
	for _, dir := range []string{"to_peer", "from_peer"} {
		key := `switchboard_turn_relayed_packets_total{direction=` + dir + `}`
		if d := after[key] - before[key]; d < natMediaPackets {
			t.Errorf("%s: %s grew by %v during the call, want >= %d", id, key, d, natMediaPackets)
		}
	}
}

// natDirectFails is the control experiment: caller calls callee with STUN only (no
// TURN server), so the peers can only try host and server-reflexive candidates. Between
// two symmetric NATs that must fail: were a direct path possible, the relayed calls
// would prove less.
func natDirectFails(ctx context.Context, t *testing.T, caller, callee *natProc, id string) {
	t.Helper()
	caller.send(natCommand{Cmd: "call", To: callee.name, Call: id, Direct: true})
	for _, side := range []*natProc{caller, callee} {
		ev := side.mustEvent(ctx, "end of ICE on "+id, natMediaTimeout, func(ev natEvent) bool {
			return (ev.Ev == "media" || ev.Ev == "ice-failed") && ev.Call == id
		})
		switch {
		case ev.Ev == "media":
			t.Errorf("%s: %s has media without a relay, over %s %s ↔ %s %s: a direct path exists", id, side.label, ev.Local, ev.LocalAddr, ev.Remote, ev.RemoteAddr)
		case !slices.Contains(strings.Split(ev.Local, ","), "srflx"):
			// Without a server-reflexive candidate the failure would prove nothing about
			// the NAT: hole punching would not even have been tried.
			t.Errorf("%s: %s gathered only %q, want a srflx candidate among them", id, side.label, ev.Local)
		default:
			t.Logf("%s: %s: ICE failed with local candidates %s and no TURN, as it must", id, side.label, ev.Local)
		}
	}
	caller.send(natCommand{Cmd: "hangup", Call: id})
	for _, side := range []*natProc{caller, callee} {
		side.mustEvent(ctx, "end of "+id, natStepTimeout, func(ev natEvent) bool { return ev.Ev == "ended" && ev.Call == id })
	}
}

// natRTP is how many RTP packets client p has received in call id.
func natRTP(ctx context.Context, t testing.TB, p *natProc, id string) int {
	t.Helper()
	p.send(natCommand{Cmd: "stats", Call: id})
	return p.mustEvent(ctx, "stats "+id, natStepTimeout, func(ev natEvent) bool { return ev.Ev == "stats" && ev.Call == id }).RTP
}

// natMetrics scrapes the server's /metrics (from inside its namespace).
func natMetrics(ctx context.Context, t testing.TB, server *natProc) map[string]float64 {
	t.Helper()
	server.send(natCommand{Cmd: "metrics"})
	return server.mustEvent(ctx, "metrics", natStepTimeout, natIs("metrics")).Metrics
}

// natRelayed reports whether one side's selected pair goes through Switchboard's relay:
// either this side sends from its own relay candidate (which the server advertises as
// the public address and a relay port), or the remote address is a relay port of the
// server, seen as the public address (from outside) or as the server's LAN address (from
// the LAN, where the relay reaches the client directly).
func natRelayed(ev natEvent) bool {
	isRelayPort := func(addr string, ips ...string) bool {
		ap, err := netip.ParseAddrPort(addr)
		return err == nil && slices.Contains(ips, ap.Addr().String()) &&
			ap.Port() >= natRelayMin && ap.Port() <= natRelayMax
	}
	return (ev.Local == "relay" && isRelayPort(ev.LocalAddr, natPublicIP)) ||
		isRelayPort(ev.RemoteAddr, natPublicIP, natServerIP)
}

// checkNATICEServers checks that every STUN/TURN URL handed to a client advertises the
// configured public address (SWITCHBOARD_PUBLIC_IP), never the server's LAN address.
func checkNATICEServers(t testing.TB, label string, urls []string) {
	t.Helper()
	if len(urls) == 0 {
		t.Errorf("%s: welcome has no iceServers", label)
	}
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			t.Errorf("%s: ice server URL %q: %v", label, u, err)
			continue
		}
		hostport, _, _ := strings.Cut(pu.Opaque, "?")
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			host = hostport
		}
		if (pu.Scheme == "stun" || pu.Scheme == "turn") && host != natPublicIP {
			t.Errorf("%s: ice server %q advertises %q, want the public IP %s", label, u, host, natPublicIP)
		}
	}
}

func natProbe(ctx context.Context, t testing.TB, p *natProc, addr string, want bool) {
	t.Helper()
	p.send(natCommand{Cmd: "probe", Addr: addr})
	ev := p.mustEvent(ctx, "probe "+addr, natStepTimeout, func(ev natEvent) bool { return ev.Ev == "probe" && ev.Addr == addr })
	if ev.OK != want {
		t.Fatalf("%s: TCP dial %s succeeded=%v, want %v: the topology is not what the test claims", p.label, addr, ev.OK, want)
	}
}

// natOthers are the names of every client but c.
func natOthers(c *natProc, all []*natProc) []string {
	var names []string
	for _, o := range all {
		if o != c {
			names = append(names, o.name)
		}
	}
	return names
}

func natIs(ev string) func(natEvent) bool {
	return func(e natEvent) bool { return e.Ev == ev }
}

// waitPeers waits until the client's room shows every name in want.
func (p *natProc) waitPeers(ctx context.Context, want []string) {
	p.t.Helper()
	has := func(peers []string) bool {
		for _, w := range want {
			if !slices.Contains(peers, w) {
				return false
			}
		}
		return true
	}
	if has(p.peers) {
		return
	}
	p.mustEvent(ctx, "peers "+strconv.Quote(strings.Join(want, ",")), natStepTimeout, func(ev natEvent) bool {
		return ev.Ev == "peers" && has(ev.Peers)
	})
}

// TestNATRelayed pins what the NAT test accepts as "through the relay", with pairs seen
// in real runs and the direct ones it must refuse.
func TestNATRelayed(t *testing.T) {
	tests := []struct {
		name string
		ev   natEvent
		want bool
	}{
		{"own relay candidate", natEvent{Local: "relay", LocalAddr: "203.0.113.1:50058", Remote: "prflx", RemoteAddr: "203.0.113.11:9789"}, true},
		{"peer's relay candidate", natEvent{Local: "host", LocalAddr: "10.0.1.2:47598", Remote: "relay", RemoteAddr: "203.0.113.1:50058"}, true},
		{"relay seen from the LAN", natEvent{Local: "host", LocalAddr: "192.168.77.20:47854", Remote: "prflx", RemoteAddr: "192.168.77.10:50038"}, true},
		{"relay type from another server", natEvent{Local: "relay", LocalAddr: "198.51.100.1:50058", Remote: "host", RemoteAddr: "10.0.2.2:4000"}, false},
		{"direct through NAT mappings", natEvent{Local: "srflx", LocalAddr: "203.0.113.11:1234", Remote: "srflx", RemoteAddr: "203.0.113.12:5678"}, false},
		{"server LAN address, not a relay port", natEvent{Local: "host", LocalAddr: "192.168.77.20:1", Remote: "host", RemoteAddr: "192.168.77.10:8080"}, false},
		{"public address, TURN port", natEvent{Local: "host", LocalAddr: "10.0.1.2:1", Remote: "prflx", RemoteAddr: "203.0.113.1:3478"}, false},
		{"no pair", natEvent{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := natRelayed(tt.ev); got != tt.want {
				t.Errorf("natRelayed(%+v) = %v, want %v", tt.ev, got, tt.want)
			}
		})
	}
}
