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

// procCluster is three switchboard processes on 127.0.0.1, .2 and .3 in one
// embedded cluster, each restartable on its addresses.
type procCluster struct {
	t          *testing.T
	exe        string
	ips        []string
	env        [][]string
	procs      []*exec.Cmd
	exited     []chan struct{}
	logs       []*syncBuffer
	httpPorts  []int
	restartsOf []int
}

func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &procCluster{t: t, exe: exe, ips: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}}
	n := len(c.ips)
	c.env, c.procs, c.exited, c.logs = make([][]string, n), make([]*exec.Cmd, n), make([]chan struct{}, n), make([]*syncBuffer, n)
	c.httpPorts, c.restartsOf = make([]int, n), make([]int, n)
	routePorts := make([]int, n)
	var routes []string
	for i, ip := range c.ips {
		c.httpPorts[i], routePorts[i] = freePortOn(t, ip), freePortOn(t, ip)
		routes = append(routes, fmt.Sprintf("nats://%s:%d", ip, routePorts[i]))
	}
	turn := stackDefaults(t)["SWITCHBOARD_TURN_SECRET"]
	for i, ip := range c.ips {
		c.env[i] = append(os.Environ(), envTestRole+"=cluster-node",
			"SWITCHBOARD_HTTP_ADDR="+fmt.Sprintf("%s:%d", ip, c.httpPorts[i]),
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
		c.logs[i] = &syncBuffer{}
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.procs {
			c.kill(i)
			if t.Failed() {
				t.Logf("node%d output:\n%s", i+1, c.logs[i].String())
			}
		}
	})
	for i := range c.ips {
		c.waitLinked(i)
	}
	return c
}

func (c *procCluster) start(i int) {
	c.t.Helper()
	cmd := exec.Command(c.exe, "-test.run=^$")
	cmd.Env = c.env[i]
	cmd.Stdout, cmd.Stderr = c.logs[i], c.logs[i]
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.procs[i], c.exited[i] = cmd, exited
}

// kill sends SIGKILL to node i and waits for it.
func (c *procCluster) kill(i int) {
	_ = c.procs[i].Process.Kill()
	<-c.exited[i]
}

// term sends node i SIGTERM (a graceful stop: it hands its sessions over).
func (c *procCluster) term(i int) {
	c.t.Helper()
	if err := c.procs[i].Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
}

// waitExit waits (bounded) for node i to exit after term.
func (c *procCluster) waitExit(i int) {
	c.t.Helper()
	select {
	case <-c.exited[i]:
	case <-time.After(routertest.WaitFor * 2):
		c.t.Fatalf("node%d did not exit after SIGTERM", i+1)
	}
}

func (c *procCluster) base(i int) string {
	return fmt.Sprintf("http://%s:%d", c.ips[i], c.httpPorts[i])
}

// waitLinked waits until node i is ready and sees every other node.
func (c *procCluster) waitLinked(i int) {
	c.t.Helper()
	routertest.Eventually(c.t, fmt.Sprintf("node%d linked to both others", i+1), func() bool {
		resp, err := http.Get(c.base(i) + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		// /metrics answers loopback clients: 127.0.0.0/8 is loopback.
		return clusterPeers(c.base(i)+"/metrics") == float64(len(c.ips)-1)
	})
}

// TestClusterProcesses: three switchboard processes on 127.0.0.1, .2 and .3
// form an embedded cluster; clients on each meet in a room and two of them
// call; the third node is killed with SIGKILL mid-call. A survivor adopts its
// client's session: a signal sent to it meanwhile waits, the client resumes
// on a survivor with the same id, room and call (welcome.lost: what the dead
// node held may be gone), gets the signal, and its hangup reaches its
// partner. The time to adoption is logged, not asserted (DeadAfter 2 s).
func TestClusterProcesses(t *testing.T) {
	c := startProcCluster(t)
	alice := routertest.Dial(t, c.base(0), "alice", "r")
	bob := routertest.Dial(t, c.base(1), "bob", "r")
	carol := routertest.Dial(t, c.base(2), "carol", "r")
	for _, cl := range []*routertest.Client{alice, bob, carol} {
		known := len(cl.Welcome.Peers)
		for known < 2 {
			cl.Expect(wire.TypePeerJoined)
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
	c.kill(2)
	routertest.Eventually(t, "carol's session adopted by a survivor", func() bool {
		return clusterCounter(c.base(0)+"/metrics", "switchboard_cluster_adopted_total")+
			clusterCounter(c.base(1)+"/metrics", "switchboard_cluster_adopted_total") == 1
	})
	t.Logf("node3 killed: its client's session adopted by a survivor after %v", time.Since(killed).Round(time.Millisecond))
	bob.Send(wire.Signal{Type: wire.TypeSignal, To: carol.ID, Data: []byte(`"while away"`)})
	nc, w := carol.Resume(t, c.base(1))
	if w.Type != wire.TypeWelcome || w.ID != carol.ID || !w.Resumed || !w.Lost || w.Room == nil || *w.Room != "r" {
		t.Fatalf("carol's resume on node2 after node3 died: %+v", w)
	}
	if m := nc.Expect(wire.TypeSignal); m.From != bob.ID || string(m.Data) != `"while away"` {
		t.Fatalf("carol got %+v", m)
	}
	nc.Send(wire.CallAction{Type: wire.TypeHangup, Call: "k"})
	if m := alice.Expect(wire.TypeHangup); m.From != carol.ID || m.Call != "k" {
		t.Fatalf("alice got %+v, want carol's hangup of the call that outlived its node", m)
	}
	alice.Send(wire.Signal{Type: wire.TypeSignal, To: bob.ID, Data: []byte(`"still here"`)})
	if m := bob.Expect(wire.TypeSignal); m.From != alice.ID {
		t.Fatalf("survivors: %+v", m)
	}
}

// clusterCounter reads one counter (or gauge) from url (-1 on any error).
func clusterCounter(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	f := fams[name]
	if err != nil || f == nil || len(f.Metric) != 1 {
		return -1
	}
	if m := f.Metric[0]; m.Counter != nil {
		return m.Counter.GetValue()
	}
	return f.Metric[0].GetGauge().GetValue()
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
