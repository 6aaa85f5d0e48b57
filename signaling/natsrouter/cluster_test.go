package natsrouter

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/routertest"
)

const testSecret = "0123456789abcdef-test"

// freePorts reserves n loopback ports (listen on :0, close). Another process
// could take one before the server binds it; startCluster retries then.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return ports
}

type testNode struct {
	emb    *Embedded
	router *Router
}

// startCluster starts n embedded NATS servers clustered on loopback, a Router
// on each, and waits until every router is linked to every other.
func startCluster(t testing.TB, n int, opt func(i int, o *Options)) []*testNode {
	t.Helper()
	ports := freePorts(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	nodes := make([]*testNode, n)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		emb, err := StartEmbedded(EmbeddedConfig{Cluster: "test", Node: name,
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, Secret: testSecret})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emb.Close)
		o := Options{Cluster: "test", Node: name, Secret: []byte(testSecret), Heartbeat: 200 * time.Millisecond,
			DeadAfter: 5 * time.Second}
		if opt != nil {
			opt(i, &o)
		}
		r, err := New(emb.Conn, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		nodes[i] = &testNode{emb: emb, router: r}
	}
	ctx, cancel := context.WithTimeout(context.Background(), routertest.WaitFor)
	defer cancel()
	for _, nd := range nodes {
		if err := nd.router.WaitPeers(ctx, n-1); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// TestRouterContractCluster: the Router contract (package routertest, the
// same checks as the local router's) over three clustered NATS servers, with
// the sessions spread over the nodes.
func TestRouterContractCluster(t *testing.T) {
	start := time.Now()
	nodes := startCluster(t, 3, nil)
	t.Logf("3-node cluster linked in %v", time.Since(start).Round(time.Millisecond))
	routers := make([]signaling.Router, len(nodes))
	for i, n := range nodes {
		routers[i] = n.router
	}
	routertest.Contract(t, routers)
	for i, n := range nodes {
		if st := n.router.Stats(); st.Peers != 2 || st.Bad != 0 {
			t.Errorf("node %d stats %+v: want 2 peers, no bad frames", i, st)
		}
	}
}
