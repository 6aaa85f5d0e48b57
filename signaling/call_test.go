package signaling

import (
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestCallStateMachine walks every transition of a call.
func TestCallStateMachine(t *testing.T) {
	type step func(t *testing.T, ts *testServer, a, b, c *client)
	callAB := func(t *testing.T, a, b *client) {
		t.Helper()
		a.send(map[string]any{"type": "call", "to": b.id, "call": "c1", "ref": 1})
		if w := a.expect("ringing"); w.Call != "c1" || w.To != b.id || string(w.Ref) != "1" {
			t.Fatalf("ringing = %s", w.raw)
		}
		if w := b.expect("call"); w.Call != "c1" || w.From != a.id || w.Name != "alice" {
			t.Fatalf("call = %s", w.raw)
		}
	}
	accept := func(t *testing.T, a, b *client) {
		t.Helper()
		b.send(map[string]any{"type": "accept", "call": "c1"})
		wa, wb := a.expect("accepted"), b.expect("accepted")
		if wa.Polite == nil || *wa.Polite || string(wa.Peer) != `"`+b.id+`"` {
			t.Fatalf("caller accepted = %s, want polite false, peer %s", wa.raw, b.id)
		}
		if wb.Polite == nil || !*wb.Polite || string(wb.Peer) != `"`+a.id+`"` {
			t.Fatalf("callee accepted = %s, want polite true, peer %s", wb.raw, a.id)
		}
	}
	tests := []struct {
		name string
		cfg  Config
		run  step
	}{
		{name: "accept then hangup", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			if ts.hub.Stats().Calls != 1 {
				t.Fatalf("Stats().Calls = %d, want 1", ts.hub.Stats().Calls)
			}
			accept(t, a, b)
			b.send(map[string]any{"type": "hangup", "call": "c1"})
			if w := a.expect("hangup"); w.Call != "c1" || w.From != b.id || w.Reason != "hangup" {
				t.Fatalf("hangup = %s", w.raw)
			}
			// Hanging up twice is an error: the call is gone.
			a.send(map[string]any{"type": "hangup", "call": "c1"})
			a.expectError(codeNoSuchCall)
			eventually(t, "no calls", func() bool { return ts.hub.Stats().Calls == 0 })
		}},
		{name: "decline", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			b.send(map[string]any{"type": "decline", "call": "c1"})
			if w := a.expect("declined"); w.Call != "c1" || w.From != b.id {
				t.Fatalf("declined = %s", w.raw)
			}
		}},
		{name: "cancel", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			a.send(map[string]any{"type": "cancel", "call": "c1"})
			if w := b.expect("cancelled"); w.Call != "c1" || w.From != a.id {
				t.Fatalf("cancelled = %s", w.raw)
			}
		}},
		{name: "wrong roles", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			a.send(map[string]any{"type": "accept", "call": "c1"}) // caller cannot accept
			a.expectError(codeNoSuchCall)
			b.send(map[string]any{"type": "cancel", "call": "c1"}) // callee cannot cancel
			b.expectError(codeNoSuchCall)
			c.send(map[string]any{"type": "hangup", "call": "c1"}) // outsider
			c.expectError(codeNoSuchCall)
			b.send(map[string]any{"type": "accept", "call": "other"})
			b.expectError(codeNoSuchCall)
			accept(t, a, b)
			b.send(map[string]any{"type": "decline", "call": "c1"}) // already active
			b.expectError(codeNoSuchCall)
		}},
		{name: "busy callee", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			c.send(map[string]any{"type": "call", "to": b.id, "call": "c9"})
			if w := c.expect("busy"); w.Call != "c9" || w.From != b.id {
				t.Fatalf("busy = %s", w.raw)
			}
			b.nothingBefore(c)
		}},
		{name: "ring timeout", cfg: Config{RingTimeout: 50 * time.Millisecond}, run: func(t *testing.T, ts *testServer, a, b, c *client) {
			start := time.Now()
			callAB(t, a, b)
			if w := a.expect("timeout"); w.Call != "c1" {
				t.Fatalf("timeout = %s", w.raw)
			}
			if w := b.expect("timeout"); w.Call != "c1" {
				t.Fatalf("timeout = %s", w.raw)
			}
			if d := time.Since(start); d < 50*time.Millisecond {
				t.Fatalf("timeout after %v, want >= 50ms", d)
			}
			b.send(map[string]any{"type": "accept", "call": "c1"})
			b.expectError(codeNoSuchCall)
		}},
		{name: "peer vanishes mid-call", cfg: Config{ResumeGrace: 50 * time.Millisecond}, run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			accept(t, a, b)
			b.send(map[string]any{"type": "ping", "ack": b.seq()}) // b confirms what it got
			b.expect("pong")
			b.c.CloseNow() // link lost: grace first, then gone for good
			w := a.expect("hangup")
			if w.Call != "c1" || w.From != b.id || w.Reason != "left" {
				t.Fatalf("hangup = %s, want reason left", w.raw)
			}
			if pl := a.expect("peer-left"); pl.ID != b.id || pl.Reason != "timeout" {
				t.Fatalf("peer-left = %s", pl.raw)
			}
			// a is free again.
			a.send(map[string]any{"type": "call", "to": c.id, "call": "c2"})
			a.expect("ringing")
		}},
		{name: "peer closes page mid-call", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			accept(t, a, b)
			b.c.Close(websocket.StatusGoingAway, "page closed")
			if w := a.expect("hangup"); w.Reason != "left" {
				t.Fatalf("hangup = %s, want reason left", w.raw)
			}
		}},
		{name: "caller moves room while ringing", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			callAB(t, a, b)
			a.send(map[string]any{"type": "join", "room": "elsewhere"})
			if w := b.expect("hangup"); w.Reason != "left" || w.From != a.id {
				t.Fatalf("hangup = %s", w.raw)
			}
			b.expect("peer-left")
		}},
		{name: "call to self or stranger", run: func(t *testing.T, ts *testServer, a, b, c *client) {
			a.send(map[string]any{"type": "call", "to": a.id, "call": "x"})
			a.expectError(codePeerUnavailable)
			a.send(map[string]any{"type": "call", "to": "stranger", "call": "x"})
			a.expectError(codePeerUnavailable)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, tt.cfg)
			a := join(t, ts, "alice", "r")
			b := join(t, ts, "bob", "r")
			c := join(t, ts, "carol", "r")
			a.expect("peer-joined")
			a.expect("peer-joined")
			b.expect("peer-joined")
			tt.run(t, ts, a, b, c)
		})
	}
}
