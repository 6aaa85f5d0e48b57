package signaling

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestRouterContract checks the Router contract against the local router and
// the asynchronous test router. A networked Router (issue: cluster mode) can
// run the same checks: nothing here depends on delivery being synchronous.
func TestRouterContract(t *testing.T) {
	impls := []struct {
		name string
		new  func(t testing.TB) Router
	}{
		{name: "local", new: func(testing.TB) Router { return NewLocalRouter() }},
		{name: "async", new: func(t testing.TB) Router { ar := newAsyncRouter(); t.Cleanup(ar.close); return ar }},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) { testRouterContract(t, impl.new) })
	}
}

// inbox is an Endpoint that keeps what it gets and answers with err.
type inbox struct {
	mu  sync.Mutex
	got []Envelope
	err error
}

func (b *inbox) Deliver(e Envelope) error {
	e.Body, e.Ref = slices.Clone(e.Body), slices.Clone(e.Ref)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, e)
	return b.err
}

// wait returns the first envelope matching ok, failing after waitFor.
func (b *inbox) wait(t testing.TB, what string, ok func(Envelope) bool) Envelope {
	t.Helper()
	var found Envelope
	eventually(t, what, func() bool {
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

func testRouterContract(t *testing.T, newRouter func(t testing.TB) Router) {
	r := newRouter(t)
	boxes := map[string]*inbox{"a": {}, "b": {}, "c": {}, "out": {},
		"busy": {err: ErrBusy}, "full": {err: ErrUndeliverable}, "ending": {err: ErrNoSession}}
	for id, b := range boxes {
		r.Register(id, b)
	}
	for _, id := range []string{"a", "b", "busy", "full", "ending"} {
		if _, err := r.Join("room", Member{ID: id, Name: id}, 10); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
	}
	if _, err := r.Join("other", Member{ID: "out"}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Join("other", Member{ID: "c"}, 1); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("Join of a full room = %v, want ErrRoomFull", err)
	}
	if got := len(r.Members("room")); got != 5 {
		t.Fatalf("Members(room) = %d, want 5", got)
	}
	isBody := func(body string) func(Envelope) bool {
		return func(e Envelope) bool { return e.Kind != KindBounce && string(e.Body) == body }
	}
	isBounce := func(from string, why Reason, body string) func(Envelope) bool {
		return func(e Envelope) bool {
			return e.Kind == KindBounce && e.From == from && e.Reason == why && string(e.Body) == body
		}
	}

	t.Run("send copies the body", func(t *testing.T) {
		buf := []byte(`{"type":"signal","n":1}`)
		r.Send(Envelope{Kind: KindClient, From: "a", To: "b", Room: "room", InRoom: true, Body: buf})
		copy(buf, "XXXXXXXX") // the sender's buffer is its own once Send returns
		boxes["b"].wait(t, "delivery", isBody(`{"type":"signal","n":1}`))
	})
	t.Run("order per sender and receiver", func(t *testing.T) {
		for i := range 50 {
			r.Send(Envelope{Kind: KindClient, From: "a", To: "b", Body: fmt.Appendf(nil, `{"n":%d}`, i)})
		}
		for i := range 50 {
			want := fmt.Sprintf(`{"n":%d}`, i)
			e := boxes["b"].wait(t, want, func(Envelope) bool { return true })
			if string(e.Body) != want {
				t.Fatalf("got %s, want %s", e.Body, want)
			}
		}
	})
	bounces := []struct {
		name string
		e    Envelope
		why  Reason
	}{
		{name: "not in the room", e: Envelope{Kind: KindClient, From: "a", To: "out", Room: "room", InRoom: true}, why: BounceNotHere},
		{name: "unknown, room-checked", e: Envelope{Kind: KindClient, From: "a", To: "zed", Room: "room", InRoom: true}, why: BounceNotHere},
		{name: "unknown", e: Envelope{Kind: KindControl, From: "a", To: "zed"}, why: BounceGone},
		{name: "busy", e: Envelope{Kind: KindControl, From: "a", To: "busy"}, why: BounceBusy},
		{name: "full", e: Envelope{Kind: KindClient, From: "a", To: "full"}, why: BounceFull},
		{name: "ending", e: Envelope{Kind: KindClient, From: "a", To: "ending"}, why: BounceGone},
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
		r.Broadcast(Envelope{Kind: KindClient, From: "a", Room: "room", Body: []byte(`{"all":1}`)})
		for _, id := range []string{"b", "busy", "full", "ending"} {
			boxes[id].wait(t, id+" gets the broadcast", isBody(`{"all":1}`))
		}
		boxes["a"].wait(t, "full's bounce", isBounce("full", BounceFull, `{"all":1}`))
		boxes["a"].wait(t, "ending's bounce", isBounce("ending", BounceGone, `{"all":1}`))
		boxes["a"].wait(t, "busy's bounce", isBounce("busy", BounceBusy, `{"all":1}`))
	})
	t.Run("unregister", func(t *testing.T) {
		r.Unregister("b")
		r.Send(Envelope{Kind: KindClient, From: "a", To: "b", Body: []byte(`{"late":1}`)})
		boxes["a"].wait(t, "bounce", isBounce("b", BounceGone, `{"late":1}`))
		if got := len(r.Members("room")); got != 4 {
			t.Fatalf("Members(room) after Unregister = %d, want 4", got)
		}
		r.Unregister("out")
		if n := r.Rooms(); n != 1 {
			t.Fatalf("Rooms() = %d, want 1", n)
		}
	})
}
