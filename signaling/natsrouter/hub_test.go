package natsrouter

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

type fixedICE struct{}

func (fixedICE) ICEServers(context.Context, string) ([]signaling.ICEServer, time.Time, error) {
	return []signaling.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}, time.Time{}, nil
}

// startHubs runs a hub on each node's router behind httptest and returns
// their base URLs.
func startHubs(t *testing.T, nodes []*testNode, cfg signaling.Config) []string {
	t.Helper()
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		c := cfg
		c.ICE, c.Router = fixedICE{}, n.router
		if os.Getenv("SB_DEBUG") != "" {
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("hub", i+1)
		}
		h, err := signaling.New(c)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			srv.Close()
			h.Close()
		})
		urls[i] = srv.URL
	}
	return urls
}

// settle waits until every node's replica has want members in room, so that
// the next step does not depend on how fast membership crosses the cluster.
func settle(t *testing.T, nodes []*testNode, room string, want int) {
	t.Helper()
	for i, n := range nodes {
		routertest.Eventually(t, fmt.Sprintf("node %d sees %d in %q", i+1, want, room), func() bool {
			return len(n.router.Members(room)) == want
		})
	}
}

func peerOf(t *testing.T, m wire.Any) wire.Peer {
	t.Helper()
	p, err := m.PeerInfo()
	if err != nil {
		t.Fatalf("peer of %+v: %v", m, err)
	}
	return p
}

func peerIDs(ps []wire.Peer) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestClusterProtocol: protocol clients on three nodes of one cluster see each
// other in a room, exchange signals (to one peer and to the room), call each
// other (ring, accept, hangup, busy, decline, cancel), get peer-unavailable for
// a peer that is nowhere, and meet the room cap of the whole cluster.
//
// Table-driven: the same steps on one node (the local router, every client on
// the one hub) and on the 3-node cluster, so the two cannot drift.
func TestClusterProtocol(t *testing.T) {
	cfg := signaling.Config{MaxRoomSize: 3, ResumeGrace: 100 * time.Millisecond}
	t.Run("one node", func(t *testing.T) {
		c := cfg
		c.ICE = fixedICE{}
		h, err := signaling.New(c)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			srv.Close()
			h.Close()
		})
		protocolSteps(t, []string{srv.URL, srv.URL, srv.URL}, func(*testing.T, int) {})
	})
	t.Run("three nodes", func(t *testing.T) {
		nodes := startCluster(t, 3, nil)
		urls := startHubs(t, nodes, cfg)
		protocolSteps(t, urls, func(t *testing.T, n int) { settle(t, nodes, "r", n) })
	})
}

// protocolSteps is TestClusterProtocol on hubs at urls (alice on the first,
// bob the second, carol the third); settle waits until every node knows n
// members of room r.
func protocolSteps(t *testing.T, urls []string, settle func(t *testing.T, n int)) {

	alice := routertest.Dial(t, urls[0], "alice", "r")
	settle(t, 1)
	bob := routertest.Dial(t, urls[1], "bob", "r")
	if got := peerIDs(bob.Welcome.Peers); !slices.Equal(got, []string{alice.ID}) {
		t.Fatalf("bob's welcome peers %v, want alice %s", got, alice.ID)
	}
	if p := peerOf(t, alice.Expect(wire.TypePeerJoined)); p.ID != bob.ID || p.Name != "bob" {
		t.Fatalf("alice's peer-joined %+v, want bob", p)
	}
	settle(t, 2)
	carol := routertest.Dial(t, urls[2], "carol", "r")
	if got, want := peerIDs(carol.Welcome.Peers), peerIDs([]wire.Peer{{ID: alice.ID}, {ID: bob.ID}}); !slices.Equal(got, want) {
		t.Fatalf("carol's welcome peers %v, want %v", got, want)
	}
	for _, c := range []*routertest.Client{alice, bob} {
		if p := peerOf(t, c.Expect(wire.TypePeerJoined)); p.ID != carol.ID {
			t.Fatalf("peer-joined %+v, want carol", p)
		}
	}
	settle(t, 3)

	t.Run("room cap is the cluster's", func(t *testing.T) {
		for i, u := range urls {
			c := routertest.DialOnly(t, u)
			room := "r"
			c.Send(wire.Hello{Type: wire.TypeHello, Name: "dave", Room: &room})
			if m := c.Expect(wire.TypeError); m.Code != wire.CodeRoomFull {
				t.Fatalf("node %d: hello into a full room: %s, want room-full", i+1, m.Code)
			}
		}
	})

	t.Run("signals", func(t *testing.T) {
		alice.Send(wire.Signal{Type: wire.TypeSignal, To: bob.ID, Data: json.RawMessage(`{"sdp":"offer"}`)})
		if m := bob.Expect(wire.TypeSignal); m.From != alice.ID || string(m.Data) != `{"sdp":"offer"}` {
			t.Fatalf("bob got %+v", m)
		}
		for i := range 20 { // order across nodes
			bob.Send(wire.Signal{Type: wire.TypeSignal, To: carol.ID, Data: json.RawMessage(fmt.Sprint(i))})
		}
		for i := range 20 {
			if m := carol.Expect(wire.TypeSignal); string(m.Data) != fmt.Sprint(i) {
				t.Fatalf("carol got %s, want %d", m.Data, i)
			}
		}
		carol.Send(wire.Signal{Type: wire.TypeSignal, To: "*", Data: json.RawMessage(`"all"`)})
		for _, c := range []*routertest.Client{alice, bob} {
			if m := c.Expect(wire.TypeSignal); m.From != carol.ID || string(m.Data) != `"all"` {
				t.Fatalf("room signal: %+v", m)
			}
		}
		alice.Send(wire.Signal{Type: wire.TypeSignal, To: "nobody-anywhere", Data: json.RawMessage(`1`), Meta: wire.Meta{Ref: json.RawMessage(`7`)}})
		if m := alice.Expect(wire.TypeError); m.Code != wire.CodePeerUnavailable || m.To != "nobody-anywhere" || string(m.Ref) != "7" {
			t.Fatalf("signal to nobody: %+v", m)
		}
	})

	t.Run("call accept hangup", func(t *testing.T) {
		alice.Send(wire.Call{Type: wire.TypeCall, To: bob.ID, Call: "c1"})
		if m := bob.Expect(wire.TypeCall); m.From != alice.ID || m.Call != "c1" || m.Name != "alice" {
			t.Fatalf("bob's incoming call %+v", m)
		}
		if m := alice.Expect(wire.TypeRinging); m.Call != "c1" || m.To != bob.ID {
			t.Fatalf("ringing %+v", m)
		}
		bob.Send(wire.CallAction{Type: wire.TypeAccept, Call: "c1"})
		bob.Expect(wire.TypeAccepted)
		if m := alice.Expect(wire.TypeAccepted); m.Call != "c1" {
			t.Fatalf("alice's accepted %+v", m)
		}

		// bob is in a call: carol, on a third node, hears busy.
		carol.Send(wire.Call{Type: wire.TypeCall, To: bob.ID, Call: "c2"})
		if m := carol.Expect(wire.TypeBusy); m.Call != "c2" {
			t.Fatalf("carol's busy %+v", m)
		}

		alice.Send(wire.CallAction{Type: wire.TypeHangup, Call: "c1"})
		if m := bob.Expect(wire.TypeHangup); m.Call != "c1" || m.From != alice.ID || m.Reason != wire.ReasonHangup {
			t.Fatalf("bob's hangup %+v", m)
		}
	})

	t.Run("call decline and cancel", func(t *testing.T) {
		carol.Send(wire.Call{Type: wire.TypeCall, To: alice.ID, Call: "c3"})
		alice.Expect(wire.TypeCall)
		carol.Expect(wire.TypeRinging)
		alice.Send(wire.CallAction{Type: wire.TypeDecline, Call: "c3"})
		if m := carol.Expect(wire.TypeDeclined); m.Call != "c3" || m.From != alice.ID {
			t.Fatalf("carol's declined %+v", m)
		}
		bob.Send(wire.Call{Type: wire.TypeCall, To: carol.ID, Call: "c4"})
		carol.Expect(wire.TypeCall)
		bob.Expect(wire.TypeRinging)
		bob.Send(wire.CallAction{Type: wire.TypeCancel, Call: "c4"})
		if m := carol.Expect(wire.TypeCancelled); m.Call != "c4" || m.From != bob.ID {
			t.Fatalf("carol's cancelled %+v", m)
		}
	})

	t.Run("peer leaves mid-call", func(t *testing.T) {
		alice.Send(wire.Call{Type: wire.TypeCall, To: carol.ID, Call: "c5"})
		carol.Expect(wire.TypeCall)
		alice.Expect(wire.TypeRinging)
		carol.Send(wire.CallAction{Type: wire.TypeAccept, Call: "c5"})
		carol.Expect(wire.TypeAccepted)
		alice.Expect(wire.TypeAccepted)
		carol.Close() // its grace (100ms) ends: the call and the room hear it
		if m := alice.Expect(wire.TypeHangup); m.Call != "c5" || m.Reason != wire.ReasonLeft {
			t.Fatalf("alice's hangup %+v", m)
		}
		alice.Expect(wire.TypePeerLeft)
		if m := bob.Expect(wire.TypePeerLeft); m.ID != carol.ID {
			t.Fatalf("bob's peer-left %+v", m)
		}
		settle(t, 2)
	})
}

// TestClusterConcurrentJoins: three clients say hello to one room on three
// nodes at once, in several rooms; each learns of both others exactly once
// (from its welcome, their peer-joined, or the router's peer-joined for a
// pair that joined too close together to see each other), then hears a
// signal from each.
func TestClusterConcurrentJoins(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	urls := startHubs(t, nodes, signaling.Config{})
	for round := range 8 {
		room := fmt.Sprintf("room%d", round)
		cs := make([]*routertest.Client, 3)
		for i := range cs {
			cs[i] = routertest.DialOnly(t, urls[i])
		}
		for i, c := range cs {
			c.Send(wire.Hello{Type: wire.TypeHello, Name: fmt.Sprint("c", i), Room: &room})
		}
		known := make([]map[string]int, 3)
		for i, c := range cs {
			w := c.Expect(wire.TypeWelcome)
			c.ID = w.ID
			known[i] = map[string]int{}
			for _, p := range w.Peers {
				known[i][p.ID]++
			}
		}
		for i, c := range cs {
			for len(known[i]) < 2 {
				p := peerOf(t, c.Expect(wire.TypePeerJoined))
				known[i][p.ID]++
			}
			for id, n := range known[i] {
				if n != 1 {
					t.Fatalf("round %d: client %d heard of %s %d times", round, i, id, n)
				}
			}
		}
		for i, c := range cs {
			for j, d := range cs {
				if i != j {
					c.Send(wire.Signal{Type: wire.TypeSignal, To: d.ID, Data: json.RawMessage(`1`)})
				}
			}
		}
		for i, c := range cs {
			from := map[string]bool{}
			for len(from) < 2 {
				m := c.Next()
				switch m.Type {
				case wire.TypeSignal:
					from[m.From] = true
				case wire.TypePeerJoined:
					t.Fatalf("round %d: client %d: a second peer-joined %s", round, i, m.Peer)
				default:
					t.Fatalf("round %d: client %d: unexpected %s %s", round, i, m.Type, m.Code)
				}
			}
		}
		for _, c := range cs {
			c.Close()
		}
	}
}

// TestClusterRingTimeout: a call to a session on another node that nobody
// answers times out on both sides (the caller's node owns the timer, the
// callee hears it through the cluster).
func TestClusterRingTimeout(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	urls := startHubs(t, nodes, signaling.Config{RingTimeout: 200 * time.Millisecond})
	alice := routertest.Dial(t, urls[0], "alice", "r")
	settle(t, nodes, "r", 1)
	bob := routertest.Dial(t, urls[1], "bob", "r")
	alice.Expect(wire.TypePeerJoined)
	alice.Send(wire.Call{Type: wire.TypeCall, To: bob.ID, Call: "t1"})
	bob.Expect(wire.TypeCall)
	alice.Expect(wire.TypeRinging)
	if m := alice.Expect(wire.TypeTimeout); m.Call != "t1" {
		t.Fatalf("caller's timeout %+v", m)
	}
	if m := bob.Expect(wire.TypeTimeout); m.Call != "t1" {
		t.Fatalf("callee's timeout %+v", m)
	}
	// Both are free again: bob can call alice.
	bob.Send(wire.Call{Type: wire.TypeCall, To: alice.ID, Call: "t2"})
	alice.Expect(wire.TypeCall)
	bob.Expect(wire.TypeRinging)
}
