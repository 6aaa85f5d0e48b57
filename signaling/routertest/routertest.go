// Package routertest holds the signaling.Router contract as a test helper, so
// that a Router implemented outside package signaling (natsrouter) is held to
// the same checks as the local one, across several nodes.
package routertest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// WaitFor bounds every wait of the contract. Generous: a cluster under -race
// on a loaded 2-core machine is slow, and nothing here measures speed.
const WaitFor = 15 * time.Second

// Eventually polls cond until it holds, failing t after WaitFor.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inbox is an Endpoint that keeps what it gets and answers with err.
type inbox struct {
	mu  sync.Mutex
	got []signaling.Envelope
	err error
}

func (b *inbox) Deliver(e signaling.Envelope) error {
	e.Body, e.Ref = slices.Clone(e.Body), slices.Clone(e.Ref)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, e)
	return b.err
}

// wait returns (and removes) the first envelope matching ok.
func (b *inbox) wait(t testing.TB, what string, ok func(signaling.Envelope) bool) signaling.Envelope {
	t.Helper()
	var found signaling.Envelope
	Eventually(t, what, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, e := range b.got {
			if ok(e) {
				found = e
				b.got = slices.Delete(b.got, i, i+1)
				return true
			}
		}
		return false
	})
	return found
}

// Contract checks the Router contract on nodes, routers that are one service
// (one element for a single node). Sessions are spread over the nodes so that
// every delivery, bounce and broadcast below crosses nodes when there are
// several; nothing assumes delivery is synchronous, and membership is waited
// for on every node before it is relied on. Each node's Rooms counts its own
// node's rooms (the contract allows it), which here is the same number.
func Contract(t *testing.T, nodes []signaling.Router) {
	ids := []string{"a", "b", "c", "out", "busy", "full", "ending"}
	boxes := map[string]*inbox{"a": {}, "b": {}, "c": {}, "out": {},
		"busy": {err: signaling.ErrBusy}, "full": {err: signaling.ErrUndeliverable}, "ending": {err: signaling.ErrNoSession}}
	home := map[string]signaling.Router{}
	for i, id := range ids {
		home[id] = nodes[i%len(nodes)]
		home[id].Register(id, boxes[id])
	}
	for _, id := range []string{"a", "b", "busy", "full", "ending"} {
		if _, err := home[id].Join("room", signaling.Member{ID: id, Name: id}, 10); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
	}
	if _, err := home["out"].Join("other", signaling.Member{ID: "out"}, 1); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		Eventually(t, fmt.Sprintf("node %d sees every member", i), func() bool {
			return len(n.Members("room")) == 5 && len(n.Members("other")) == 1
		})
	}
	if _, err := home["c"].Join("other", signaling.Member{ID: "c"}, 1); !errors.Is(err, signaling.ErrRoomFull) {
		t.Fatalf("Join of a full room = %v, want ErrRoomFull", err)
	}
	r := home["a"]
	isBody := func(body string) func(signaling.Envelope) bool {
		return func(e signaling.Envelope) bool { return e.Kind != signaling.KindBounce && string(e.Body) == body }
	}
	isBounce := func(from string, why signaling.Reason, body string) func(signaling.Envelope) bool {
		return func(e signaling.Envelope) bool {
			return e.Kind == signaling.KindBounce && e.From == from && e.Reason == why && string(e.Body) == body
		}
	}

	t.Run("send copies the body", func(t *testing.T) {
		buf := []byte(`{"type":"signal","n":1}`)
		r.Send(signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "b", Room: "room", InRoom: true, Body: buf})
		copy(buf, "XXXXXXXX") // the sender's buffer is its own once Send returns
		boxes["b"].wait(t, "delivery", isBody(`{"type":"signal","n":1}`))
	})
	t.Run("order per sender and receiver", func(t *testing.T) {
		for i := range 50 {
			r.Send(signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "b", Body: fmt.Appendf(nil, `{"n":%d}`, i)})
		}
		for i := range 50 {
			want := fmt.Sprintf(`{"n":%d}`, i)
			// Only a's: a cluster router may tell b of members that joined
			// at the same time on other nodes (natsrouter's applyState).
			e := boxes["b"].wait(t, want, func(e signaling.Envelope) bool { return e.From == "a" })
			if string(e.Body) != want {
				t.Fatalf("got %s, want %s", e.Body, want)
			}
		}
	})
	bounces := []struct {
		name string
		e    signaling.Envelope
		why  signaling.Reason
	}{
		{name: "not in the room", e: signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "out", Room: "room", InRoom: true}, why: signaling.BounceNotHere},
		{name: "unknown, room-checked", e: signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "zed", Room: "room", InRoom: true}, why: signaling.BounceNotHere},
		{name: "unknown", e: signaling.Envelope{Kind: signaling.KindControl, From: "a", To: "zed"}, why: signaling.BounceGone},
		{name: "busy", e: signaling.Envelope{Kind: signaling.KindControl, From: "a", To: "busy"}, why: signaling.BounceBusy},
		{name: "full", e: signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "full"}, why: signaling.BounceFull},
		{name: "ending", e: signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "ending"}, why: signaling.BounceGone},
	}
	for i, tt := range bounces {
		t.Run("bounce "+tt.name, func(t *testing.T) {
			tt.e.Body = fmt.Appendf(nil, `{"bounce":%d}`, i)
			tt.e.Ref = []byte(`"ref"`)
			r.Send(tt.e)
			b := boxes["a"].wait(t, "bounce", isBounce(tt.e.To, tt.why, string(tt.e.Body)))
			if b.To != "a" || b.Bounced != tt.e.Kind || string(b.Ref) != `"ref"` {
				t.Fatalf("bounce %+v: want To a, Bounced %v, the sender's ref", b, tt.e.Kind)
			}
		})
	}
	t.Run("broadcast", func(t *testing.T) {
		r.Broadcast(signaling.Envelope{Kind: signaling.KindClient, From: "a", Room: "room", Body: []byte(`{"all":1}`)})
		for _, id := range []string{"b", "busy", "full", "ending"} {
			boxes[id].wait(t, id+" gets the broadcast", isBody(`{"all":1}`))
		}
		boxes["a"].wait(t, "full's bounce", isBounce("full", signaling.BounceFull, `{"all":1}`))
		boxes["a"].wait(t, "ending's bounce", isBounce("ending", signaling.BounceGone, `{"all":1}`))
		boxes["a"].wait(t, "busy's bounce", isBounce("busy", signaling.BounceBusy, `{"all":1}`))
	})
	t.Run("unregister", func(t *testing.T) {
		home["b"].Unregister("b")
		r.Send(signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "b", Body: []byte(`{"late":1}`)})
		boxes["a"].wait(t, "bounce", isBounce("b", signaling.BounceGone, `{"late":1}`))
		home["out"].Unregister("out")
		for i, n := range nodes {
			Eventually(t, fmt.Sprintf("node %d: 4 members, 1 room", i), func() bool {
				return len(n.Members("room")) == 4 && n.Rooms() == 1 && len(n.Members("other")) == 0
			})
		}
	})
}
