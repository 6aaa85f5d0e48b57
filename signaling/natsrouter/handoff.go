package natsrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// Moving a session from node N to node D (signaling.Mover, see
// signaling/handoff.go for the hub's side):
//
//  1. D (where the client resumed) sends N a claim. N holds deliveries to the
//     session (leaving), has its hub Release it, then points its replica
//     entry at D with the next epoch, forwards what it held to D and answers
//     with the state. From then on N forwards (opForward) whatever still
//     reaches it for the session, in order, on its one stream to D.
//  2. D holds every delivery to the session (incoming) until its hub has
//     imported it; the Register of the import takes the entry over and tells
//     the cluster, with the new epoch (a newer epoch wins over an older
//     owner's word, see applyState).
//  3. Order: a node P that sent to N before it heard of the move may see its
//     later envelopes, sent straight to D, overtake the earlier ones N
//     forwards. So P, when its replica moves the session, sends N a flush
//     marker behind its earlier envelopes; N forwards it; D delivers P's
//     direct envelopes only after P's flush (forwarded ones at once). D does
//     the same for its own sessions. A node that dies or a flush that never
//     comes releases the hold after arrivalTTL.
//
// Adoption: when a node dies (or says goodbye), every survivor points the
// dead node's sessions at the same survivor (rendezvous hashing over the
// nodes left), which imports them from their last kept state.

// claimReq asks a node for one of its sessions.
type claimReq struct {
	ID      string `json:"id"`
	Attempt uint64 `json:"attempt,omitempty"`
	Node    string `json:"node"` // the claiming node
}

// claimReply answers a claim: Status is claimOK with the session's Epoch
// there and State, else why not.
type claimReply struct {
	Status string          `json:"status"`
	Moved  string          `json:"moved,omitempty"` // gone: the node it moved to, as far as this one knows
	Epoch  uint64          `json:"epoch,omitempty"`
	State  json.RawMessage `json:"state,omitempty"`
}

const (
	claimOK    = "ok"
	claimGone  = "gone"
	claimStale = "stale"
	// claimBusy: the session is still arriving here (waiting for flushes):
	// moving it on now could reorder what is held. Ask again shortly.
	claimBusy = "busy"
)

var errClaimBusy = errors.New("natsrouter: session still arriving on its node")

// flushMsg: Origin will send nothing more for session ID through the node
// that forwards this.
type flushMsg struct {
	ID     string `json:"id"`
	Origin string `json:"origin"`
	// Epoch is the session's epoch Origin learnt: a flush answers one move,
	// and a session may move again before an older flush arrives.
	Epoch uint64 `json:"epoch"`
}

// claimAsk bounds one claim request: a release takes a few milliseconds
// (it waits for at most one message being handled).
const claimAsk = 750 * time.Millisecond

// arrivalTTL bounds how long deliveries to a session moving in are held.
const arrivalTTL = 5 * time.Second

// held is an envelope kept while its receiver moves.
type held struct {
	origin string
	fwd    bool
	e      signaling.Envelope
}

// arrival is a session moving in (claimed, or adopted): deliveries to it are
// held until it is imported, and direct ones from a node until that node's
// flush arrives.
type arrival struct {
	from     string // the node it comes from
	epoch    uint64
	started  time.Time
	imported bool
	ep       signaling.Endpoint
	waiting  map[string]bool // nodes whose flush has not arrived
	held     []held
	draining bool
}

// moveOut is a session moving out (leaving) or moved out lately: while
// leaving, deliveries are held (pend); after, broadcasts from nodes that had
// not flushed are forwarded to its new node.
type moveOut struct {
	leaving bool
	to      string
	at      time.Time
	flushed map[string]bool
	pend    []held
}

func clone(e signaling.Envelope) signaling.Envelope {
	e.Body = append([]byte(nil), e.Body...)
	e.Ref = append([]byte(nil), e.Ref...)
	return e
}

// Serve implements signaling.Mover.
func (r *Router) Serve(s signaling.Sessions) {
	r.mu.Lock()
	r.sessions = s
	r.mu.Unlock()
}

// Keep implements signaling.Mover: the state goes to every linked node with
// the session's entry.
func (r *Router) Keep(id string, state []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || e.ep == nil {
		return
	}
	e.snap = append(e.snap[:0], state...)
	r.tellLocked(memberOp{Op: opKeep, ID: id, Epoch: e.epoch, State: e.snap})
}

// Claim implements signaling.Mover.
func (r *Router) Claim(ctx context.Context, id string, attempt uint64) ([]byte, error) {
	at := ""
	for hops := 0; ; hops++ {
		st, moved, asked, retry, err := r.claimOnce(ctx, id, attempt, at)
		if errors.Is(err, errClaimBusy) {
			select { // it is still arriving there: a few milliseconds as a rule
			case <-time.After(5 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("natsrouter: claim %s: %w", id, ctx.Err())
			}
		}
		if moved != "" && hops < 3 {
			at = moved // this node's replica is behind: ask where it went
			continue
		}
		at = ""
		if !retry {
			return st, err
		}
		// Its node is not answering: wait until it is declared dead and the
		// session adopted (here: the hub finds it; elsewhere: claim there).
		if err := r.waitMoved(ctx, id, asked); err != nil {
			return nil, err
		}
	}
}

func (r *Router) claimOnce(ctx context.Context, id string, attempt uint64, at string) (state []byte, moved, from string, retry bool, err error) {
	r.mu.Lock()
	e, ok := r.entries[id]
	switch {
	case !ok || e.node == r.self:
		r.mu.Unlock()
		return nil, "", "", false, signaling.ErrNoSession // here (adopted meanwhile) or nowhere: the hub looks again
	case r.incoming[id] != nil:
		r.mu.Unlock()
		return nil, "", "", false, fmt.Errorf("natsrouter: session %s is moving here already", id)
	}
	from = e.node
	if at != "" && at != r.self {
		from = at
	}
	a := &arrival{from: from, started: time.Now(), waiting: map[string]bool{r.self: true}}
	for name, p := range r.peers {
		if p.linked && !p.refused && name != from {
			a.waiting[name] = true
		}
	}
	r.incoming[id] = a
	r.moves.Add(1)
	r.mu.Unlock()

	b, _ := json.Marshal(claimReq{ID: id, Attempt: attempt, Node: r.self})
	// Its own bound: a node that died without its subscription being gone
	// yet never answers, and the claim must go on to wait for the adoption.
	rctx, cancel := context.WithTimeout(ctx, claimAsk)
	msg, err := r.nc.RequestWithContext(rctx, r.nodeSubject(from), append([]byte{opClaim}, b...))
	cancel()
	var rep claimReply
	if err == nil {
		err = json.Unmarshal(msg.Data, &rep)
	}
	if err == nil && rep.Status == claimOK {
		r.mu.Lock()
		a.epoch = rep.Epoch
		r.mu.Unlock()
		r.claimed.Add(1)
		return rep.State, "", from, false, nil
	}
	r.abandon(id, a)
	switch {
	case err != nil && ctx.Err() == nil:
		return nil, "", from, true, nil // no answer: dead, or dying
	case err != nil:
		return nil, "", "", false, fmt.Errorf("natsrouter: claim %s from %s: %w", id, from, err)
	case rep.Status == claimStale:
		return nil, "", "", false, signaling.ErrStale
	case rep.Status == claimBusy:
		return nil, "", "", false, errClaimBusy
	case rep.Moved != "" && rep.Moved != from:
		return nil, rep.Moved, from, false, signaling.ErrNoSession
	default:
		return nil, "", "", false, signaling.ErrNoSession
	}
}

// abandon ends an arrival that will not be imported: what it held goes where
// the session is.
func (r *Router) abandon(id string, a *arrival) {
	r.mu.Lock()
	if r.incoming[id] == a {
		delete(r.incoming, id)
		r.moves.Add(-1)
	}
	hs := a.held
	a.held = nil
	r.mu.Unlock()
	for _, h := range hs {
		r.reroute(h.origin, h.e)
	}
}

// waitMoved waits until session id's entry no longer points at node, which
// did not answer (adopted elsewhere, or gone).
func (r *Router) waitMoved(ctx context.Context, id, node string) error {
	for {
		r.mu.RLock()
		ch := r.changed
		e, ok := r.entries[id]
		moved := !ok || e.node != node
		r.mu.RUnlock()
		if moved {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("natsrouter: session %s: its node does not answer: %w", id, ctx.Err())
		}
	}
}

// serveClaim answers another node's claim of a local session.
func (r *Router) serveClaim(m *nats.Msg) {
	defer r.wg.Done()
	var req claimReq
	if err := json.Unmarshal(m.Data[1:], &req); err != nil || req.ID == "" || !validToken(req.Node) {
		r.bad.Add(1)
		return
	}
	answer := func(rep claimReply) {
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	}
	r.mu.Lock()
	e, ok := r.entries[req.ID]
	sessions := r.sessions
	if r.incoming[req.ID] != nil {
		r.mu.Unlock()
		answer(claimReply{Status: claimBusy})
		return
	}
	if !ok || e.ep == nil || e.dep != nil && e.dep.leaving || sessions == nil {
		rep := claimReply{Status: claimGone}
		if ok && e.ep == nil && e.node != r.self {
			rep.Moved = e.node
		}
		r.mu.Unlock()
		answer(rep)
		return
	}
	ep := e.ep
	if e.dep == nil {
		r.deps.Add(1)
	}
	e.dep = &moveOut{leaving: true, to: req.Node}
	r.moves.Add(1)
	r.mu.Unlock()

	state, err := sessions.Release(req.ID, req.Attempt)

	r.mu.Lock()
	d := e.dep
	pend := d.pend
	d.pend = nil
	r.moves.Add(-1)
	if err != nil {
		e.dep = nil
		r.deps.Add(-1)
		r.mu.Unlock()
		for _, h := range pend {
			r.deliverNow(h.origin, h.fwd, req.ID, ep, h.e)
		}
		status := claimGone
		if errors.Is(err, signaling.ErrStale) {
			status = claimStale
		}
		answer(claimReply{Status: status})
		return
	}
	e.ep, e.node, e.epoch = nil, req.Node, e.epoch+1
	e.movedFrom(r.self)
	d.leaving, d.at, d.flushed = false, time.Now(), map[string]bool{}
	epoch := e.epoch
	// Under r.mu: nothing that arrives after can overtake these on the
	// stream to the new node.
	for _, h := range pend {
		r.forward(opForward, req.Node, h.origin, h.e)
	}
	r.sentLocked(req.ID, e.epoch)
	r.mu.Unlock()
	r.handedOff.Add(1)
	answer(claimReply{Status: claimOK, Epoch: epoch, State: state})
}

// intercept takes e, for local session id, when the session is moving: true
// if it did. origin is the node e comes from, fwd whether a node it moved
// from forwarded it.
func (r *Router) intercept(id, origin string, fwd bool, e signaling.Envelope) bool {
	if r.moves.Load() == 0 {
		return false
	}
	r.mu.Lock()
	if en, ok := r.entries[id]; ok && en.dep != nil && en.dep.leaving {
		en.dep.pend = append(en.dep.pend, held{origin, fwd, clone(e)})
		r.mu.Unlock()
		return true
	}
	a := r.incoming[id]
	if a == nil || a.epoch == 0 && !fwd && origin != a.from {
		// Not (yet) ours: until the claim is answered only what its node
		// sends after the release (it forwards, or its own sessions send) is
		// for here; the rest goes where the session is, in order with the
		// senders' flushes.
		r.mu.Unlock()
		return false
	}
	a.held = append(a.held, held{origin, fwd, clone(e)})
	r.mu.Unlock()
	r.drain(id, a)
	return true
}

// drain delivers what a arrival holds that may go now, in order: forwarded
// envelopes, and direct ones from nodes that have flushed. One drainer at a
// time keeps the order.
func (r *Router) drain(id string, a *arrival) {
	r.mu.Lock()
	if a.draining || !a.imported {
		r.mu.Unlock()
		return
	}
	a.draining = true
	for {
		i := -1
		for k, h := range a.held {
			if h.fwd || !a.waiting[h.origin] {
				i = k
				break
			}
		}
		if i < 0 {
			break
		}
		h := a.held[i]
		a.held = append(a.held[:i], a.held[i+1:]...)
		ep := a.ep
		r.mu.Unlock()
		r.deliverNow(h.origin, h.fwd, id, ep, h.e)
		r.mu.Lock()
	}
	a.draining = false
	if len(a.held) == 0 && len(a.waiting) == 0 && r.incoming[id] == a {
		delete(r.incoming, id)
		r.moves.Add(-1)
	}
	r.mu.Unlock()
}

// flushed records origin's flush for session id, here or on its way.
func (r *Router) flushed(f flushMsg) {
	r.mu.Lock()
	// An arrival still claiming (epoch 0) or of a later move is not what an
	// older flush is for: that one goes on to where the session is.
	if a := r.incoming[f.ID]; a != nil && a.epoch != 0 && f.Epoch >= a.epoch {
		delete(a.waiting, f.Origin)
		r.mu.Unlock()
		r.drain(f.ID, a)
		return
	}
	e, ok := r.entries[f.ID]
	if ok && e.ep == nil && e.node != r.self {
		if e.dep != nil && e.dep.flushed != nil && f.Epoch >= e.epoch {
			e.dep.flushed[f.Origin] = true
		}
		r.publish(e.node, flushFrame(f)) // behind what was forwarded before
	}
	r.mu.Unlock()
}

func flushFrame(f flushMsg) []byte {
	b, _ := json.Marshal(f)
	return append([]byte{opFlush}, b...)
}

// movedLocked notes that session id, on node prev in the replica, is now on
// e.node: prev gets this node's flush, behind everything this node sent it.
func (r *Router) movedLocked(id, prev string, e *entry) {
	if prev == r.self || prev == e.node {
		return
	}
	if p, ok := r.peers[prev]; !ok || !p.linked {
		return
	}
	r.publish(prev, flushFrame(flushMsg{ID: id, Origin: r.self, Epoch: e.epoch}))
}

// takeOverLocked makes local the entry of id that a claim or an adoption
// brought here, and tells the cluster with its new epoch. The arrival (if
// any) starts delivering; the caller drains it.
func (r *Router) takeOverLocked(id string, e *entry, ep signaling.Endpoint) *arrival {
	a := r.incoming[id]
	prev := e.node
	if e.node != r.self {
		e.movedFrom(e.node)
	}
	e.ep, e.node = ep, r.self
	if a != nil {
		e.epoch = max(e.epoch, a.epoch)
		a.imported, a.ep = true, ep
		r.senderMovedLocked(id, a.from, e.epoch)
		// This node's own sessions sent to prev until now: flush behind them.
		if p, ok := r.peers[a.from]; ok && p.linked && a.from != prev {
			prev = a.from
		}
		if prev != r.self {
			r.publish(prev, flushFrame(flushMsg{ID: id, Origin: r.self, Epoch: e.epoch}))
		} else {
			delete(a.waiting, r.self)
		}
	}
	if e.in {
		e.knows = make(map[string]bool, len(r.rooms[e.room]))
		for oid := range r.rooms[e.room] {
			if oid != id {
				e.knows[oid] = true // they know it: it did not arrive, it moved
			}
		}
		r.tellLocked(memberOp{Op: opJoin, ID: id, Name: e.m.Name, Net: e.m.Net, Room: e.room, Saw: knownIDs(e),
			Epoch: e.epoch, State: e.snap, Tok: e.tok})
	} else {
		r.tellLocked(memberOp{Op: opReg, ID: id, Epoch: e.epoch, State: e.snap, Tok: e.tok})
	}
	return a
}

// reroute sends e again, from origin, wherever its receiver is now.
func (r *Router) reroute(origin string, e signaling.Envelope) {
	r.mu.RLock()
	t, ok := r.entries[e.To]
	var ep signaling.Endpoint
	node := ""
	if ok {
		ep, node = t.ep, t.node
	}
	r.mu.RUnlock()
	switch {
	case ok && ep != nil:
		r.deliverNow(origin, true, e.To, ep, e)
	case ok && node != r.self:
		r.forward(opForward, node, origin, e)
	case e.Kind != signaling.KindBounce && e.From != "":
		r.bounce(origin, e, signaling.BounceGone)
	}
}

// adoptLocked points the sessions of node, dead or gone, at the survivor
// that adopts each, and returns the states this node adopts and the local
// members to tell of sessions nobody can adopt (no state kept).
func (r *Router) adoptLocked(node string) (mine [][]byte, left []departure, drain []string) {
	live := []string{r.self}
	for name, p := range r.peers {
		if name != node && p.linked && !p.refused {
			live = append(live, name)
		}
	}
	for id, e := range r.entries {
		if e.node != node {
			continue
		}
		if e.snap == nil {
			left = append(left, r.dropEntryLocked(id, e)...)
			continue
		}
		best, bh := "", uint64(0)
		for _, n := range live {
			if h := rank(id, n); best == "" || h > bh || h == bh && n < best {
				best, bh = n, h
			}
		}
		e.node, e.epoch = best, e.epoch+1
		if best == r.self {
			mine = append(mine, e.snap)
		}
	}
	for id, a := range r.incoming {
		if a.from == node {
			clear(a.waiting) // its forwards will not come
		}
		delete(a.waiting, node)
		drain = append(drain, id)
	}
	return mine, left, drain
}
