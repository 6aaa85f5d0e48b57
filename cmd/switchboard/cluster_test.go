package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

const testClusterSecret = "cluster-secret-0123456789"

// TestClusterConfig: each bad cluster setting stops start-up with one line
// naming its variable; good ones pass, and cluster settings are ignored when
// the mode is off.
func TestClusterConfig(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{
			"SWITCHBOARD_CLUSTER":        "embedded",
			"SWITCHBOARD_TURN_SECRET":    "turn-secret-0123456789",
			"SWITCHBOARD_CLUSTER_SECRET": testClusterSecret,
			"SWITCHBOARD_CLUSTER_ROUTES": "nats://10.0.0.1:6222,nats://10.0.0.2:6222",
			"SWITCHBOARD_NODE_NAME":      "node-1",
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, "SWITCHBOARD_"+kv[i])
			} else {
				m["SWITCHBOARD_"+kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // "": valid
	}{
		{"embedded ok", base(), ""},
		{"external ok", base("CLUSTER", "external", "CLUSTER_ROUTES", "", "NATS_URL", "nats://u:p@10.0.0.9:4222,tls://10.0.0.8:4222"), ""},
		{"off ignores the rest", base("CLUSTER", "off", "TURN_SECRET", "", "CLUSTER_SECRET", "short", "NODE_NAME", "a.b"), ""},
		{"default off", map[string]string{}, ""},
		{"unknown mode", base("CLUSTER", "mesh"), "SWITCHBOARD_CLUSTER"},
		{"no turn secret", base("TURN_SECRET", ""), "SWITCHBOARD_TURN_SECRET"},
		{"no cluster secret", base("CLUSTER_SECRET", ""), "SWITCHBOARD_CLUSTER_SECRET"},
		{"short cluster secret", base("CLUSTER_SECRET", "0123456789abcde"), "SWITCHBOARD_CLUSTER_SECRET"},
		{"node name with a dot", base("NODE_NAME", "a.b"), "SWITCHBOARD_NODE_NAME"},
		{"node name with a space", base("NODE_NAME", "a b"), "SWITCHBOARD_NODE_NAME"},
		{"cluster name wildcard", base("CLUSTER_NAME", "sb.*"), "SWITCHBOARD_CLUSTER_NAME"},
		{"no routes", base("CLUSTER_ROUTES", ""), "SWITCHBOARD_CLUSTER_ROUTES"},
		{"route not nats", base("CLUSTER_ROUTES", "http://10.0.0.1:6222"), "SWITCHBOARD_CLUSTER_ROUTES"},
		{"route without port", base("CLUSTER_ROUTES", "nats://10.0.0.1"), "SWITCHBOARD_CLUSTER_ROUTES"},
		{"route with credentials", base("CLUSTER_ROUTES", "nats://u:p@10.0.0.1:6222"), "SWITCHBOARD_CLUSTER_ROUTES"},
		{"bad listen", base("CLUSTER_LISTEN", "6222"), "SWITCHBOARD_CLUSTER_LISTEN"},
		{"bad advertise", base("CLUSTER_ADVERTISE", "host"), "SWITCHBOARD_CLUSTER_ADVERTISE"},
		{"external without url", base("CLUSTER", "external"), "SWITCHBOARD_NATS_URL"},
		{"external http url", base("CLUSTER", "external", "NATS_URL", "http://10.0.0.9:4222"), "SWITCHBOARD_NATS_URL"},
		{"turn backup ok", base("CLUSTER_TURN_BACKUP", "true"), ""},
		{"turn backup without a cluster", map[string]string{"SWITCHBOARD_CLUSTER_TURN_BACKUP": "true"}, "SWITCHBOARD_CLUSTER_TURN_BACKUP"},
		{"turn backup not a bool", base("CLUSTER_TURN_BACKUP", "maybe"), "SWITCHBOARD_CLUSTER_TURN_BACKUP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfigMap(tt.env)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var ce *configError
			if !errors.As(err, &ce) || ce.Var != tt.wantVar {
				t.Fatalf("got %v, want an error naming %s", err, tt.wantVar)
			}
			if strings.Contains(ce.Error(), "\n") || strings.Contains(ce.Error(), "u:p@") {
				t.Fatalf("error %q: want one line without the URL's password", ce.Error())
			}
		})
	}
	t.Run("node name defaults to the host name", func(t *testing.T) {
		cfg, err := parseConfigMap(base("NODE_NAME", ""))
		h, _ := os.Hostname()
		if err == nil && cfg.NodeName != strings.ReplaceAll(h, ".", "-") {
			t.Fatalf("NODE_NAME %q, want the host name %q with dots as -", cfg.NodeName, h)
		}
		if err != nil && !strings.Contains(err.Error(), "SWITCHBOARD_NODE_NAME") {
			t.Fatalf("host name %q not usable, but the error does not say NODE_NAME: %v", h, err)
		}
	})
}

// TestClusterOffIsSingleNode: by default nothing of the cluster exists: no
// NATS, no listener, the hub's own router.
func TestClusterOffIsSingleNode(t *testing.T) {
	a := startStack(t, nil)
	if a.cluster != nil {
		t.Fatal("cluster started with SWITCHBOARD_CLUSTER unset")
	}
	for name := range scrape(t, a.httpURL()+"/metrics") {
		if strings.HasPrefix(name, "switchboard_cluster_") {
			t.Errorf("/metrics has %s in single-node mode", name)
		}
	}
}

// loopbackPorts reserves n free loopback TCP ports.
func loopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	return ports
}

// startClusterStacks runs n whole servers in one embedded cluster on
// loopback (node1..noden, one TURN secret, extra settings on each) and waits
// until each has linked to all the others. It returns them and the routes.
func startClusterStacks(t *testing.T, n int, extra map[string]string) ([]*app, []string) {
	t.Helper()
	ports := loopbackPorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	turn := stackDefaults(t)["SWITCHBOARD_TURN_SECRET"]
	apps := make([]*app, n)
	for i := range apps {
		env := map[string]string{
			"CLUSTER":        "embedded",
			"NODE_NAME":      fmt.Sprintf("node%d", i+1),
			"CLUSTER_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[i]),
			"CLUSTER_ROUTES": strings.Join(routes, ","),
			"CLUSTER_SECRET": testClusterSecret,
			"TURN_SECRET":    turn,
		}
		maps.Copy(env, extra)
		apps[i] = startStack(t, env)
	}
	ctx, cancel := context.WithTimeout(t.Context(), routertest.WaitFor)
	defer cancel()
	for _, a := range apps {
		if err := a.cluster.waitPeers(ctx, n-1); err != nil {
			t.Fatal(err)
		}
	}
	return apps, routes
}

// TestClusterStacks: three whole servers (relay, hub, web, metrics) in one
// process with SWITCHBOARD_CLUSTER=embedded on loopback: clients on different
// nodes meet in a room, signal and call; /metrics counts the peers and the
// routed envelopes.
func TestClusterStacks(t *testing.T) {
	apps, routes := startClusterStacks(t, 3, nil)

	var banner strings.Builder
	apps[0].banner(&banner)
	if want := "  cluster    node node1 of \"switchboard\", embedded NATS, routes on 127.0.0.1:"; !strings.Contains(banner.String(), want) ||
		!strings.Contains(banner.String(), strings.Join(routes, ",")) {
		t.Errorf("start-up block lacks the node, the mode and the peers (%q):\n%s", want, banner.String())
	}

	alice := routertest.Dial(t, apps[0].httpURL(), "alice", "team")
	routertest.Eventually(t, "node 2 knows alice", func() bool { return len(apps[1].cluster.router.Members("team")) == 1 })
	bob := routertest.Dial(t, apps[1].httpURL(), "bob", "team")
	if len(bob.Welcome.Peers) != 1 || bob.Welcome.Peers[0].ID != alice.ID {
		t.Fatalf("bob's welcome peers %+v, want alice", bob.Welcome.Peers)
	}
	alice.Expect(wire.TypePeerJoined)

	alice.Send(wire.Call{Type: wire.TypeCall, To: bob.ID, Call: "x"})
	bob.Expect(wire.TypeCall)
	alice.Expect(wire.TypeRinging)
	bob.Send(wire.CallAction{Type: wire.TypeAccept, Call: "x"})
	bob.Expect(wire.TypeAccepted)
	alice.Expect(wire.TypeAccepted)
	bob.Send(wire.Signal{Type: wire.TypeSignal, To: alice.ID, Data: []byte(`{"sdp":"answer"}`)})
	if m := alice.Expect(wire.TypeSignal); m.From != bob.ID {
		t.Fatalf("alice got %+v", m)
	}
	bob.Send(wire.CallAction{Type: wire.TypeHangup, Call: "x"})
	alice.Expect(wire.TypeHangup)

	fams := scrape(t, apps[0].httpURL()+"/metrics")
	value := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Fatalf("/metrics of node 1 lacks %s", name)
		}
		if g := f.Metric[0].GetGauge(); g != nil {
			return g.GetValue()
		}
		return f.Metric[0].GetCounter().GetValue()
	}
	if v := value("switchboard_cluster_peers"); v != 2 {
		t.Errorf("switchboard_cluster_peers = %v, want 2", v)
	}
	if v := value("switchboard_cluster_nodes_seen_total"); v != 2 {
		t.Errorf("switchboard_cluster_nodes_seen_total = %v, want 2", v)
	}
	// Out of node 1: alice's invite. In: bob's peer-joined, ringing,
	// accept, signal and hangup.
	if out, in := value("switchboard_cluster_routed_out_total"), value("switchboard_cluster_routed_in_total"); out < 1 || in < 5 {
		t.Errorf("routed out %v, in %v: want at least 1 and 5", out, in)
	}
}

// TestClusterExternal: two servers with SWITCHBOARD_CLUSTER=external share
// a NATS server of their own (started here on loopback, with a password):
// clients on each meet and signal.
func TestClusterExternal(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: "sb", Password: "nats-password"})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(routertest.WaitFor) {
		t.Fatal("nats server not ready")
	}
	url := fmt.Sprintf("nats://sb:nats-password@%s", ns.Addr())
	turn := stackDefaults(t)["SWITCHBOARD_TURN_SECRET"]
	apps := make([]*app, 2)
	for i := range apps {
		apps[i] = startStack(t, map[string]string{
			"CLUSTER": "external", "NATS_URL": url, "NODE_NAME": fmt.Sprintf("ext%d", i+1),
			"CLUSTER_SECRET": testClusterSecret, "TURN_SECRET": turn,
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), routertest.WaitFor)
	defer cancel()
	for _, a := range apps {
		if err := a.cluster.waitPeers(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	alice := routertest.Dial(t, apps[0].httpURL(), "alice", "")
	routertest.Eventually(t, "node 2 knows alice", func() bool { return len(apps[1].cluster.router.Members("")) == 1 })
	bob := routertest.Dial(t, apps[1].httpURL(), "bob", "")
	alice.Expect(wire.TypePeerJoined)
	bob.Send(wire.Signal{Type: wire.TypeSignal, To: alice.ID, Data: []byte(`"hi"`)})
	if m := alice.Expect(wire.TypeSignal); m.From != bob.ID || string(m.Data) != `"hi"` {
		t.Fatalf("alice got %+v", m)
	}
}

// TestClusterFenceReadyz: a node that stops hearing the other two (their
// NATS servers go away: a partition, seen from its side) fences itself: its
// client is cut with 1012, /readyz answers 503, a new hello is refused and
// /metrics says fenced. The majority's DeadAfter is longer than FenceAfter,
// so it would adopt the node's sessions only after this.
func TestClusterFenceReadyz(t *testing.T) {
	apps, _ := startClusterStacks(t, 3, nil)
	c := routertest.Dial(t, apps[2].httpURL(), "c", "r")
	readyz := func(a *app) int {
		resp, err := http.Get(a.httpURL() + "/readyz")
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(apps[2]); code != http.StatusOK {
		t.Fatalf("/readyz before the partition: %d", code)
	}
	apps[0].cluster.emb.Close()
	apps[1].cluster.emb.Close()

	if _, ok := c.TryNext(); ok {
		t.Fatal("the client of a node cut off from its cluster got a message instead of a close")
	}
	routertest.Eventually(t, "node3's /readyz says 503", func() bool { return readyz(apps[2]) == http.StatusServiceUnavailable })
	d := routertest.DialOnly(t, apps[2].httpURL())
	d.Send(wire.Hello{Type: wire.TypeHello, Name: "d"})
	if m, _ := d.TryNext(); m.Type != wire.TypeError || m.Code != wire.CodeServerFull {
		t.Fatalf("hello on a fenced node: %+v", m)
	}
	fams := scrape(t, apps[2].httpURL()+"/metrics")
	if f := fams["switchboard_cluster_fenced"]; f == nil || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("switchboard_cluster_fenced on the fenced node: %+v", f)
	}
	if f := fams["switchboard_cluster_fences_total"]; f == nil || f.Metric[0].GetCounter().GetValue() != 1 {
		t.Fatalf("switchboard_cluster_fences_total: %+v", f)
	}
}

// TestClusterTURNBackup: with CLUSTER_TURN_BACKUP a welcome lists this
// node's relay first, then another node's (the URLs that node announced),
// with the same credential, and that credential allocates on the other
// node's relay: one TURN_SECRET, a fleet of relays.
func TestClusterTURNBackup(t *testing.T) {
	apps, _ := startClusterStacks(t, 2, map[string]string{"CLUSTER_TURN_BACKUP": "true"})
	routertest.Eventually(t, "node1 knows node2's relay", func() bool { return len(apps[0].cluster.backupTURN("x")) > 0 })
	_, servers := hello(t, t.Context(), apps[0].httpURL())
	var turnLists [][]string
	for _, s := range servers {
		if s.Username != "" {
			turnLists = append(turnLists, s.URLs)
		}
	}
	home := "turn:" + apps[0].relay.UDPAddr().String() + "?transport=udp"
	backup := "turn:" + apps[1].relay.UDPAddr().String() + "?transport=udp"
	if len(turnLists) != 2 || !slices.Contains(turnLists[0], home) || !slices.Contains(turnLists[1], backup) {
		t.Fatalf("TURN servers %v: want node1's relay (%s) first, then node2's (%s)", turnLists, home, backup)
	}
	user, pass := turnCreds(t, servers)
	if _, relayConn, err := turnClient(t, apps[1], user, pass); err != nil || relayConn == nil {
		t.Fatalf("allocate on the backup node with the home node's credential: %v", err)
	}
}
