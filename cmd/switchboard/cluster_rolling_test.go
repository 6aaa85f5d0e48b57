package main

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// callEnd is one side of the call of TestClusterRollingRestart: its client,
// the node it is on, the numbered signals it sent and got, and those of its
// messages the server has not confirmed (resent above a welcome's ack).
type callEnd struct {
	c      *routertest.Client
	node   int
	sent   int
	got    int
	seq    uint64
	outbox []wire.Signal
}

func (e *callEnd) send(t *testing.T, to string) {
	t.Helper()
	e.sent++
	e.seq++
	s := wire.Signal{Type: wire.TypeSignal, To: to, Data: json.RawMessage(strconv.Itoa(e.sent)), Meta: wire.Meta{Seq: e.seq}}
	e.outbox = append(e.outbox, s)
	_ = e.c.TrySend(s) // its node may be closing it: the resume resends it
}

// take checks the next numbered signal (in order, once).
func (e *callEnd) take(t *testing.T, m wire.Any) {
	t.Helper()
	if m.Type != wire.TypeSignal {
		return
	}
	n, _ := strconv.Atoi(string(m.Data))
	if n != e.got+1 {
		t.Fatalf("got signal %d after %d: lost, duplicated or reordered", n, e.got)
	}
	e.got = n
}

// TestClusterRollingRestart: a rolling restart (SIGTERM one node at a time,
// wait for it to stop, start it again) of a three-process cluster loses no
// message and drops no call. The two ends of a call stream numbered signals
// to each other throughout; an end whose node stops is cut with 1012,
// resumes on another node (its session goes along, every message with it:
// welcome.lost stays false) and resends what its node had not confirmed.
func TestClusterRollingRestart(t *testing.T) {
	c := startProcCluster(t)
	a := &callEnd{c: routertest.Dial(t, c.base(0), "a", "r"), node: 0}
	b := &callEnd{c: routertest.Dial(t, c.base(1), "b", "r"), node: 1}
	if len(b.c.Welcome.Peers) == 0 {
		t.Fatalf("b does not see a: %+v", b.c.Welcome)
	}
	a.c.Expect(wire.TypePeerJoined)
	a.c.Send(wire.Call{Type: wire.TypeCall, To: b.c.ID, Call: "k"})
	b.c.Expect(wire.TypeCall)
	a.c.Expect(wire.TypeRinging)
	b.c.Send(wire.CallAction{Type: wire.TypeAccept, Call: "k"})
	a.c.Expect(wire.TypeAccepted)
	b.c.Expect(wire.TypeAccepted)
	ends := []*callEnd{a, b}
	other := func(e *callEnd) *callEnd {
		if e == a {
			return b
		}
		return a
	}

	for stop := range c.ips {
		for range 5 {
			a.send(t, b.c.ID)
			b.send(t, a.c.ID)
		}
		c.term(stop)
		for range 5 { // while it stops
			a.send(t, b.c.ID)
			b.send(t, a.c.ID)
		}
		for _, e := range ends {
			if e.node != stop {
				continue
			}
			for { // read what it gets until its node closes the link
				m, ok := e.c.TryNext()
				if !ok {
					break
				}
				e.take(t, m)
			}
			to := (stop + 1) % len(c.ips)
			n, w := e.c.Resume(t, c.base(to))
			if w.Type != wire.TypeWelcome || w.ID != e.c.ID || !w.Resumed {
				t.Fatalf("resume on node%d while node%d stops: %+v", to+1, stop+1, w)
			}
			if w.Lost {
				t.Fatalf("resume on node%d while node%d stops gracefully says messages were lost", to+1, stop+1)
			}
			e.c, e.node = n, to
			kept := e.outbox[:0]
			for _, s := range e.outbox {
				if s.Seq > *w.Ack {
					e.c.Send(s)
					kept = append(kept, s)
				}
			}
			e.outbox = kept
		}
		c.waitExit(stop)
		c.start(stop)
		for i := range c.ips {
			c.waitLinked(i)
		}
		t.Logf("node%d restarted", stop+1)
	}
	for _, e := range ends {
		for e.got < other(e).sent {
			e.take(t, e.c.Next())
		}
	}
	a.c.Send(wire.CallAction{Type: wire.TypeHangup, Call: "k"})
	for {
		m := b.c.Next()
		if m.Type == wire.TypeHangup {
			if m.From != a.c.ID || m.Call != "k" {
				t.Fatalf("b got %+v", m)
			}
			break
		}
		b.take(t, m)
	}
	t.Logf("rolling restart of 3 nodes: %d + %d signals, none lost, duplicated or reordered; the call lasted through it", a.sent, b.sent)
}
