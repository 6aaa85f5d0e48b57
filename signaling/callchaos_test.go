package signaling

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// chaosPeer is a client that believes it is in (at most) one call, from what
// the server told it, and acts on that belief: random actions race with the
// partner's and with ring timeouts, so beliefs are often stale.
type chaosPeer struct {
	*client
	call   string // "" none
	peer   string
	caller bool
	active bool
	asked  bool // caller: the call is sent, the server has not answered it yet
	// cancelled is the last call this peer cancelled: the callee's accept may
	// have crossed the cancel (then it is refused, no-such-call, and the call
	// is up): a client hangs up when that accepted arrives.
	cancelled string
	away      bool // in the other room
	joining   int  // joins sent and not answered: a call before their joined was ended by them
	log       []string
}

func (p *chaosPeer) forget() {
	p.call, p.peer, p.caller, p.active, p.asked = "", "", false, false, false
}

// act sends a call action of typ about the call id (as ref too, to match errors).
func (p *chaosPeer) act(typ, id string, extra ...any) {
	m := map[string]any{"type": typ, "call": id, "ref": id}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	p.log = append(p.log, fmt.Sprintf("> %v", m))
	if typ == "join" {
		p.joining++
	}
	p.send(m)
}

// absorb updates the belief from every message that has arrived.
func (p *chaosPeer) absorb(t *testing.T) {
	for {
		select {
		case w := <-p.in:
			p.log = append(p.log, "< "+string(w.raw))
			switch w.Type {
			case "joined":
				p.joining--
			case "call":
				if p.joining > 0 {
					break
				}
				// Only a call of ours the server has not answered yet can be
				// overtaken by an incoming one: ours then gets error busy.
				if p.call != "" && !p.asked {
					t.Fatalf("%s: incoming call %s while in %s", p.id, w.raw, p.call)
				}
				p.forget()
				p.call, p.peer = w.Call, w.From
			case "ringing":
				if w.Call == p.call {
					p.asked = false
				}
			case "accepted":
				switch w.Call {
				case p.call:
					p.active = true
				case p.cancelled:
					p.act("hangup", w.Call)
				}
			case "declined", "cancelled", "busy", "timeout", "hangup":
				if w.Call == p.call {
					p.forget()
				}
			case "error":
				switch w.Code {
				case codeNoSuchCall, codePeerUnavailable, codeBusy, codeUndeliverable:
					// A stale belief, or a call that never rang: the server holds
					// no half for the call the request was about.
					if string(w.Ref) == fmt.Sprintf("%q", p.call) {
						p.forget()
					}
				default:
					t.Fatalf("%s: %s", p.id, w.raw)
				}
			}
		default:
			return
		}
	}
}

// TestCallChaos: four peers call, answer, decline, cancel, hang up and move
// between two rooms at random, against each other and short ring timeouts. Afterwards, once each
// has ended what it believes it is in, no half of any call is left: the hub
// counts no call, and every peer can call every other one.
func TestCallChaos(t *testing.T) {
	ts := newServer(t, Config{RingTimeout: 30 * time.Millisecond, MessageRate: 1e6, MessageBurst: 1e6})
	var ps []*chaosPeer
	for i := range 4 {
		ps = append(ps, &chaosPeer{client: join(t, ts, fmt.Sprint("p", i), "chaos")})
	}
	defer func() {
		if t.Failed() {
			for _, p := range ps {
				t.Logf("%s: call %q peer %s caller %v active %v asked %v", p.id, p.call, p.peer, p.caller, p.active, p.asked)
				for _, l := range p.log[max(0, len(p.log)-40):] {
					t.Logf("   %s", l)
				}
			}
		}
	}()
	rng := rand.New(rand.NewPCG(11, 12))
	for step := range 1500 {
		p := ps[rng.IntN(len(ps))]
		p.absorb(t)
		switch {
		case rng.IntN(25) == 0:
			// A move ends the call (the partner hears hangup, left); calls
			// between the rooms are refused (peer-unavailable).
			p.away = !p.away
			p.act("join", "", "room", map[bool]string{false: "chaos", true: "away"}[p.away])
			p.forget()
		case p.call == "":
			o := ps[rng.IntN(len(ps))]
			if o != p {
				p.call, p.peer, p.caller, p.asked = fmt.Sprint("s", step), o.id, true, true
				p.act("call", p.call, "to", o.id)
			}
		case !p.caller && !p.active:
			typ := []string{"accept", "decline"}[rng.IntN(2)]
			p.act(typ, p.call)
			if typ == "accept" {
				p.active = true
			} else {
				p.forget()
			}
		case p.caller && !p.active && rng.IntN(3) == 0:
			p.act("cancel", p.call)
			p.cancelled = p.call
			p.forget()
		case p.active && rng.IntN(2) == 0:
			p.act("hangup", p.call)
			p.forget()
		}
		if step%50 == 0 {
			time.Sleep(time.Millisecond) // let some ring timeouts happen: not a synchronisation
		}
	}
	for _, p := range ps {
		if p.away {
			p.away = false
			p.act("join", "", "room", "chaos")
			p.forget()
		}
	}
	// Once the envelopes in flight have arrived and unanswered calls timed out,
	// the two sides of every call agree: no one believes in a call its partner
	// has left.
	eventually(t, "both sides of every call agree", func() bool {
		for _, p := range ps {
			p.absorb(t)
		}
		byID := map[string]*chaosPeer{}
		for _, p := range ps {
			byID[p.id] = p
		}
		for _, p := range ps {
			if p.joining > 0 {
				return false // a move still on its way would end a call
			}
			if p.call == "" {
				continue
			}
			q := byID[p.peer]
			if !p.active || q.call != p.call || !q.active || q.peer != p.id {
				return false
			}
		}
		return true
	})
	// Everyone ends what it believes it is in (hangup works in any state).
	eventually(t, "no call left", func() bool {
		for _, p := range ps {
			p.absorb(t)
			if p.call != "" {
				p.act("hangup", p.call)
				p.forget()
			}
		}
		return ts.hub.Stats().Calls == 0
	})
	// No callee half is left either: every pair can ring. Through an
	// asynchronous router the last ends may still be on their way (counted
	// calls are caller halves), so a busy is tried again; a half left behind
	// for good keeps answering busy and fails here.
	n := 0
	for _, a := range ps {
		for _, b := range ps {
			if a == b {
				continue
			}
			var id string
			eventually(t, "a call that rings", func() bool {
				n++
				id = fmt.Sprint("check", n)
				a.send(map[string]any{"type": "call", "to": b.id, "call": id, "ref": id})
				w := answerTo(t, a.client, id)
				return w.Type == "ringing"
			})
			if w := answerTo(t, b.client, id); w.Type != "call" {
				t.Fatalf("callee got %s, want the call", w.raw)
			}
			b.send(map[string]any{"type": "decline", "call": id})
			// (Under load the 30 ms ring timeout may come first.)
			if w := answerTo(t, a.client, id); w.Type != "declined" && w.Type != "timeout" {
				t.Fatalf("caller got %s, want declined", w.raw)
			}
		}
	}
}

// answerTo returns the next message of c about call id (by call or ref);
// answers to the chaos' last hangups may still come first.
func answerTo(t *testing.T, c *client, id string) srvMsg {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case w := <-c.in:
			if w.Call == id || string(w.Ref) == fmt.Sprintf("%q", id) {
				return w
			}
		case <-deadline:
			t.Fatalf("%s: nothing about %s", c.id, id)
		}
	}
}
