package signaling

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// TestStaleResume: a client gives socket #1 up while its hello{resume} is still
// on the way and resumes on socket #2. When #1's hello arrives after #2's
// welcome, the hub must not hand the session to the dead #1: hello.attempt 1 is
// not above the 2 already accepted, so #1 is closed with 4001 and #2 stays.
// Clients that send no attempt take over as before.
func TestStaleResume(t *testing.T) {
	ts := newServer(t, Config{ResumeGrace: time.Minute})
	a := join(t, ts, "alice", "r")
	b := join(t, ts, "bob", "r")
	a.expect("peer-joined")
	b.c.CloseNow()
	eventually(t, "bob in grace", func() bool { return ts.hub.Stats().Detached == 1 })

	resume := func(c *client, attempt int) {
		t.Helper()
		m := map[string]any{"type": "hello", "name": "bob", "resume": b.resume, "ack": b.seq()}
		if attempt > 0 {
			m["attempt"] = attempt
		}
		c.send(m)
	}
	first := dial(t, ts.url, nil) // its hello is the delayed one
	second := dial(t, ts.url, nil)
	resume(second, 2)
	if w := second.expect("welcome"); !w.Resumed || w.ID != b.id {
		t.Fatalf("second welcome = %s", w.raw)
	}
	resume(first, 1) // arrives late
	if code := first.closed(); code != closeReplaced {
		t.Fatalf("stale socket closed with %d, want %d", code, closeReplaced)
	}
	a.send(map[string]any{"type": "signal", "to": b.id, "data": "still here?"})
	if w := second.expect("signal"); w.From != a.id {
		t.Fatalf("live link got %s", w.raw)
	}
	if st := ts.hub.Stats(); st.StaleResumes != 1 || st.Sessions != 2 || st.Detached != 0 {
		t.Fatalf("Stats = %+v, want 1 stale resume and both sessions attached", st)
	}

	// An old client (no attempt) takes over as it always did...
	third := dial(t, ts.url, nil)
	resume(third, 0)
	third.expect("welcome")
	if code := second.closed(); code != closeReplaced {
		t.Fatalf("replaced socket closed with %d, want %d", code, closeReplaced)
	}
	// ...and an attempt not above the highest one accepted is still stale.
	fourth := dial(t, ts.url, nil)
	resume(fourth, 2)
	if code := fourth.closed(); code != closeReplaced {
		t.Fatalf("stale socket closed with %d, want %d", code, closeReplaced)
	}
	a.send(map[string]any{"type": "signal", "to": b.id, "data": "and now?"})
	third.expect("signal", "signal") // the first one is replayed: it was never acked
}

// renewableToken is what a sign-in hands out: a token with the rnw claim.
func renewableToken(t testing.TB, sub string, now time.Time, life time.Duration) string {
	t.Helper()
	c := claims{Renew: true, RegisteredClaims: jwt.RegisteredClaims{Subject: sub,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(life))}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRenewalVirtualTime: a session signed in with a renewable token (10
// minutes) gets its successor pushed at 80 % of its lifetime, then again at 80 %
// of the successor's, each one valid for the same lifetime; the successor also
// works for a resume after the first has expired, and the pushes go on. An
// operator's token (no rnw) is never renewed.
func TestTokenRenewalVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ice := &fakeICE{ttl: 1000 * time.Hour} // no ice-servers push in between
		h, dial, stop := bubbleHubRaw(t, Config{ICE: ice, AuthSecret: testSecret, ResumeGrace: time.Hour})
		defer stop()
		start := time.Now()
		c := dial()
		hello := func(c *websocket.Conn, m map[string]any) srvMsg {
			t.Helper()
			m["type"], m["name"] = "hello", "a"
			sendJSON(t, c, m)
			return readMsg(t, c)
		}
		w := hello(c, map[string]any{"token": renewableToken(t, "alice", start, 10*time.Minute)})
		if w.Type != "welcome" {
			t.Fatalf("got %s, want welcome", w.raw)
		}
		var tok string
		for i := 1; i <= 2; i++ {
			m := readMsg(t, c)
			if m.Type != "token" || m.TTL != 600 {
				t.Fatalf("push %d: got %s, want token with ttl 600", i, m.raw)
			}
			var p struct {
				Token string `json:"token"`
			}
			_ = json.Unmarshal(m.raw, &p)
			cl, err := verifyToken(testSecret, p.Token)
			if err != nil || cl.Subject != "alice" || !cl.Renew || p.Token == tok {
				t.Fatalf("push %d: token %q: %+v, %v", i, p.Token, cl, err)
			}
			tok = p.Token
			want := time.Duration(i) * 8 * time.Minute
			if el := time.Since(start); el < want || el > want+time.Duration(i)*2*time.Second {
				t.Fatalf("push %d after %v, want %v", i, el, want)
			}
		}
		if st := h.Stats(); st.TokensRenewed != 2 {
			t.Fatalf("TokensRenewed = %d, want 2", st.TokensRenewed)
		}
		// The last token resumes the session (the first one has expired by now).
		c.CloseNow()
		synctest.Wait()
		c2 := dial()
		if w2 := hello(c2, map[string]any{"token": tok, "resume": w.Resume, "ack": 2}); w2.Type != "welcome" || !w2.Resumed {
			t.Fatalf("resume with the renewed token: %s", w2.raw)
		}
		resumedAt := time.Now()
		if m := readMsg(t, c2); m.Type != "token" || time.Since(resumedAt) < 7*time.Minute {
			t.Fatalf("after the resume got %s after %v, want the next token push", m.raw, time.Since(resumedAt))
		}

		// An operator's token (no rnw) gets no push.
		op := dial()
		opTok, err := MintToken(testSecret, "bob", "", 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if w := hello(op, map[string]any{"token": opTok, "room": "ops"}); w.Type != "welcome" {
			t.Fatalf("got %s", w.raw)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if _, b, err := op.Read(ctx); err == nil {
			t.Fatalf("operator token session got %s, want nothing", b)
		}
	})
}

// bubbleHubRaw is bubbleHub without the hello: dial returns a bare socket.
func bubbleHubRaw(t *testing.T, cfg Config) (*Hub, func() *websocket.Conn, func()) {
	t.Helper()
	var conns []*websocket.Conn
	_, h, stopHub, client := bubble(t, cfg)
	dial := func() *websocket.Conn {
		t.Helper()
		c, _, err := websocket.Dial(context.Background(), "ws://hub/ws", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
		return c
	}
	return h, dial, func() {
		for _, c := range conns {
			c.CloseNow()
		}
		stopHub()
	}
}

func sendJSON(t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func readMsg(t testing.TB, c *websocket.Conn) srvMsg {
	t.Helper()
	_, b, err := c.Read(context.Background())
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m srvMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	m.raw = b
	return m
}

// gateRouter holds call control of the operations in hold until the test
// releases it, so that envelopes can be made to cross. Once it holds one
// envelope from a sender to a receiver, it holds everything after it between
// the two as well: the order between one sender and one receiver is the
// Router's promise.
type gateRouter struct {
	Router
	mu   sync.Mutex
	hold map[string]bool // guarded by mu
	held []Envelope      // guarded by mu
}

func (g *gateRouter) Send(e Envelope) {
	g.mu.Lock()
	hold := g.holdsLocked(e.From, e.To)
	if !hold && e.Kind == KindControl {
		var c control
		hold = json.Unmarshal(e.Body, &c) == nil && g.hold[c.Op]
	}
	if hold {
		e.Body, e.Ref = slices.Clone(e.Body), slices.Clone(e.Ref)
		g.held = append(g.held, e)
	}
	g.mu.Unlock()
	if !hold {
		g.Router.Send(e)
	}
}

func (g *gateRouter) holdsLocked(from, to string) bool {
	for _, h := range g.held {
		if h.From == from && h.To == to {
			return true
		}
	}
	return false
}

func (g *gateRouter) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// release sends on, in order, the held envelopes from `from` ("" all).
func (g *gateRouter) release(from string) int {
	g.mu.Lock()
	var out []Envelope
	g.held = slices.DeleteFunc(g.held, func(e Envelope) bool {
		if from == "" || e.From == from {
			out = append(out, e)
			return true
		}
		return false
	})
	g.mu.Unlock()
	for _, e := range out {
		g.Router.Send(e)
	}
	return len(out)
}

// TestGlare: alice and bob call each other at once (each call is sent before
// the other's invite arrives). Whatever order the invites arrive in, the call
// of the session with the smaller id goes on: its caller hears ringing, the
// other caller busy for its own call and then the incoming call (PROTOCOL.md).
func TestGlare(t *testing.T) {
	for _, reversed := range []bool{false, true} {
		t.Run(fmt.Sprintf("reversed=%v", reversed), func(t *testing.T) {
			g := &gateRouter{Router: testRouter(t), hold: map[string]bool{opInvite: true}}
			ts := newServer(t, Config{Router: g})
			a := join(t, ts, "alice", "r")
			b := join(t, ts, "bob", "r")
			a.expect("peer-joined")
			a.send(map[string]any{"type": "call", "to": b.id, "call": "alice"})
			b.send(map[string]any{"type": "call", "to": a.id, "call": "bob"})
			eventually(t, "both invites sent", func() bool { return g.count() == 2 })
			if reversed {
				g.mu.Lock()
				slices.Reverse(g.held)
				g.mu.Unlock()
			}
			g.release("")
			win, lose, winCall, loseCall := a, b, "alice", "bob"
			if b.id < a.id {
				win, lose, winCall, loseCall = b, a, "bob", "alice"
			}
			if w := win.expect("ringing"); w.Call != winCall || w.To != lose.id {
				t.Fatalf("winner got %s", w.raw)
			}
			if w := lose.expect("busy"); w.Call != loseCall || w.From != win.id {
				t.Fatalf("loser got %s, want busy for its own call", w.raw)
			}
			if w := lose.expect("call"); w.Call != winCall || w.From != win.id {
				t.Fatalf("loser got %s, want the winner's call", w.raw)
			}
			eventually(t, "one call", func() bool { return ts.hub.Stats().Calls == 1 })
			lose.send(map[string]any{"type": "accept", "call": winCall})
			win.expect("accepted")
			lose.expect("accepted")
			win.nothingBefore(lose)
		})
	}
}

// TestCrossingEnds: an answer that crosses the end of a call (accept against
// cancel or ring timeout) ends the call on both sides, in either order: no half
// is left behind (PROTOCOL.md, "Calls").
func TestCrossingEnds(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		end    func(a *client)
		op     string // held with the accept
		callee string // what the callee hears after its accepted
		caller string // what the caller hears ("" nothing)
	}{
		{name: "cancel", op: opCancel, callee: "cancelled",
			end: func(a *client) { a.send(map[string]any{"type": "cancel", "call": "c1"}) }},
		{name: "ring timeout", op: opTimeout, callee: "timeout", caller: "timeout",
			cfg: Config{RingTimeout: 200 * time.Millisecond}, end: func(*client) {}},
	}
	for _, tt := range tests {
		for _, reversed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reversed=%v", tt.name, reversed), func(t *testing.T) {
				g := &gateRouter{Router: testRouter(t), hold: map[string]bool{opAccept: true, tt.op: true}}
				tt.cfg.Router = g
				ts := newServer(t, tt.cfg)
				a := join(t, ts, "alice", "r")
				b := join(t, ts, "bob", "r")
				a.expect("peer-joined")
				a.send(map[string]any{"type": "call", "to": b.id, "call": "c1"})
				a.expect("ringing")
				b.expect("call")
				b.send(map[string]any{"type": "accept", "call": "c1"})
				b.expect("accepted")
				tt.end(a)
				if tt.caller != "" {
					a.expect(tt.caller)
				}
				eventually(t, "both held", func() bool { return g.count() == 2 })
				if reversed {
					g.mu.Lock()
					slices.Reverse(g.held)
					g.mu.Unlock()
				}
				g.release("")
				if w := b.expect(tt.callee); w.Call != "c1" {
					t.Fatalf("callee got %s", w.raw)
				}
				a.nothingBefore(b)
				eventually(t, "no calls", func() bool { return ts.hub.Stats().Calls == 0 })
				g.mu.Lock()
				g.hold = nil
				g.mu.Unlock()
				b.send(map[string]any{"type": "call", "to": a.id, "call": "c2"})
				b.expect("ringing")
				a.expect("call")
			})
		}
	}
}

// TestGlareWinnerCancels: in a glare the loser gives its call up while its
// invite is still on the way; should the winner cancel its own call before
// that invite lands, the invite rings at the winner with nobody calling. The
// loser's cancel, sent after its invite, ends that call at once.
func TestGlareWinnerCancels(t *testing.T) {
	g := &gateRouter{Router: testRouter(t), hold: map[string]bool{opInvite: true}}
	ts := newServer(t, Config{Router: g})
	win := join(t, ts, "w", "r")
	lose := join(t, ts, "l", "r")
	win.expect("peer-joined")
	if lose.id < win.id {
		win, lose = lose, win
	}
	win.send(map[string]any{"type": "call", "to": lose.id, "call": "w1"})
	lose.send(map[string]any{"type": "call", "to": win.id, "call": "l1"})
	eventually(t, "both invites held", func() bool { return g.count() == 2 })
	g.release(win.id) // the winner's invite lands; the loser's stays on the way
	if w := lose.expect("busy"); w.Call != "l1" {
		t.Fatalf("loser got %s, want busy for l1", w.raw)
	}
	lose.expect("call")
	win.send(map[string]any{"type": "cancel", "call": "w1"})
	lose.expect("cancelled")
	g.release(lose.id) // the loser's invite, then what followed it
	if w := win.expect("call"); w.Call != "l1" {
		t.Fatalf("winner got %s", w.raw)
	}
	if w := win.expect("cancelled"); w.Call != "l1" || w.From != lose.id {
		t.Fatalf("winner got %s, want l1 cancelled", w.raw)
	}
	eventually(t, "no calls", func() bool { return ts.hub.Stats().Calls == 0 })
	g.mu.Lock()
	g.hold = nil
	g.mu.Unlock()
	win.send(map[string]any{"type": "call", "to": lose.id, "call": "w2"})
	win.expect("ringing")
	lose.expect("call")
}

// slowDirectory blocks Accept until release is closed, as a cluster's
// directory may while its storage elects a leader.
type slowDirectory struct {
	Directory
	entered chan struct{}
	release chan struct{}
}

func (d *slowDirectory) Accept(token string, attempt uint64) bool {
	close(d.entered)
	<-d.release
	return d.Directory.Accept(token, attempt)
}

// slowRouter blocks Join of a member called "slow" until release is closed.
type slowRouter struct {
	Router
	entered chan struct{}
	release chan struct{}
}

func (r *slowRouter) Join(room string, m Member, max int) ([]Member, error) {
	if m.Name == "slow" {
		close(r.entered)
		<-r.release
	}
	return r.Router.Join(room, m, max)
}

// TestSlowSeamDoesNotHoldTheHub: a Directory or Router that waits (a network
// round trip, a stalled cluster) holds up only the session that asked: the
// hub's lock is never held across them, so other clients still get their
// welcome meanwhile.
func TestSlowSeamDoesNotHoldTheHub(t *testing.T) {
	dir := &slowDirectory{Directory: NewLocalDirectory(), entered: make(chan struct{}), release: make(chan struct{})}
	rt := &slowRouter{Router: testRouter(t), entered: make(chan struct{}), release: make(chan struct{})}
	ts := newServer(t, Config{Directory: dir, Router: rt, ResumeGrace: time.Minute})

	a := join(t, ts, "a", "r")
	a.c.CloseNow()
	eventually(t, "a in grace", func() bool { return ts.hub.Stats().Detached == 1 })
	again := dial(t, ts.url, nil)
	again.send(map[string]any{"type": "hello", "name": "a", "resume": a.resume, "attempt": 2})
	<-dir.entered // the resume waits in Accept

	slow := dial(t, ts.url, nil)
	slow.send(map[string]any{"type": "hello", "name": "slow", "room": "r"})
	<-rt.entered // this hello waits in Join

	join(t, ts, "b", "r") // gets its welcome meanwhile
	if st := ts.hub.Stats(); st.Sessions != 2 {
		t.Fatalf("Stats().Sessions = %d, want 2 (a in grace, b)", st.Sessions)
	}
	close(dir.release)
	if w := again.expect("welcome", "peer-joined"); !w.Resumed {
		t.Fatalf("resume: %s", w.raw)
	}
	close(rt.release)
	slow.expect("welcome")
}
