package natsrouter

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// seqData is a numbered signal body.
func seqData(n int) json.RawMessage { return json.RawMessage(strconv.Itoa(n)) }

// callBetween puts a (caller) and b in an accepted call.
func callBetween(t *testing.T, a, b *routertest.Client) {
	t.Helper()
	a.Send(wire.Call{Type: wire.TypeCall, To: b.ID, Call: "c1"})
	if m := b.Expect(wire.TypeCall); m.From != a.ID {
		t.Fatalf("call: %+v", m)
	}
	a.Expect(wire.TypeRinging)
	b.Send(wire.CallAction{Type: wire.TypeAccept, Call: "c1"})
	a.Expect(wire.TypeAccepted)
	b.Expect(wire.TypeAccepted)
}

// TestHandoff: a client cut from its node resumes on each other node in turn
// while the first lives: same id, room and call, every message its peer sent
// meanwhile replayed once and in order, and its own messages above the
// welcome's ack resent and delivered once.
func TestHandoff(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	urls := startHubs(t, nodes, signaling.Config{})
	alice := routertest.Dial(t, urls[0], "alice", "r")
	settle(t, nodes, "r", 1)
	bob := routertest.Dial(t, urls[1], "bob", "r")
	alice.Expect(wire.TypePeerJoined)
	settle(t, nodes, "r", 2)
	callBetween(t, alice, bob)

	next := 0
	for hop, to := range []int{2, 1, 0, 2} {
		alice.Cut()
		// Bob goes on sending while alice is away (and while she moves).
		for range 5 {
			next++
			bob.Send(wire.Signal{Type: wire.TypeSignal, To: alice.ID, Data: seqData(next)})
		}
		n, w := alice.Resume(t, urls[to])
		if w.Type != wire.TypeWelcome || !w.Resumed || w.ID != alice.ID || w.Lost {
			t.Fatalf("hop %d to node %d: %+v", hop, to+1, w)
		}
		if w.Room == nil || *w.Room != "r" || len(w.Peers) != 1 || w.Peers[0].ID != bob.ID {
			t.Fatalf("hop %d: room %v peers %+v", hop, w.Room, w.Peers)
		}
		alice = n
		for k := next - 4; k <= next; k++ {
			m := alice.Expect(wire.TypeSignal)
			if string(m.Data) != strconv.Itoa(k) {
				t.Fatalf("hop %d: got signal %s, want %d (lost, duplicated or reordered)", hop, m.Data, k)
			}
		}
		alice.Send(wire.Signal{Type: wire.TypeSignal, To: bob.ID, Data: seqData(1000 + hop)})
		if m := bob.Expect(wire.TypeSignal); string(m.Data) != strconv.Itoa(1000+hop) || m.From != alice.ID {
			t.Fatalf("hop %d: bob got %+v", hop, m)
		}
	}
	// The call went along: alice's hangup reaches bob.
	alice.Send(wire.CallAction{Type: wire.TypeHangup, Call: "c1"})
	if m := bob.Expect(wire.TypeHangup); m.Call != "c1" || m.From != alice.ID {
		t.Fatalf("bob got %+v, want alice's hangup", m)
	}
	var off, in uint64
	for _, n := range nodes {
		st := n.router.Stats()
		off, in = off+st.HandedOff, in+st.Claimed
	}
	if off != 4 || in != 4 {
		t.Fatalf("handoffs counted: %d out, %d in; want 4 each", off, in)
	}
}

// TestHandoffChaos: a sender on one node streams numbered signals to a
// receiver that is cut and resumes on a random node, over and over, while
// the receiver streams back with client seqs. Neither side may see a number
// lost, duplicated or out of order.
func TestHandoffChaos(t *testing.T) {
	cuts := 300
	if testing.Short() {
		cuts = 30
	}
	nodes := startCluster(t, 3, nil)
	urls := startHubs(t, nodes, signaling.Config{MessageRate: 1e6, MessageBurst: 1e6}) // the test sends as fast as it can
	rx := routertest.Dial(t, urls[0], "rx", "r")
	settle(t, nodes, "r", 1)
	tx := routertest.Dial(t, urls[1], "tx", "r")
	rx.Expect(wire.TypePeerJoined)
	settle(t, nodes, "r", 2)

	rng := rand.New(rand.NewPCG(1, 2))
	var sent, got, back, gotBack int
	var outbox []wire.Signal // rx's messages not yet confirmed by a welcome's ack
	var rxSeq uint64
	expect := func(c *routertest.Client, want *int, upto int, who string) {
		t.Helper()
		for *want < upto {
			m := c.Expect(wire.TypeSignal)
			n, _ := strconv.Atoi(string(m.Data))
			if n != *want+1 {
				t.Fatalf("%s: got %d after %d (lost, duplicated or reordered)", who, n, *want)
			}
			*want = n
		}
	}
	for cut := range cuts {
		for range 1 + rng.IntN(4) {
			sent++
			tx.Send(wire.Signal{Type: wire.TypeSignal, To: rx.ID, Data: seqData(sent)})
		}
		for range rng.IntN(3) {
			back++
			rxSeq++
			s := wire.Signal{Type: wire.TypeSignal, To: tx.ID, Data: seqData(back), Meta: wire.Meta{Seq: rxSeq}}
			outbox = append(outbox, s)
			rx.Send(s)
		}
		// Read some of what arrived before the cut, not all: the rest is
		// replayed. (A backlog over the send queue would cut rx as a slow
		// consumer: keep it under.)
		if got < sent {
			upto := got + rng.IntN(sent-got+1)
			if sent-upto > 100 {
				upto = sent - 100
			}
			expect(rx, &got, upto, "rx")
		}
		rx.Cut()
		for range rng.IntN(3) {
			sent++
			tx.Send(wire.Signal{Type: wire.TypeSignal, To: rx.ID, Data: seqData(sent)})
		}
		n, w := rx.Resume(t, urls[rng.IntN(len(urls))])
		if w.Type != wire.TypeWelcome || w.ID != rx.ID || w.Lost {
			t.Fatalf("cut %d: resume answered %+v", cut, w)
		}
		rx = n
		ack := *w.Ack
		kept := outbox[:0]
		for _, s := range outbox {
			if s.Seq > ack {
				rx.Send(s) // not processed before the cut: resend
				kept = append(kept, s)
			}
		}
		outbox = kept
	}
	expect(rx, &got, sent, "rx")
	expect(tx, &gotBack, back, "tx")
	t.Logf("%d cuts, %d signals to the moving client, %d from it: none lost, duplicated or reordered", cuts, sent, back)
}

// TestNodeGone: a node dies mid-call (its NATS connection and server go, no
// goodbye). The survivors adopt its session from the kept state: messages
// sent to it meanwhile wait for it, it resumes on a survivor with the same
// id, room and call and a welcome saying what the dead node held may be
// lost, and its call goes on.
func TestNodeGone(t *testing.T) {
	nodes := startCluster(t, 3, func(_ int, o *Options) { o.DeadAfter, o.FenceAfter = time.Hour, -1 })
	urls := startHubs(t, nodes, signaling.Config{})
	alice := routertest.Dial(t, urls[0], "alice", "r")
	settle(t, nodes, "r", 1)
	carol := routertest.Dial(t, urls[2], "carol", "r")
	alice.Expect(wire.TypePeerJoined)
	settle(t, nodes, "r", 2)
	callBetween(t, alice, carol)
	routertest.Eventually(t, "carol's call kept on node 1", func() bool {
		nodes[0].router.mu.RLock()
		defer nodes[0].router.mu.RUnlock()
		e := nodes[0].router.entries[carol.ID]
		return e != nil && len(e.snap) > 0 && json.Valid(e.snap) && containsActiveCall(e.snap)
	})

	nodes[2].emb.Close() // its server and connection go, without a goodbye
	for _, n := range nodes[:2] {
		sweepGone(t, n.router, "n3")
	}
	routertest.Eventually(t, "carol adopted", func() bool {
		return nodes[0].router.Stats().Adopted+nodes[1].router.Stats().Adopted == 1
	})
	alice.Send(wire.Signal{Type: wire.TypeSignal, To: carol.ID, Data: json.RawMessage(`"after"`)})

	for _, u := range urls[:2] { // whichever node she reaches
		c, w := carol.Resume(t, u)
		if w.Type != wire.TypeWelcome || w.ID != carol.ID || !w.Resumed || !w.Lost {
			t.Fatalf("carol's resume on %s: %+v", u, w)
		}
		if w.Room == nil || *w.Room != "r" || len(w.Peers) != 1 || w.Peers[0].ID != alice.ID {
			t.Fatalf("carol's room after adoption: %v %+v", w.Room, w.Peers)
		}
		m := c.Expect(wire.TypeSignal)
		if string(m.Data) != `"after"` || m.From != alice.ID {
			t.Fatalf("carol got %+v", m)
		}
		if m.Seq <= carol.Last {
			t.Fatalf("seq %d after adoption is not above the %d carol saw", m.Seq, carol.Last)
		}
		c.Send(wire.CallAction{Type: wire.TypeHangup, Call: "c1"})
		if m := alice.Expect(wire.TypeHangup); m.From != carol.ID {
			t.Fatalf("alice got %+v, want carol's hangup", m)
		}
		break
	}
	if st := nodes[0].router.Stats(); st.Gone != 1 || st.Peers != 1 {
		t.Fatalf("node 1 stats %+v: want 1 gone, 1 peer", st)
	}
}

func containsActiveCall(state []byte) bool {
	var st struct {
		Call *struct {
			Active bool `json:"active"`
		} `json:"call"`
	}
	return json.Unmarshal(state, &st) == nil && st.Call != nil && st.Call.Active
}

// TestFence: a node that stops hearing the majority fences itself before
// the majority would declare it dead: its clients are cut with 1012, new
// hellos are refused, Fenced reports it; hearing the others again ends it.
func TestFence(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	urls := startHubs(t, nodes, signaling.Config{})
	c := routertest.Dial(t, urls[2], "c", "r")
	settle(t, nodes, "r", 1)
	r := nodes[2].router
	// The clock is the test's: a sweep at the moment the others have been
	// silent for FenceAfter (but not yet DeadAfter).
	r.mu.RLock()
	var last time.Time
	for _, p := range r.peers {
		if p.last.After(last) {
			last = p.last
		}
	}
	r.mu.RUnlock()
	r.sweep(last.Add(r.opt.FenceAfter + time.Millisecond))
	if !r.Fenced() {
		t.Fatal("not fenced after missing the majority for FenceAfter")
	}
	if st := r.Stats(); st.Fences != 1 {
		t.Fatalf("fences counted %d, want 1", st.Fences)
	}
	if _, ok := c.TryNext(); ok {
		t.Fatal("the fenced node's client got a message instead of its link closing")
	}
	d := routertest.DialOnly(t, urls[2])
	d.Send(wire.Hello{Type: wire.TypeHello, Name: "d"})
	if m, _ := d.TryNext(); m.Type != wire.TypeError || m.Code != wire.CodeServerFull {
		t.Fatalf("hello on a fenced node: %+v", m)
	}
	routertest.Eventually(t, "unfenced once heartbeats are heard", func() bool {
		r.sweep(time.Now())
		return !r.Fenced()
	})
	_ = fmt.Sprint()
}

// TestResumeBeforeAdoption: a client whose node died reconnects at once, to
// a survivor, before the cluster has declared its node dead. The resume
// waits for the adoption (here or on the other survivor) instead of being
// refused: same id, welcome.lost.
func TestResumeBeforeAdoption(t *testing.T) {
	nodes := startCluster(t, 3, func(_ int, o *Options) { o.DeadAfter, o.FenceAfter = time.Hour, -1 })
	urls := startHubs(t, nodes, signaling.Config{})
	carol := routertest.Dial(t, urls[2], "carol", "q")
	settle(t, nodes, "q", 1)
	routertest.Eventually(t, "carol's state kept on node 1", func() bool {
		nodes[0].router.mu.RLock()
		defer nodes[0].router.mu.RUnlock()
		e := nodes[0].router.entries[carol.ID]
		return e != nil && len(e.snap) > 0
	})
	nodes[2].emb.Close()
	n := routertest.DialOnly(t, urls[0])
	n.Send(wire.Hello{Type: wire.TypeHello, Name: "carol", Resume: carol.Welcome.Resume, Attempt: 2,
		Meta: wire.Meta{Ack: carol.Last}})
	for _, nd := range nodes[:2] {
		sweepGone(t, nd.router, "n3")
	}
	w, ok := n.TryNext()
	if !ok || w.Type != wire.TypeWelcome || w.ID != carol.ID || !w.Resumed || !w.Lost {
		t.Fatalf("resume sent before the adoption: %+v (open %v)", w, ok)
	}
}
