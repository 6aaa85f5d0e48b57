package natsrouter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
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
	nodes := startNodes(t, n, opt)
	ctx, cancel := context.WithTimeout(context.Background(), routertest.WaitFor)
	defer cancel()
	for _, nd := range nodes {
		if err := nd.router.WaitPeers(ctx, n-1); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// startNodes is startCluster without the wait.
func startNodes(t testing.TB, n int, opt func(i int, o *Options)) []*testNode {
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

// TestMismatchedSecretRefused: a node whose TURN secret differs is refused by
// the others (and refuses them): it links to no one and its sessions are
// nobody's members, while the two agreeing nodes link.
func TestMismatchedSecretRefused(t *testing.T) {
	nodes := startNodes(t, 3, func(i int, o *Options) {
		o.Marks = map[string][]byte{"SWITCHBOARD_TURN_SECRET": []byte("same")}
		if i == 1 {
			o.Marks["SWITCHBOARD_TURN_SECRET"] = []byte("different")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), routertest.WaitFor)
	defer cancel()
	if err := nodes[0].router.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].router.WaitPeers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 2} {
		routertest.Eventually(t, fmt.Sprintf("node %d refuses", i+1), func() bool { return nodes[i].router.Stats().Refused >= 1 })
	}
	nodes[1].router.Register("x", &box{})
	if _, err := nodes[1].router.Join("r", signaling.Member{ID: "x"}, 8); err != nil {
		t.Fatal(err)
	}
	if got := nodes[0].router.Peers(); !slices.Equal(got, []string{"n3"}) {
		t.Fatalf("node 1 linked to %v, want n3 only", got)
	}
	if got := nodes[1].router.Peers(); len(got) != 0 {
		t.Fatalf("the mismatched node linked to %v", got)
	}
	if n := len(nodes[0].router.Members("r")); n != 0 {
		t.Fatalf("node 1 sees %d members of the refused node's room", n)
	}
}

// sweepGone runs r's sweep at the moment the node name has been silent for
// DeadAfter: the clock is the test's, not the machine's. It waits until every
// other peer has been heard after name's last heartbeat, so those stay.
func sweepGone(t testing.TB, r *Router, name string) {
	t.Helper()
	routertest.Eventually(t, name+" declared gone", func() bool {
		r.mu.RLock()
		p, ok := r.peers[name]
		var at time.Time
		heardSince := true
		if ok {
			at = p.last
			for n, q := range r.peers {
				heardSince = heardSince && (n == name || q.last.After(at))
			}
		}
		r.mu.RUnlock()
		if ok && heardSince {
			r.sweep(at.Add(r.opt.DeadAfter))
		}
		return !ok
	})
}

// TestRoomCapRace: sessions on three nodes join one room at once, over and
// over; the room's owner admits them one at a time, so exactly the cap get in
// and the rest hear ErrRoomFull.
func TestRoomCapRace(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	const perNode, max = 4, 3
	for round := range 20 {
		room := fmt.Sprintf("cap%d", round)
		var wg sync.WaitGroup
		var in, full atomic.Int32
		for i, n := range nodes {
			for k := range perNode {
				id := fmt.Sprintf("%s-%d-%d", room, i, k)
				n.router.Register(id, &box{})
				wg.Go(func() {
					_, err := n.router.Join(room, signaling.Member{ID: id}, max)
					switch {
					case err == nil:
						in.Add(1)
					case errors.Is(err, signaling.ErrRoomFull):
						full.Add(1)
					default:
						t.Errorf("Join: %v", err)
					}
				})
			}
		}
		wg.Wait()
		if in.Load() != max || full.Load() != int32(3*perNode-max) {
			t.Fatalf("round %d: %d joined, %d refused; want %d and %d", round, in.Load(), full.Load(), max, 3*perNode-max)
		}
		settle(t, nodes, room, max)
	}
}

// TestNodeLeaves: a node that closes its router says goodbye: the others
// forget it and its sessions at once, long before DeadAfter (an hour here),
// and their members hear peer-left.
func TestNodeLeaves(t *testing.T) {
	nodes := startCluster(t, 3, func(_ int, o *Options) { o.DeadAfter = time.Hour })
	stay := make(ch, 4)
	nodes[0].router.Register("stay", stay)
	if _, err := nodes[0].router.Join("r", signaling.Member{ID: "stay"}, 8); err != nil {
		t.Fatal(err)
	}
	nodes[2].router.Register("going", &box{})
	if _, err := nodes[2].router.Join("r", signaling.Member{ID: "going"}, 8); err != nil {
		t.Fatal(err)
	}
	settle(t, nodes, "r", 2)
	nodes[2].router.Close()
	for i, n := range nodes[:2] {
		routertest.Eventually(t, fmt.Sprintf("node %d forgets node 3", i+1), func() bool {
			return len(n.router.Peers()) == 1 && len(n.router.Members("r")) == 1
		})
	}
	select {
	case <-stay: // peer-left of "going" (the only delivery "stay" can get)
	case <-time.After(routertest.WaitFor):
		t.Fatal("no peer-left for the session of the node that left")
	}
	if g := nodes[0].router.Stats().Gone; g != 0 {
		t.Fatalf("a node that said goodbye counted as gone (%d)", g)
	}
}

// TestLateNodeGetsSnapshot: a node that links when another already holds
// more sessions than one snapshot message carries learns all of them.
func TestLateNodeGetsSnapshot(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	nodes[1].router.Close() // node 2 leaves; it comes back below, late
	routertest.Eventually(t, "node 1 alone", func() bool { return len(nodes[0].router.Peers()) == 0 })
	const n = 2*snapshotChunk + 7
	for i := range n {
		id := fmt.Sprint("s", i)
		nodes[0].router.Register(id, &box{})
		if _, err := nodes[0].router.Join(fmt.Sprint("room", i%(n/4)), signaling.Member{ID: id, Name: "a name"}, 8); err != nil {
			t.Fatal(err)
		}
	}
	late, err := New(nodes[1].emb.Conn, Options{Cluster: "test", Node: "n2", Secret: []byte(testSecret), Heartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(late.Close)
	routertest.Eventually(t, "every session known on the late node", func() bool {
		late.mu.RLock()
		defer late.mu.RUnlock()
		return len(late.entries) == n
	})
}
