package signaling

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rpeer is a resuming test peer: it numbers its own messages, keeps them until the
// server confirms them, and carries its last seen server seq across connections.
type rpeer struct {
	t      testing.TB
	ts     *testServer
	name   string
	cl     *client
	id     string
	resume string

	outSeq uint64
	outbox []outEntry // sent, not confirmed by the server
	got    []int      // data values relayed from the other peer, in arrival order
	events []string   // peer-left etc. (must stay empty)
}

type outEntry struct {
	seq uint64
	raw []byte
}

func newRPeer(t testing.TB, ts *testServer, name string) *rpeer {
	p := &rpeer{t: t, ts: ts, name: name}
	p.cl = dial(t, ts.url, nil)
	w := p.cl.hello(map[string]any{"name": name, "room": "resume"})
	p.id, p.resume = w.ID, w.Resume
	return p
}

// sendSignal numbers and sends a signal carrying v to peer `to`, with an ack.
func (p *rpeer) sendSignal(to string, v int) {
	p.outSeq++
	raw := []byte(fmt.Sprintf(`{"type":"signal","to":%q,"data":%d,"seq":%d,"ack":%d}`, to, v, p.outSeq, p.cl.seq()))
	p.outbox = append(p.outbox, outEntry{seq: p.outSeq, raw: raw})
	p.cl.sendRaw(raw)
}

// drain handles whatever has arrived without waiting.
func (p *rpeer) drain() {
	for {
		select {
		case w := <-p.cl.in:
			p.handle(w)
		default:
			return
		}
	}
}

func (p *rpeer) handle(w srvMsg) {
	switch w.Type {
	case "signal":
		n, err := strconv.Atoi(string(w.Data))
		if err != nil {
			p.t.Errorf("%s: bad data %s", p.name, w.raw)
		}
		p.got = append(p.got, n)
	case "pong":
		p.confirm(*w.Ack)
	case "peer-joined":
	default:
		p.events = append(p.events, string(w.raw))
	}
}

func (p *rpeer) confirm(ack uint64) {
	i := 0
	for i < len(p.outbox) && p.outbox[i].seq <= ack {
		i++
	}
	p.outbox = p.outbox[i:]
}

// cut kills the socket without a close frame (a dropped link), collects what the
// old connection delivered, then resumes and resends what the server did not process.
func (p *rpeer) cut() {
	p.t.Helper()
	p.drop()
	p.reconnect()
}

// drop kills the socket and collects what the old connection delivered.
func (p *rpeer) drop() {
	old := p.cl
	old.c.CloseNow()
	<-old.done
	for len(old.in) > 0 {
		p.handle(<-old.in)
	}
}

// reconnect resumes and resends what the server did not process.
func (p *rpeer) reconnect() {
	p.t.Helper()
	last := p.cl.seq()
	nc, err := dialErr(p.t, p.ts.url, nil)
	if err != nil {
		p.t.Fatalf("%s: redial: %v", p.name, err)
	}
	nc.lastSeq, nc.id = last, p.id
	nc.send(map[string]any{"type": "hello", "name": p.name, "resume": p.resume, "ack": last})
	var w srvMsg
	for {
		w = nc.next()
		if w.Type == "welcome" {
			break
		}
		if w.Seq == 0 {
			p.t.Fatalf("%s: before welcome: %s", p.name, w.raw)
		}
		p.t.Fatalf("%s: sequenced message before welcome: %s", p.name, w.raw)
	}
	if !w.Resumed || w.ID != p.id {
		p.t.Fatalf("%s: welcome = %s, want resumed %s", p.name, w.raw, p.id)
	}
	p.cl = nc
	p.confirm(*w.Ack)
	for _, e := range p.outbox {
		nc.sendRaw(e.raw)
	}
}

// TestResumeNoLoss cuts links at random, including with messages in flight in both
// directions, and checks every relayed message arrives exactly once and in order.
func TestResumeNoLoss(t *testing.T) {
	cuts := 300
	if testing.Short() {
		cuts = 50
	}
	ts := newServer(t, Config{MessageRate: 1e6, MessageBurst: 1e6, ResumeGrace: 10 * time.Second})
	a := newRPeer(t, ts, "a")
	b := newRPeer(t, ts, "b")
	rng := rand.New(rand.NewPCG(1, 2))
	sentA, sentB := 0, 0
	for i := range cuts {
		for range rng.IntN(6) {
			a.sendSignal(b.id, sentA)
			sentA++
		}
		for range rng.IntN(6) {
			b.sendSignal(a.id, sentB)
			sentB++
		}
		if rng.IntN(3) == 0 {
			// Sometimes let the messages land (and pongs confirm) before the cut.
			a.cl.send(map[string]any{"type": "ping", "ack": a.cl.seq()})
			b.cl.send(map[string]any{"type": "ping", "ack": b.cl.seq()})
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
		}
		a.drain()
		b.drain()
		switch i % 4 {
		case 0:
			a.cut()
		case 1:
			b.cut()
		case 2:
			a.cut()
			b.cut()
		default:
			// Messages sent while a is away (in its grace or not yet noticed gone).
			a.drop()
			for range 1 + rng.IntN(5) {
				b.sendSignal(a.id, sentB)
				sentB++
			}
			a.reconnect()
		}
	}
	// Everything sent must arrive; wait for it.
	deadline := time.Now().Add(waitFor)
	for len(a.got) < sentB || len(b.got) < sentA {
		if time.Now().After(deadline) {
			t.Fatalf("after %d cuts: a got %d/%d, b got %d/%d", cuts, len(a.got), sentB, len(b.got), sentA)
		}
		a.drain()
		b.drain()
		time.Sleep(time.Millisecond)
	}
	// Anything still coming for a (a duplicate) arrives before b's marker: it
	// is collected and the counts below catch it, without a quiet window.
	b.cl.send(map[string]any{"type": "signal", "to": a.id, "data": "marker"})
	for {
		w := a.cl.next()
		if w.Type == "signal" && string(w.Data) == `"marker"` {
			break
		}
		a.handle(w)
	}
	check := func(name string, got []int, want int) {
		if len(got) != want {
			t.Errorf("%s received %d messages, want %d (duplicates?)", name, len(got), want)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("%s: message %d has value %d: lost, duplicated or reordered", name, i, v)
			}
		}
	}
	check("a", a.got, sentB)
	check("b", b.got, sentA)
	for _, p := range []*rpeer{a, b} {
		if len(p.events) > 0 {
			t.Errorf("%s saw %v, want nothing (no peer-left for resumed sessions)", p.name, p.events)
		}
	}
	st := ts.hub.Stats()
	t.Logf("%d cuts, %d+%d messages, %d resumes, stats %+v", cuts, sentA, sentB, st.Resumed, st)
	if st.Resumed < uint64(cuts) {
		t.Errorf("Stats().Resumed = %d, want >= %d", st.Resumed, cuts)
	}
	if st.Replayed == 0 {
		t.Errorf("Stats().Replayed = 0: no cut caught a message in flight, the test proves nothing")
	}
}

func TestResumeFailures(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, ts *testServer)
	}{
		{name: "unknown token", run: func(t *testing.T, ts *testServer) {
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "x", "resume": "nope"})
			if got := c.closed(); got != closeResumeFailed {
				t.Fatalf("close = %v, want 4002", got)
			}
		}},
		{name: "grace expired", run: func(t *testing.T, ts *testServer) {
			a := join(t, ts, "a", "")
			a.c.CloseNow()
			eventually(t, "session gone", func() bool { return ts.hub.Stats().Sessions == 0 })
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "a", "resume": a.resume})
			if got := c.closed(); got != closeResumeFailed {
				t.Fatalf("close = %v, want 4002", got)
			}
		}},
		{name: "replaced while attached", run: func(t *testing.T, ts *testServer) {
			a := join(t, ts, "a", "")
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "a", "resume": a.resume})
			if w := c.expect("welcome"); !w.Resumed || w.ID != a.id {
				t.Fatalf("welcome = %s", w.raw)
			}
			if got := a.closed(); got != closeReplaced {
				t.Fatalf("old link close = %v, want 4001", got)
			}
		}},
		{name: "behind the replay window", run: func(t *testing.T, ts *testServer) {
			a := join(t, ts, "a", "r")
			b := join(t, ts, "b", "r")
			for i := range 8 { // b never acks: a window of 4 forgets written messages
				a.send(map[string]any{"type": "signal", "to": b.id, "data": i})
				b.expect("signal", "peer-joined")
			}
			b.c.CloseNow()
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "b", "resume": b.resume, "ack": 0})
			if got := c.closed(); got != closeResumeFailed {
				t.Fatalf("close = %v, want 4002", got)
			}
			if pl := a.expect("peer-left", "peer-joined"); pl.ID != b.id {
				t.Fatalf("peer-left = %s", pl.raw)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, Config{ResumeGrace: 50 * time.Millisecond, SendQueue: 4, ReplayWindow: 4})
			tt.run(t, ts)
		})
	}
}

// TestResumeKeepsCall checks a resumed session keeps its room, call and peers'
// view: no peer-left, and the call can be hung up afterwards.
func TestResumeKeepsCall(t *testing.T) {
	ts := newServer(t, Config{})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	a.expect("peer-joined")
	a.send(map[string]any{"type": "call", "to": b.id, "call": "c"})
	a.expect("ringing")
	b.expect("call")
	b.send(map[string]any{"type": "accept", "call": "c"})
	a.expect("accepted")
	b.expect("accepted")
	last := b.seq()
	b.c.CloseNow()
	eventually(t, "b detached", func() bool { return ts.hub.Stats().Detached == 1 })
	a.send(map[string]any{"type": "signal", "to": b.id, "data": "while away"})
	nb := dial(t, ts.url, nil)
	nb.lastSeq = last
	nb.send(map[string]any{"type": "hello", "name": "b", "resume": b.resume, "ack": last})
	w := nb.expect("welcome")
	if !w.Resumed || *w.Room != "r" || len(w.Peers) != 1 || w.Peers[0].ID != a.id {
		t.Fatalf("welcome = %s", w.raw)
	}
	if s := nb.expect("signal"); string(s.Data) != `"while away"` {
		t.Fatalf("replay = %s", s.raw)
	}
	nb.send(map[string]any{"type": "hangup", "call": "c"})
	if h := a.expect("hangup"); h.Reason != "hangup" {
		t.Fatalf("hangup = %s", h.raw)
	}
	nb.id = b.id
	a.nothingBefore(nb)
}

// TestReplayBytesBound: the replay window is bounded in bytes as well as in
// messages. Counted in messages alone, a peer in grace (or never acking) could be
// made to hold ReplayWindow × ReadLimit (64 MiB by default) by one sender. Over the
// byte bound the new message is refused back to its sender, and a resume replays
// exactly what was kept.
func TestReplayBytesBound(t *testing.T) {
	tests := []struct {
		name     string
		dataSize int
		n        int
	}{
		{name: "10 KiB signals", dataSize: 10 << 10, n: 10},
		{name: "15 KiB signals", dataSize: 15 << 10, n: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const replayBytes = 64 << 10
			ts := newServer(t, Config{ReadLimit: 16 << 10, ReplayBytes: replayBytes, ResumeGrace: time.Minute})
			a := join(t, ts, "a", "r")
			b := join(t, ts, "b", "r")
			a.expect("peer-joined")
			b.c.CloseNow()
			eventually(t, "b detached", func() bool { return ts.hub.Stats().Detached == 1 })

			data := `"` + strings.Repeat("d", tt.dataSize) + `"`
			kept, total := 0, 0
			for range tt.n {
				if size := len(appendSignalBody(nil, a.id, json.RawMessage(data))); total+size <= replayBytes {
					total += size
					kept++
				}
				a.sendRaw([]byte(`{"type":"signal","to":"` + b.id + `","data":` + data + `}`))
			}
			for range tt.n - kept {
				if w := a.expectError(codeUndeliverable); w.To != b.id {
					t.Fatalf("undeliverable error = %s, want to %s", w.raw, b.id)
				}
			}

			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "b", "resume": b.resume, "ack": 0})
			if w := c.expect("welcome"); !w.Resumed {
				t.Fatalf("welcome = %s, want resumed", w.raw)
			}
			for range kept {
				if w := c.expect("signal"); string(w.Data) != data {
					t.Fatalf("replayed signal has %d bytes of data, want %d", len(w.Data), len(data))
				}
			}
			// Exactly kept replayed, and no refusal beyond the n-kept: markers
			// both ways instead of quiet windows.
			c.id = b.id
			c.nothingBefore(a)
			a.nothingBefore(c)
		})
	}
}
