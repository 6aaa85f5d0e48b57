package signaling

import (
	"errors"
	"sync/atomic"
	"testing"
)

type nopEndpoint struct{ n atomic.Int64 }

func (e *nopEndpoint) Deliver(Message) error { e.n.Add(1); return nil }

func TestLocalRouter(t *testing.T) {
	r := NewLocalRouter()
	eps := map[string]*nopEndpoint{"a": {}, "b": {}, "c": {}}
	for id, ep := range eps {
		r.Register(id, ep)
	}
	steps := []struct {
		name      string
		join      string // id joining
		room      string
		wantOther int
		wantErr   error
	}{
		{name: "first", join: "a", room: "x", wantOther: 0},
		{name: "second", join: "b", room: "x", wantOther: 1},
		{name: "full", join: "c", room: "x", wantErr: ErrRoomFull},
		{name: "rejoin same room", join: "a", room: "x", wantOther: 1},
		{name: "move", join: "b", room: "y", wantOther: 0},
		{name: "room has space again", join: "c", room: "x", wantOther: 1},
	}
	for _, st := range steps {
		others, err := r.Join(st.room, Member{ID: st.join}, 2)
		if !errors.Is(err, st.wantErr) || (err == nil && len(others) != st.wantOther) {
			t.Fatalf("%s: Join(%s, %s) = %d others, %v; want %d, %v", st.name, st.room, st.join, len(others), err, st.wantOther, st.wantErr)
		}
	}
	if room, ok := r.RoomOf("b"); !ok || room != "y" {
		t.Fatalf("RoomOf(b) = %q, %v", room, ok)
	}
	if failed := r.Broadcast("x", "a", Message{Body: []byte(`{"type":"x"}`)}); len(failed) != 0 || eps["c"].n.Load() != 1 || eps["a"].n.Load() != 0 {
		t.Fatalf("Broadcast: failed %v, c got %d, a got %d", failed, eps["c"].n.Load(), eps["a"].n.Load())
	}
	r.Unregister("b")
	if err := r.Send("b", Message{}); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Send to unregistered = %v, want ErrNoSession", err)
	}
	if n := r.Rooms(); n != 1 {
		t.Fatalf("Rooms() = %d, want 1 (y emptied)", n)
	}
}

// countingRouter wraps a Router: the hub must route everything through it.
type countingRouter struct {
	Router
	sends, broadcasts atomic.Int64
}

func (c *countingRouter) Send(id string, m Message) error {
	c.sends.Add(1)
	return c.Router.Send(id, m)
}

func (c *countingRouter) Broadcast(room, except string, m Message) []string {
	c.broadcasts.Add(1)
	return c.Router.Broadcast(room, except, m)
}

// TestCustomRouter: the WebSocket side only reaches other sessions through
// Config.Router, the seam for a NATS implementation.
func TestCustomRouter(t *testing.T) {
	cr := &countingRouter{Router: NewLocalRouter()}
	ts := newServer(t, Config{Router: cr})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	a.expect("peer-joined")
	before := cr.sends.Load()
	a.send(map[string]any{"type": "signal", "to": b.id, "data": 1})
	b.expect("signal")
	a.send(map[string]any{"type": "signal", "to": "*", "data": 2})
	b.expect("signal")
	if cr.sends.Load() != before+1 || cr.broadcasts.Load() != 1 {
		t.Fatalf("router saw %d sends, %d broadcasts; want 1 and 1", cr.sends.Load()-before, cr.broadcasts.Load())
	}
}
