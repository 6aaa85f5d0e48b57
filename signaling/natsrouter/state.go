package natsrouter

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// tellLocked sends a change of a local session to every linked peer. Under
// r.mu, so that a peer linking meanwhile gets it either in its snapshot or
// after it.
func (r *Router) tellLocked(op memberOp) {
	var frame []byte
	for name, p := range r.peers {
		if !p.linked {
			continue
		}
		if frame == nil {
			frame = r.stateFrame(false, []memberOp{op})
		}
		r.publish(name, frame)
	}
}

func (r *Router) stateFrame(snap bool, ops []memberOp) []byte {
	b, _ := json.Marshal(stateMsg{Node: r.self, Inc: r.inc, Snap: snap, Ops: ops})
	return append([]byte{opState}, b...)
}

// snapshotChunk is how many sessions one snapshot message carries: ~100
// bytes each, well below NATS's default 1 MiB payload limit.
const snapshotChunk = 2000

// sendSnapshotLocked sends node every local session: the first message
// replaces what node knew of this one, the others add to it.
func (r *Router) sendSnapshotLocked(node string) {
	ops := r.snapshotLocked()
	for i := 0; i == 0 || i < len(ops); i += snapshotChunk {
		r.publish(node, r.stateFrame(i == 0, ops[i:min(i+snapshotChunk, len(ops))]))
	}
}

// snapshotLocked is every local session as ops.
func (r *Router) snapshotLocked() []memberOp {
	var ops []memberOp
	for id, e := range r.entries {
		switch {
		case e.ep == nil:
		case e.in:
			ops = append(ops, memberOp{Op: opJoin, ID: id, Name: e.m.Name, Net: e.m.Net, Room: e.room, Saw: knownIDs(e),
				Epoch: e.epoch, State: e.snap, Tok: e.tok})
		default:
			ops = append(ops, memberOp{Op: opReg, ID: id, Epoch: e.epoch, State: e.snap, Tok: e.tok})
		}
	}
	return ops
}

// applyState folds a peer's snapshot or changes into the replica.
//
// Two sessions joining one room on two nodes at the same time (within the
// time a change takes to cross) are not in each other's list of others, so
// neither announces itself to the other. Each node finds such a pair when the
// other's join arrives (neither saw the other) and tells its own session
// with the peer-joined the hub would have sent.
func (r *Router) applyState(s stateMsg) {
	var missed []departure
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		for _, d := range missed {
			_ = d.to.ep.Deliver(signaling.Envelope{Kind: signaling.KindClient, To: d.to.m.ID, Room: d.room,
				Body: d.body})
		}
	}()
	p, ok := r.peers[s.Node]
	if !ok || p.refused || p.inc != s.Inc {
		return // from a peer we do not (or no longer) know: it resends a snapshot when it links
	}
	if s.Snap {
		r.dropNodeLocked(s.Node)
	}
	for _, o := range s.Ops {
		old, had := r.entries[o.ID]
		if had && old.node != s.Node {
			// A session id is one node's at a time: the newest epoch's. A
			// local session is never given up on another's word (a move
			// starts with its release here).
			if o.Epoch <= old.epoch || old.ep != nil {
				continue
			}
			prev := old.node
			old.node, old.epoch = s.Node, o.Epoch
			old.movedFrom(prev)
			r.movedLocked(o.ID, prev, old)
			r.senderMovedLocked(o.ID, prev, o.Epoch)
		}
		if had && o.Epoch > old.epoch {
			old.epoch = o.Epoch
		}
		if o.State != nil && (had || o.Op != opUnreg) {
			if !had {
				old, had = &entry{node: s.Node, epoch: o.Epoch, m: signaling.Member{ID: o.ID}}, true
				r.entries[o.ID] = old
			}
			old.snap = o.State
		}
		if o.Tok != "" && had && old.tok != o.Tok {
			if old.tok != "" {
				delete(r.toks, old.tok)
			}
			old.tok = o.Tok
			r.toks[o.Tok] = o.ID
		}
		switch o.Op {
		case opUnreg:
			if had {
				r.leaveLocked(old)
				delete(r.entries, o.ID)
				if old.tok != "" {
					delete(r.toks, old.tok)
				}
				r.tombs[o.ID] = tomb{node: s.Node, at: time.Now()}
			}
		case opReg, opJoin:
			if !had {
				old = &entry{node: s.Node, epoch: o.Epoch}
				r.entries[o.ID] = old
			}
			if o.Op == opJoin && old.in && old.room == o.Room {
				old.m = signaling.Member{ID: o.ID, Name: o.Name, Net: o.Net}
				continue // moved, not arrived: its room knows it
			}
			r.leaveLocked(old)
			old.m = signaling.Member{ID: o.ID, Name: o.Name, Net: o.Net}
			if o.Op == opJoin {
				old.room = o.Room
				r.enterLocked(old)
				missed = append(missed, r.unannouncedLocked(old, o.Saw)...)
			}
		}
	}
}

// dropNodeLocked removes node's sessions from the replica and returns, per
// removed member, the local members of its room to tell.
func (r *Router) dropNodeLocked(node string) (left []departure) {
	for id, e := range r.entries {
		if e.node == node {
			left = append(left, r.dropEntryLocked(id, e)...)
		}
	}
	return left
}

// dropEntryLocked removes a session of another node from the replica and
// returns the local members of its room to tell.
func (r *Router) dropEntryLocked(id string, e *entry) (left []departure) {
	if e.in {
		for _, o := range r.rooms[e.room] {
			if o.ep != nil {
				left = append(left, departure{id: id, to: o})
			}
		}
	}
	r.leaveLocked(e)
	delete(r.entries, id)
	if e.tok != "" {
		delete(r.toks, e.tok)
	}
	return left
}

type departure struct {
	id   string
	to   *entry
	room string
	body []byte // peer-joined (unannouncedLocked); nil: peer-left
}

// unannouncedLocked returns the peer-joined of x due to local members of its
// room that x did not see when it joined and that did not know x either.
func (r *Router) unannouncedLocked(x *entry, saw []string) []departure {
	var out []departure
	for id, l := range r.rooms[x.room] {
		if l.ep == nil || id == x.m.ID || l.knows[x.m.ID] {
			continue
		}
		if l.knows == nil {
			l.knows = make(map[string]bool)
		}
		l.knows[x.m.ID] = true
		if slices.Contains(saw, id) {
			continue // x announces itself to l
		}
		nearby := x.m.Net.IsValid() && x.m.Net == l.m.Net
		b, _ := json.Marshal(wire.PeerJoined{Type: wire.TypePeerJoined, Peer: wire.Peer{ID: x.m.ID, Name: x.m.Name, Nearby: nearby}})
		out = append(out, departure{id: x.m.ID, to: l, room: x.room, body: b})
	}
	return out
}

// movedFrom remembers node as one the session was on lately.
func (e *entry) movedFrom(node string) {
	const keep = 4
	e.prevs = append(e.prevs, node)
	if len(e.prevs) > keep {
		e.prevs = e.prevs[len(e.prevs)-keep:]
	}
}
