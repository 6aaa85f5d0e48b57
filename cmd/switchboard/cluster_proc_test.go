package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// clusterNodeRole is one node of TestClusterProcesses: `switchboard serve`
// with the environment it was given, stopped by SIGTERM (or killed).
func clusterNodeRole() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envTestRole+"=") {
			environ = append(environ, kv)
		}
	}
	return run(ctx, []string{"serve"}, environ, os.Stderr, os.Stderr)
}

// freePortOn reserves a free TCP port on ip.
func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("cannot listen on %s (loopback aliases): %v", ip, err)
		}
		t.Skipf("cannot listen on %s (no loopback alias: Linux routes all of 127/8 to lo, others do not): %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestClusterProcesses: three switchboard processes on 127.0.0.1, .2 and .3
// form an embedded cluster; clients on each meet in a room and two of them
// call; the third node is killed with SIGKILL mid-call. The survivors declare
// it gone (DeadAfter 2 s; the time is logged, not asserted),
// their clients hear peer-left for its client, and a signal to that client
// gets peer-unavailable.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	httpPorts, routePorts := make([]int, 3), make([]int, 3)
	var routes []string
	for i, ip := range ips {
		httpPorts[i], routePorts[i] = freePortOn(t, ip), freePortOn(t, ip)
		routes = append(routes, fmt.Sprintf("nats://%s:%d", ip, routePorts[i]))
	}
	turn := stackDefaults(t)["SWITCHBOARD_TURN_SECRET"]
	procs := make([]*exec.Cmd, 3)
	logs := make([]*syncBuffer, 3)
	for i, ip := range ips {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envTestRole+"=cluster-node",
			"SWITCHBOARD_HTTP_ADDR="+fmt.Sprintf("%s:%d", ip, httpPorts[i]),
			"SWITCHBOARD_TURN_ADDR="+ip+":0",
			"SWITCHBOARD_PUBLIC_IP="+ip,
			"SWITCHBOARD_PEER_ALLOW=127.0.0.0/8",
			"SWITCHBOARD_TURN_SECRET="+turn,
			"SWITCHBOARD_DRAIN_TIMEOUT=1s",
			"SWITCHBOARD_RELAY_OFFLOAD=off",
			"SWITCHBOARD_CLUSTER=embedded",
			fmt.Sprintf("SWITCHBOARD_NODE_NAME=node%d", i+1),
			fmt.Sprintf("SWITCHBOARD_CLUSTER_LISTEN=%s:%d", ip, routePorts[i]),
			"SWITCHBOARD_CLUSTER_ROUTES="+strings.Join(routes, ","),
			"SWITCHBOARD_CLUSTER_SECRET="+testClusterSecret,
		)
		logs[i] = &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("node%d output:\n%s", i+1, logs[i].String())
			}
		})
	}
	base := func(i int) string { return fmt.Sprintf("http://%s:%d", ips[i], httpPorts[i]) }
	for i := range ips {
		routertest.Eventually(t, fmt.Sprintf("node%d linked to both others", i+1), func() bool {
			resp, err := http.Get(base(i) + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
			// /metrics answers loopback clients: 127.0.0.0/8 is loopback.
			return clusterPeers(base(i)+"/metrics") == 2
		})
	}

	alice := routertest.Dial(t, base(0), "alice", "r")
	bob := routertest.Dial(t, base(1), "bob", "r")
	carol := routertest.Dial(t, base(2), "carol", "r")
	for _, c := range []*routertest.Client{alice, bob, carol} {
		known := len(c.Welcome.Peers)
		for known < 2 {
			c.Expect(wire.TypePeerJoined)
			known++
		}
	}
	alice.Send(wire.Call{Type: wire.TypeCall, To: carol.ID, Call: "k"})
	carol.Expect(wire.TypeCall)
	alice.Expect(wire.TypeRinging)
	carol.Send(wire.CallAction{Type: wire.TypeAccept, Call: "k"})
	carol.Expect(wire.TypeAccepted)
	alice.Expect(wire.TypeAccepted)

	killed := time.Now()
	if err := procs[2].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*routertest.Client{alice, bob} {
		if m := c.Expect(wire.TypePeerLeft); m.ID != carol.ID {
			t.Fatalf("peer-left %+v, want carol's", m)
		}
	}
	t.Logf("node3 killed: its client's peer-left reached both survivors' clients after %v", time.Since(killed).Round(time.Millisecond))
	bob.Send(wire.Signal{Type: wire.TypeSignal, To: carol.ID, Data: []byte(`1`)})
	if m := bob.Expect(wire.TypeError); m.Code != wire.CodePeerUnavailable {
		t.Fatalf("signal to the dead node's client: %+v", m)
	}
	alice.Send(wire.Signal{Type: wire.TypeSignal, To: bob.ID, Data: []byte(`"still here"`)})
	if m := bob.Expect(wire.TypeSignal); m.From != alice.ID {
		t.Fatalf("survivors: %+v", m)
	}
}

// clusterPeers reads switchboard_cluster_peers from url (-1 on any error).
func clusterPeers(url string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if f := fams["switchboard_cluster_peers"]; err == nil && f != nil && len(f.Metric) == 1 {
		return f.Metric[0].GetGauge().GetValue()
	}
	return -1
}
