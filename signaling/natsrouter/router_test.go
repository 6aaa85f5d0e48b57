package natsrouter

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// bareRouter is a Router without NATS and with one known, unlinked peer
// "b": nothing is published, and applyState is driven by hand.
func bareRouter() *Router {
	return &Router{self: "a", inc: "ia", log: slog.New(slog.DiscardHandler),
		entries: make(map[string]*entry), rooms: make(map[string]map[string]*entry),
		peers: map[string]*peer{"b": {inc: "ib"}}, changed: make(chan struct{}),
		admitted: make(map[string]map[string]time.Time), tombs: make(map[string]tomb)}
}

type box struct {
	mu  sync.Mutex
	got []string // peer-joined ids
}

func (b *box) Deliver(e signaling.Envelope) error {
	var m wire.PeerJoined
	if json.Unmarshal(e.Body, &m) == nil && m.Type == wire.TypePeerJoined {
		b.mu.Lock()
		b.got = append(b.got, m.Peer.ID)
		b.mu.Unlock()
	}
	return nil
}

func (b *box) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.got
	b.got = nil
	slices.Sort(g)
	return g
}

func join(id, room string, saw ...string) stateMsg {
	return stateMsg{Node: "b", Inc: "ib", Ops: []memberOp{{Op: opReg, ID: id}, {Op: opJoin, ID: id, Name: id, Room: room, Saw: saw}}}
}

// TestConcurrentJoinsAcrossNodes: a member that joined on another node
// without seeing a local member, which did not see it either (they joined at
// the same time), is announced to the local member by this node; one that
// saw it (and so announces itself) or that the local member knew is not.
func TestConcurrentJoinsAcrossNodes(t *testing.T) {
	r := bareRouter()
	l, m := &box{}, &box{}
	r.Register("l", l)
	if others, err := r.Join("R", signaling.Member{ID: "l"}, 8); err != nil || len(others) != 0 {
		t.Fatal(others, err)
	}
	r.applyState(join("x", "R")) // x did not see l
	if got := l.take(); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("l told of %v, want x", got)
	}
	r.applyState(join("y", "R", "l")) // y saw l: y announces itself
	if got := l.take(); len(got) != 0 {
		t.Fatalf("l told of %v by the router, want nothing (y announces itself)", got)
	}
	r.Register("m", m)
	if others, err := r.Join("R", signaling.Member{ID: "m"}, 8); err != nil || len(others) != 3 {
		t.Fatal(others, err) // m's welcome lists l, x, y
	}
	r.applyState(join("z", "R", "l")) // z saw l, not m
	if got, gotM := l.take(), m.take(); len(got) != 0 || !slices.Equal(gotM, []string{"z"}) {
		t.Fatalf("l told of %v, m of %v: want nothing and z", got, gotM)
	}
	// x leaves and comes back unseen: news again.
	r.applyState(stateMsg{Node: "b", Inc: "ib", Ops: []memberOp{{Op: opUnreg, ID: "x"}}})
	r.applyState(join("x", "R"))
	if got, gotM := l.take(), m.take(); !slices.Equal(got, []string{"x"}) || !slices.Equal(gotM, []string{"x"}) {
		t.Fatalf("x back: l told of %v, m of %v, want x for both", got, gotM)
	}
	// A state message from an unknown incarnation changes nothing.
	r.applyState(stateMsg{Node: "b", Inc: "old", Ops: []memberOp{{Op: opUnreg, ID: "x"}}})
	if n := len(r.Members("R")); n != 5 {
		t.Fatalf("members %d, want 5", n)
	}
}

// TestEnvelopeFromAnotherNodesSession: an envelope whose sender is not a
// session of the node that sent it is dropped (and counted); one from the
// node's session, or from a session it removed a moment ago (its last
// hangup), is delivered.
func TestEnvelopeFromAnotherNodesSession(t *testing.T) {
	r := bareRouter()
	got := make(ch, 8)
	r.Register("l", got)
	r.applyState(join("x", "R"))
	frame := func(origin, from string) *nats.Msg {
		b, err := appendEnvelopeFrame(nil, opSend, origin, signaling.Envelope{Kind: signaling.KindControl, From: from, To: "l", Body: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		return &nats.Msg{Data: b}
	}
	r.onNode(frame("c", "x")) // x is b's, not c's
	r.onNode(frame("b", "nobody"))
	if n := len(got); n != 0 || r.Stats().Bad != 2 {
		t.Fatalf("%d delivered, %d bad: want the two spoofed ones dropped", n, r.Stats().Bad)
	}
	r.onNode(frame("b", "x"))
	r.applyState(stateMsg{Node: "b", Inc: "ib", Ops: []memberOp{{Op: opUnreg, ID: "x"}}})
	r.onNode(frame("b", "x")) // x's hangup after its removal
	if n := len(got); n != 2 {
		t.Fatalf("%d delivered, want 2", n)
	}
}
