package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recEndpoint records what a router delivered to it and answers with err.
type recEndpoint struct {
	mu  sync.Mutex
	got []Envelope
	err error
}

func (e *recEndpoint) Deliver(env Envelope) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	env.Body = slices.Clone(env.Body)
	e.got = append(e.got, env)
	return e.err
}

func (e *recEndpoint) take() []Envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

func TestLocalRouter(t *testing.T) {
	r := NewLocalRouter()
	eps := map[string]*recEndpoint{"a": {}, "b": {}, "c": {}, "busy": {err: ErrBusy}}
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
		{name: "busy one", join: "busy", room: "y", wantOther: 1},
	}
	for _, st := range steps {
		others, err := r.Join(st.room, Member{ID: st.join}, 2)
		if !errors.Is(err, st.wantErr) || (err == nil && len(others) != st.wantOther) {
			t.Fatalf("%s: Join(%s, %s) = %d others, %v; want %d, %v", st.name, st.room, st.join, len(others), err, st.wantOther, st.wantErr)
		}
	}
	// x: a, c; y: b, busy.
	sends := []struct {
		name     string
		e        Envelope
		to       string // who gets it ("" nobody)
		bounceTo string // who gets a bounce ("" nobody)
		reason   Reason
	}{
		{name: "room-checked, member", e: Envelope{Kind: KindClient, From: "a", To: "c", Room: "x", InRoom: true}, to: "c"},
		{name: "room-checked, other room", e: Envelope{Kind: KindClient, From: "a", To: "b", Room: "x", InRoom: true}, bounceTo: "a", reason: BounceNotHere},
		{name: "room-checked, unknown", e: Envelope{Kind: KindClient, From: "a", To: "zed", Room: "x", InRoom: true}, bounceTo: "a", reason: BounceNotHere},
		{name: "unchecked, other room", e: Envelope{Kind: KindControl, From: "a", To: "b"}, to: "b"},
		{name: "unchecked, unknown", e: Envelope{Kind: KindControl, From: "a", To: "zed"}, bounceTo: "a", reason: BounceGone},
		{name: "refused", e: Envelope{Kind: KindControl, From: "a", To: "busy"}, to: "busy", bounceTo: "a", reason: BounceBusy},
		{name: "no sender, no bounce", e: Envelope{Kind: KindClient, To: "zed"}},
		{name: "a bounce never bounces", e: Envelope{Kind: KindBounce, From: "a", To: "busy"}, to: "busy"},
	}
	for _, st := range sends {
		r.Send(st.e)
		for id, ep := range eps {
			got := ep.take()
			var want []string
			if id == st.to {
				want = append(want, fmt.Sprint(st.e.Kind))
			}
			if id == st.bounceTo {
				want = append(want, fmt.Sprint(KindBounce, st.reason, st.e.Kind, st.e.To))
			}
			var have []string
			for _, e := range got {
				if e.Kind == KindBounce && e.From != "" && e.From != "a" {
					have = append(have, fmt.Sprint(e.Kind, e.Reason, e.Bounced, e.From))
				} else {
					have = append(have, fmt.Sprint(e.Kind))
				}
			}
			if !slices.Equal(have, want) {
				t.Errorf("%s: %s got %v, want %v", st.name, id, have, want)
			}
		}
	}
	r.Broadcast(Envelope{Kind: KindClient, From: "b", Room: "y", Body: []byte(`{"type":"x"}`)})
	if got := eps["busy"].take(); len(got) != 1 || string(got[0].Body) != `{"type":"x"}` {
		t.Fatalf("Broadcast: busy got %v", got)
	}
	if got := eps["b"].take(); len(got) != 1 || got[0].Kind != KindBounce || got[0].From != "busy" || got[0].Reason != BounceBusy {
		t.Fatalf("Broadcast: sender got %+v, want one bounce from busy", got)
	}
	r.Unregister("b")
	r.Send(Envelope{Kind: KindClient, From: "a", To: "b"})
	if got := eps["a"].take(); len(got) != 1 || got[0].Reason != BounceGone {
		t.Fatalf("Send to unregistered: sender got %+v, want BounceGone", got)
	}
	if n := r.Rooms(); n != 2 {
		t.Fatalf("Rooms() = %d, want 2", n)
	}
	r.Unregister("busy")
	if n := r.Rooms(); n != 1 {
		t.Fatalf("Rooms() = %d, want 1 (y emptied)", n)
	}
}

func TestLocalDirectory(t *testing.T) {
	d := NewLocalDirectory()
	d.Add("tok", "id1")
	if id, ok := d.Lookup("tok"); !ok || id != "id1" {
		t.Fatalf("Lookup = %q, %v", id, ok)
	}
	for _, st := range []struct {
		attempt uint64
		want    bool
	}{{0, true}, {2, true}, {1, false}, {2, false}, {0, true}, {3, true}} {
		if got := d.Accept("tok", st.attempt); got != st.want {
			t.Fatalf("Accept(%d) = %v, want %v", st.attempt, got, st.want)
		}
	}
	d.Remove("tok")
	if _, ok := d.Lookup("tok"); ok {
		t.Fatal("token still known after Remove")
	}
	if !d.Accept("tok", 1) {
		t.Fatal("Accept of an unknown token = false, want true (gone, not stale)")
	}
}

// recRouter wraps a Router and records every envelope it delivers, bounces
// included, by wrapping the endpoints it is given: what a session receives
// from another without passing here is a bypass of the seam.
type recRouter struct {
	Router
	mu  sync.Mutex
	log []Envelope
}

type recWrap struct {
	r  *recRouter
	ep Endpoint
	id string
}

func (w recWrap) Deliver(e Envelope) error {
	c := e
	c.Body = slices.Clone(e.Body)
	if c.To == "" {
		c.To = w.id // a broadcast
	}
	w.r.mu.Lock()
	w.r.log = append(w.r.log, c)
	w.r.mu.Unlock()
	return w.ep.Deliver(e)
}

func (r *recRouter) Register(id string, ep Endpoint) { r.Router.Register(id, recWrap{r, ep, id}) }

// take returns what was delivered since the last take, rendered with names
// instead of ids and sorted (deliveries to several sessions race).
func (r *recRouter) take(names map[string]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.log {
		what := ""
		switch e.Kind {
		case KindClient:
			var m struct{ Type string }
			_ = json.Unmarshal(e.Body, &m)
			what = "client " + m.Type
		case KindControl:
			var c control
			_ = json.Unmarshal(e.Body, &c)
			what = "control " + c.Op
			if c.Reason != "" {
				what += " " + c.Reason
			}
		case KindBounce:
			what = fmt.Sprintf("bounce %d of %d", e.Reason, e.Bounced)
		}
		out = append(out, fmt.Sprintf("%s %s>%s", what, names[e.From], names[e.To]))
	}
	r.log = nil
	slices.Sort(out)
	return out
}

// TestEverythingCrossesTheRouter: every message one session causes another to
// receive is an envelope the Router delivered: presence, calls (answer,
// decline, cancel, busy, ring timeout, hangup), moves, the end of a grace,
// undeliverable notices.
func TestEverythingCrossesTheRouter(t *testing.T) {
	rr := &recRouter{Router: testRouter(t)}
	ts := newServer(t, Config{Router: rr, RingTimeout: 100 * time.Millisecond, ResumeGrace: 100 * time.Millisecond})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	a.expect("peer-joined")
	c := join(t, ts, "c", "r")
	a.expect("peer-joined")
	b.expect("peer-joined")
	names := map[string]string{a.id: "a", b.id: "b", c.id: "c", "": "-", "nobody": "nobody"}
	callAB := func(call string) {
		t.Helper()
		a.send(map[string]any{"type": "call", "to": b.id, "call": call})
		a.expect("ringing")
		b.expect("call")
	}
	phases := []struct {
		name string
		run  func()
		want []string
	}{
		{name: "presence", run: func() {}, want: []string{"client peer-joined ->a", "client peer-joined ->a", "client peer-joined ->b"}},
		{name: "whole call", run: func() {
			callAB("c1")
			b.send(map[string]any{"type": "accept", "call": "c1"})
			a.expect("accepted")
			b.expect("accepted")
			a.send(map[string]any{"type": "hangup", "call": "c1"})
			b.expect("hangup")
		}, want: []string{"control accept b>a", "control hangup hangup a>b", "control invite a>b", "control ringing b>a"}},
		{name: "decline", run: func() {
			callAB("c2")
			b.send(map[string]any{"type": "decline", "call": "c2"})
			a.expect("declined")
		}, want: []string{"control decline b>a", "control invite a>b", "control ringing b>a"}},
		{name: "busy and cancel", run: func() {
			callAB("c3")
			c.send(map[string]any{"type": "call", "to": b.id, "call": "c4"})
			c.expect("busy")
			a.send(map[string]any{"type": "cancel", "call": "c3"})
			b.expect("cancelled")
		}, want: []string{"bounce 4 of 2 b>c", "control cancel a>b", "control invite a>b", "control invite c>b", "control ringing b>a"}},
		{name: "ring timeout", run: func() {
			callAB("c5")
			a.expect("timeout")
			b.expect("timeout")
		}, want: []string{"control invite a>b", "control ringing b>a", "control timeout a>b"}},
		{name: "signal and errors", run: func() {
			a.send(map[string]any{"type": "signal", "to": b.id, "data": 1})
			b.expect("signal")
			a.send(map[string]any{"type": "signal", "to": "*", "data": 2})
			b.expect("signal")
			c.expect("signal")
			a.send(map[string]any{"type": "signal", "to": "nobody", "data": 1})
			a.expectError(codePeerUnavailable)
			a.send(map[string]any{"type": "call", "to": "nobody", "call": "c6"})
			a.expectError(codePeerUnavailable)
		}, want: []string{"bounce 2 of 1 nobody>a", "bounce 2 of 2 nobody>a", "client signal a>b", "client signal a>b", "client signal a>c"}},
		{name: "move", run: func() {
			c.send(map[string]any{"type": "join", "room": "elsewhere"})
			c.expect("joined")
			a.expect("peer-left")
			b.expect("peer-left")
		}, want: []string{"client peer-left ->a", "client peer-left ->b"}},
		{name: "grace end mid-call with unread messages", run: func() {
			callAB("c7")
			b.send(map[string]any{"type": "accept", "call": "c7"})
			a.expect("accepted")
			b.expect("accepted")
			b.c.CloseNow()
			eventually(t, "b away", func() bool { return ts.hub.Stats().Detached == 1 })
			a.send(map[string]any{"type": "signal", "to": b.id, "data": 2})
			if w := a.expect("hangup"); w.Reason != "left" {
				t.Fatalf("hangup = %s", w.raw)
			}
			a.expect("peer-left")
			if w := a.expectError(codeUndeliverable); w.To != b.id {
				t.Fatalf("undeliverable = %s", w.raw)
			}
		}, want: []string{"bounce 5 of 1 b>a", "client peer-left ->a", "client signal a>b",
			"control accept b>a", "control hangup left b>a", "control invite a>b", "control ringing b>a"}},
	}
	for _, ph := range phases {
		ph.run()
		var got []string
		eventually(t, ph.name, func() bool { got = append(got, rr.take(names)...); return len(got) >= len(ph.want) })
		slices.Sort(got)
		if !slices.Equal(got, ph.want) {
			t.Fatalf("%s: the router delivered\n%q\nwant\n%q", ph.name, got, ph.want)
		}
	}
}

// TestSignalPathAllocs: relaying a signal through the local router into the
// receiver's queue (and its ack) allocates nothing: the body is encoded into
// the sender's reused buffer and copied into a pooled one by the receiver.
func TestSignalPathAllocs(t *testing.T) {
	h, err := New(Config{ICE: &fakeICE{}})
	if err != nil {
		t.Fatal(err)
	}
	a := &session{e: h.env, id: "a", room: "r"}
	b := &session{e: h.env, id: "b", room: "r"}
	for _, s := range []*session{a, b} {
		h.router.Register(s.id, s)
		if _, err := h.router.Join("r", s.member(), 8); err != nil {
			t.Fatal(err)
		}
	}
	in := &inbound{}
	m := &inMsg{Type: "signal", To: "b", Data: []byte(`{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host"}`)}
	n := testing.AllocsPerRun(1000, func() {
		if we := a.handleSignal(request{m: m, room: "r", in: in}); we != nil {
			t.Fatal(we)
		}
		b.mu.Lock()
		b.sent = b.seq // as if written
		b.ackLocked(b.seq)
		b.mu.Unlock()
	})
	if n != 0 {
		t.Fatalf("relaying a signal allocates %v times, want 0", n)
	}
}

// FuzzControl feeds arbitrary call control and bounces, as a networked router
// could deliver them, to a session: nothing panics, a refused invite leaves no
// half behind, and a half only ever belongs to a partner that sent an invite.
func FuzzControl(f *testing.F) {
	for _, seed := range []string{
		`{"op":"invite","call":"c1","name":"alice"}`,
		`{"op":"accept","call":"c1"}`,
		`{"op":"hangup","call":"c1","reason":"left"}`,
		`{"op":"ringing","call":""}`,
		`{"op":"invite"}`,
		`not json`,
		`{"op":7}`,
	} {
		f.Add([]byte(seed), uint8(KindControl), uint8(0))
		f.Add([]byte(seed), uint8(KindBounce), uint8(BounceBusy))
	}
	f.Fuzz(func(t *testing.T, body []byte, kind, why uint8) {
		h, err := New(Config{ICE: &fakeICE{}})
		if err != nil {
			t.Fatal(err)
		}
		s := &session{e: h.env, id: "me", room: "r"}
		h.router.Register("me", s)
		err = s.Deliver(Envelope{Kind: Kind(kind), From: "peer", To: "me", Body: body, Reason: Reason(why), Bounced: KindControl})
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.call != nil && (err != nil || s.call.peer != "peer" || s.call.caller || Kind(kind) != KindControl) {
			t.Fatalf("half %+v after Deliver(%s) = %v", s.call, body, err)
		}
	})
}
