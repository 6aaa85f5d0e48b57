package natsrouter

import (
	"time"
)

// A node cut off from most of the cluster (a network partition) must stop
// serving before the majority declares it dead and adopts its sessions:
// otherwise a session would live on two nodes. Each sweep counts the nodes
// this one hears (itself included) against the nodes linked lately (known);
// without a strict majority, or half with the lowest-named node, it fences:
// the hub cuts every link (1012: resume elsewhere) and forgets its sessions,
// /readyz answers 503, and the router starts a new incarnation, so that when
// the partition heals the others take it for a fresh node. It unfences when
// it hears a majority again.
//
// FenceAfter (default three quarters of DeadAfter) is shorter than DeadAfter:
// the minority fences before the majority adopts. A cluster of two cannot
// tell a dead peer from a partition: the node with the greater name fences
// when it loses the other. Run three or more nodes.

// knownTTL is how long a node that stopped answering still counts in the
// majority: long enough to outlast a partition, short enough that a node
// taken out of service for good stops counting.
const knownTTL = 10 * time.Minute

// Fenced reports whether this node has fenced itself off (see fence.go).
func (r *Router) Fenced() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.fenced
}

func (r *Router) fenceCheckLocked(now time.Time, ch *changes) {
	if r.opt.FenceAfter < 0 {
		return
	}
	for n, at := range r.known {
		if now.Sub(at) > knownTTL {
			delete(r.known, n)
		}
	}
	heard, lowest, lowestHeard := 1, r.self, true
	for n := range r.known {
		p, ok := r.peers[n]
		h := ok && p.linked && !p.refused && now.Sub(p.last) < r.opt.FenceAfter
		if h {
			heard++
		}
		if n < lowest {
			lowest, lowestHeard = n, h
		}
	}
	size := len(r.known) + 1
	majority := heard*2 > size || heard*2 == size && lowestHeard
	switch {
	case !majority && !r.fenced:
		r.fenced = true
		r.fences.Add(1)
		r.log.Error("cluster: fenced: this node hears too few of the cluster's nodes; cutting its links so that they resume on the others",
			"heard", heard, "nodes", size)
		r.resetLocked()
		ch.fence = true
		r.notifyLocked()
	case majority && r.fenced:
		r.fenced = false
		r.log.Warn("cluster: unfenced: this node hears the cluster's majority again", "heard", heard, "nodes", size)
		r.notifyLocked()
	}
}

// resetLocked forgets everything of the cluster and starts a new incarnation:
// the majority adopts what this node had.
func (r *Router) resetLocked() {
	r.oldInc, r.inc = r.inc, randomID()
	for id := range r.entries {
		delete(r.entries, id)
	}
	clear(r.rooms)
	clear(r.admitted)
	clear(r.toks)
	clear(r.incoming)
	clear(r.senders)
	clear(r.sentMarks)
	r.swaits.Store(0)
	r.moves.Store(0)
	r.deps.Store(0)
	for name := range r.peers {
		delete(r.peers, name) // heard again, they link as if new
	}
}

// sweepMovesLocked ends moves that took too long: a flush that never came
// (its node died on the way) or a claim whose import never happened.
func (r *Router) sweepMovesLocked(now time.Time, ch *changes) {
	for id, a := range r.incoming {
		switch {
		case !a.imported && now.Sub(a.started) > 2*arrivalTTL:
			if ch.abandon == nil {
				ch.abandon = make(map[string]*arrival)
			}
			ch.abandon[id] = a
		case a.imported && now.Sub(a.started) > arrivalTTL && len(a.waiting) > 0:
			r.log.Warn("cluster: a moved session's deliveries waited too long for a node's flush", "peer", id)
			clear(a.waiting)
			ch.drain = append(ch.drain, id)
		}
	}
	if r.deps.Load() == 0 {
		return
	}
	for _, e := range r.entries {
		if d := e.dep; d != nil && !d.leaving && now.Sub(d.at) > 2*arrivalTTL {
			e.dep = nil
			r.deps.Add(-1)
		}
	}
}
