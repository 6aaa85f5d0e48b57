package natsrouter

import (
	"encoding/json"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// Order of a moving sender. A session's envelopes keep their order to each
// receiver (the Router contract) only while they leave from one node. When
// the session moves from A to B, what it sent from A may still be on its
// way (A's stream to a receiving node) when what it sends from B arrives (B's
// stream). So A, once it released the session, tells every node (opSent)
// that the session's envelopes from A end there; a node that moved the
// session from A to B in its replica holds the session's envelopes coming
// from B until A's word arrives (or A is gone, or arrivalTTL passed).

// sentMsg: session ID sent nothing more from Node, whose release gave it
// Epoch.
type sentMsg struct {
	ID    string `json:"id"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
}

// senderWait holds a moved session's envelopes until each node it moved
// away from lately has said it is done. waits: old node → the epoch its
// release gave (a node that had it earlier has a smaller one).
type senderWait struct {
	waits   map[string]uint64
	done    map[string]bool // old nodes whose word came
	started time.Time
	held    []senderHeld
}

type senderHeld struct {
	op     byte // opSend, opBroadcast, opForward; 0: a local Send, 1: a local Broadcast
	origin string
	e      signaling.Envelope
}

// readyLocked reports whether an envelope from origin may go now: every
// node that had the session before origin has said it is done and has
// nothing held, and origin has nothing held before it (skip: the index of
// the envelope itself in held, or -1).
func (w *senderWait) readyLocked(origin string, skip int) bool {
	mine := w.epochOf(origin)
	for n, e := range w.waits {
		if e < mine && !w.done[n] {
			return false
		}
	}
	for k, h := range w.held {
		if k == skip {
			break
		}
		if h.origin == origin || w.epochOf(h.origin) < mine {
			return false
		}
	}
	return true
}

// epochOf orders the nodes a session left: the node it is on now comes last.
func (w *senderWait) epochOf(node string) uint64 {
	if e, ok := w.waits[node]; ok {
		return e
	}
	return ^uint64(0)
}

func (w *senderWait) finished() bool {
	if len(w.held) > 0 {
		return false
	}
	for n := range w.waits {
		if !w.done[n] {
			return false
		}
	}
	return true
}

// sentLocked tells every linked node that session id's envelopes from here
// end here (after a release).
func (r *Router) sentLocked(id string, epoch uint64) {
	b, _ := json.Marshal(sentMsg{ID: id, Node: r.self, Epoch: epoch})
	frame := append([]byte{opSent}, b...)
	for name, p := range r.peers {
		if p.linked {
			r.publish(name, frame)
		}
	}
}

// senderMovedLocked: the replica moved session id from node prev at epoch.
// Unless prev's word came first, its envelopes from elsewhere wait for it.
func (r *Router) senderMovedLocked(id, prev string, epoch uint64) {
	if prev == r.self {
		return // this node released it: everything it sent is out
	}
	if m, ok := r.sentMarks[id]; ok && m.Node == prev && m.Epoch >= epoch {
		delete(r.sentMarks, id)
		return
	}
	if p, ok := r.peers[prev]; !ok || !p.linked {
		return
	}
	w := r.senders[id]
	if w == nil {
		w = &senderWait{waits: make(map[string]uint64), done: make(map[string]bool), started: time.Now()}
		r.senders[id] = w
		r.swaits.Add(1)
	}
	w.waits[prev] = epoch
	delete(w.done, prev)
}

// holdSender keeps e when a node its sender had before e's origin has not
// said it is done, or when earlier envelopes of the sender wait.
func (r *Router) holdSender(op byte, origin string, e signaling.Envelope) bool {
	if r.swaits.Load() == 0 || e.From == "" || e.Kind == signaling.KindBounce {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.senders[e.From]
	if w == nil || w.readyLocked(origin, -1) {
		return false
	}
	w.held = append(w.held, senderHeld{op, origin, clone(e)})
	return true
}

// gotSent records an old node's word and lets go what waited for it.
func (r *Router) gotSent(m sentMsg) {
	r.mu.Lock()
	w := r.senders[m.ID]
	if e, ok := w.waitsFor(m.Node); !ok || e > m.Epoch || w.done[m.Node] {
		if r.sentMarks == nil {
			r.sentMarks = make(map[string]sentMsg)
		}
		r.sentMarks[m.ID] = m // ahead of the move here
		r.mu.Unlock()
		return
	}
	w.done[m.Node] = true
	r.mu.Unlock()
	r.releaseSender(m.ID, w, false)
}

func (w *senderWait) waitsFor(node string) (uint64, bool) {
	if w == nil {
		return 0, false
	}
	e, ok := w.waits[node]
	return e, ok
}

// releaseSender replays, in order, what w holds that may go now (all of it
// when force); w ends when nothing waits.
func (r *Router) releaseSender(id string, w *senderWait, force bool) {
	for {
		r.mu.Lock()
		if r.senders[id] != w {
			r.mu.Unlock()
			return
		}
		if force {
			for n := range w.waits {
				w.done[n] = true
			}
		}
		i := -1
		for k, h := range w.held {
			if w.readyLocked(h.origin, k) {
				i = k
				break
			}
		}
		if i < 0 {
			if w.finished() {
				delete(r.senders, id)
				r.swaits.Add(-1)
			}
			r.mu.Unlock()
			return
		}
		h := w.held[i]
		w.held = append(w.held[:i], w.held[i+1:]...)
		r.mu.Unlock()
		r.process(h.op, h.origin, h.e)
	}
}

// process runs an envelope through the path it came by (past holdSender).
func (r *Router) process(op byte, origin string, e signaling.Envelope) {
	switch op {
	case localSend:
		r.send(e)
	case localBroadcast:
		r.broadcast(e)
	case opBroadcast:
		local, _ := r.roomTargets(e.Room, e.From, false)
		r.deliverAll(origin, e, local)
		r.forwardMoved(origin, e)
	default:
		r.receive(origin, op == opForward, e)
	}
}

// sweepSendersLocked lets go waits that took too long (or whose old node
// went).
func (r *Router) sweepSendersLocked(now time.Time) (out map[string]*senderWait) {
	for id, w := range r.senders {
		gone := false
		for n := range w.waits {
			if p, ok := r.peers[n]; !ok || !p.linked {
				gone = true
			}
		}
		if now.Sub(w.started) > arrivalTTL || gone {
			if out == nil {
				out = make(map[string]*senderWait)
			}
			out[id] = w
		}
	}
	for id, m := range r.sentMarks {
		if _, ok := r.entries[id]; !ok || m.Epoch+2 < r.entries[id].epoch {
			delete(r.sentMarks, id)
		}
	}
	return out
}

// Ops of held envelopes sent on this node (the others are frame ops).
const (
	localSend      byte = 0
	localBroadcast byte = 1
)
