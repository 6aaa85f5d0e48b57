package signaling

import (
	"flag"
	"fmt"
	"sync"
	"testing"
)

// asyncRouting makes the helpers build hubs on asyncRouter: TestMain runs the
// whole suite once with the local router and once with it. Set only by TestMain,
// before and between runs.
var asyncRouting bool

// runBothRouters runs the package's tests with the local router, then (unless
// fuzzing or benchmarking) with the asynchronous one, so that one node and a
// networked router cannot drift apart.
func runBothRouters(m *testing.M) int {
	code := m.Run()
	if code != 0 || flagSet("test.fuzz") || flagSet("test.bench") {
		return code
	}
	fmt.Println("=== again with every delivery through a goroutine (asyncRouter)")
	asyncRouting = true
	return m.Run()
}

func flagSet(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != ""
}

// testRouter is the router of the current run (local or asynchronous); an
// asynchronous one is stopped when t ends.
func testRouter(t testing.TB) Router {
	if !asyncRouting {
		return NewLocalRouter()
	}
	ar := newAsyncRouter()
	t.Cleanup(ar.close)
	return ar
}

// asyncRouter is the local router with every delivery, bounces included, made
// on another goroutine, as over a network: Send and Broadcast encode and decode
// the envelope (Envelope.MarshalBinary) and return at once; one goroutine delivers in order (so envelopes from one
// sender to one receiver keep their order, as NATS keeps a publisher's).
// Membership stays synchronous.
type asyncRouter struct {
	*localRouter

	mu     sync.Mutex
	q      []hop // guarded by mu
	closed bool  // guarded by mu
	wake   chan struct{}
	done   chan struct{}
}

type hop struct {
	e         Envelope
	broadcast bool
}

func newAsyncRouter() *asyncRouter {
	a := &asyncRouter{localRouter: newLocalRouter(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go a.loop()
	return a
}

func (a *asyncRouter) Send(e Envelope)      { a.post(hop{e: clone(e)}) }
func (a *asyncRouter) Broadcast(e Envelope) { a.post(hop{e: clone(e), broadcast: true}) }

// clone copies what the sender may reuse once Send returns, through the
// binary encoding: everything a session sends another must survive the trip
// over a network.
func clone(e Envelope) Envelope {
	b, err := e.MarshalBinary()
	if err != nil {
		panic(err)
	}
	var out Envelope
	if err := out.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	return out
}

func (a *asyncRouter) post(h hop) {
	a.mu.Lock()
	if !a.closed {
		a.q = append(a.q, h)
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// bounce queues a bounce like any other envelope (it is a copy already).
func (a *asyncRouter) bounce(e Envelope) { a.post(hop{e: e}) }

func (a *asyncRouter) loop() {
	defer close(a.done)
	for range a.wake {
		for {
			a.mu.Lock()
			if a.closed {
				a.mu.Unlock()
				return
			}
			if len(a.q) == 0 {
				a.q = nil
				a.mu.Unlock()
				break
			}
			h := a.q[0]
			a.q[0] = hop{}
			a.q = a.q[1:]
			a.mu.Unlock()
			if h.broadcast {
				a.localRouter.broadcast(h.e, a.bounce)
			} else {
				a.localRouter.send(h.e, a.bounce)
			}
		}
	}
}

func (a *asyncRouter) close() {
	a.mu.Lock()
	already := a.closed
	a.closed = true
	a.mu.Unlock()
	if !already {
		close(a.wake)
	}
	<-a.done
}

// TestAsyncRouterHops: deliveries and bounces happen on the router's goroutine,
// never on the sender's.
func TestAsyncRouterHops(t *testing.T) {
	a := newAsyncRouter()
	defer a.close()
	got := make(chan Envelope, 4)
	a.Register("x", chanEndpoint(got))
	a.Register("y", chanEndpoint(got))
	body := []byte(`{"type":"signal"}`)
	a.Send(Envelope{Kind: KindClient, From: "x", To: "y", Body: body})
	body[2] = 'X' // the sender's buffer is its own again
	a.Send(Envelope{Kind: KindClient, From: "y", To: "gone"})
	if e := <-got; e.To != "y" || string(e.Body) != `{"type":"signal"}` {
		t.Fatalf("delivered %+v %s", e, e.Body)
	}
	if e := <-got; e.Kind != KindBounce || e.To != "y" || e.Reason != BounceGone {
		t.Fatalf("bounce %+v", e)
	}
}

type chanEndpoint chan Envelope

func (c chanEndpoint) Deliver(e Envelope) error { c <- clone(e); return nil }
