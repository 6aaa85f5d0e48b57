package natsrouter

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/switchboard-rtc/switchboard/signaling"
)

// Send delivers e to e.To on whichever node has it.
func (r *Router) Send(e signaling.Envelope) {
	if !r.holdSender(localSend, r.self, e) {
		r.send(e)
	}
}

func (r *Router) send(e signaling.Envelope) {
	r.mu.RLock()
	t, ok := r.entries[e.To]
	var ep signaling.Endpoint
	var node string
	inRoom := false
	if ok {
		ep, node, inRoom = t.ep, t.node, t.in && t.room == e.Room
	}
	if ok && ep == nil && node != r.self && (!e.InRoom || inRoom) {
		// Published under the lock: a move of the receiver, and the flush
		// behind this node's envelopes that it sends (handoff.go), cannot
		// come between reading where it is and sending there.
		r.forward(opSend, node, r.self, e)
		r.mu.RUnlock()
		return
	}
	r.mu.RUnlock()
	switch {
	case !ok:
		if e.Kind != signaling.KindBounce && e.From != "" {
			why := signaling.BounceGone
			if e.InRoom {
				why = signaling.BounceNotHere
			}
			r.bounce(r.self, e, why)
		}
	case e.InRoom && !inRoom:
		if e.Kind != signaling.KindBounce && e.From != "" {
			r.bounce(r.self, e, signaling.BounceNotHere)
		}
	case ep == nil && node == r.self:
		r.deliverLocal(r.self, false, e.To, nil, e) // moving in: held
	case ep == nil:
		r.forward(opSend, node, r.self, e)
	default:
		r.deliverLocal(r.self, false, e.To, ep, e)
	}
}

// deliverLocal hands e to local session id (ep), unless a move holds it.
func (r *Router) deliverLocal(origin string, fwd bool, id string, ep signaling.Endpoint, e signaling.Envelope) {
	if r.intercept(id, origin, fwd, e) {
		return
	}
	if ep == nil {
		if e.Kind != signaling.KindBounce && e.From != "" {
			r.bounce(origin, e, signaling.BounceGone)
		}
		return
	}
	r.deliverNow(origin, fwd, id, ep, e)
}

// deliverNow hands e to ep, session id: a refusal bounces to origin, a
// session that moved meanwhile gets it where it went.
func (r *Router) deliverNow(origin string, fwd bool, id string, ep signaling.Endpoint, e signaling.Envelope) {
	err := ep.Deliver(e)
	switch {
	case err == nil:
	case errors.Is(err, signaling.ErrMoved):
		e.To = id
		if !r.intercept(id, origin, fwd, e) {
			r.reroute(origin, e)
		}
	case e.Kind == signaling.KindBounce || e.From == "":
	default:
		e.To = id
		r.bounce(origin, e, bounceFor(err))
	}
}

// Broadcast delivers e to every member of e.Room but e.From, on every node.
func (r *Router) Broadcast(e signaling.Envelope) {
	if !r.holdSender(localBroadcast, r.self, e) {
		r.broadcast(e)
	}
}

func (r *Router) broadcast(e signaling.Envelope) {
	r.mu.RLock() // as in Send: no move between looking and sending
	local, nodes := r.roomTargetsLocked(e.Room, e.From, true)
	for _, n := range nodes {
		r.forward(opBroadcast, n, r.self, e)
	}
	r.mu.RUnlock()
	r.deliverAll(r.self, e, local)
}

type target struct {
	ep signaling.Endpoint
	id string
}

// roomTargets lists room's local members but except, and (when remote) the
// other nodes with members there.
func (r *Router) roomTargets(room, except string, remote bool) (local []target, nodes []string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.roomTargetsLocked(room, except, remote)
}

func (r *Router) roomTargetsLocked(room, except string, remote bool) (local []target, nodes []string) {
	for id, t := range r.rooms[room] {
		switch {
		case id == except:
		case t.ep != nil:
			local = append(local, target{t.ep, id})
		case remote && !slices.Contains(nodes, t.node):
			nodes = append(nodes, t.node)
		}
	}
	return local, nodes
}

// deliverAll delivers a broadcast to local members; bounces go to origin.
func (r *Router) deliverAll(origin string, e signaling.Envelope, to []target) {
	for _, t := range to {
		r.deliverLocal(origin, false, t.id, t.ep, e)
	}
}

// bounce sends e's sender, on node origin, the bounce of e.
func (r *Router) bounce(origin string, e signaling.Envelope, why signaling.Reason) {
	b := signaling.Envelope{Kind: signaling.KindBounce, From: e.To, To: e.From, Room: e.Room, Ref: e.Ref,
		Body: e.Body, Reason: why, Bounced: e.Kind}
	if origin != r.self {
		r.forward(opSend, origin, r.self, b)
		return
	}
	r.mu.RLock()
	t, ok := r.entries[b.To]
	var ep signaling.Endpoint
	node := ""
	if ok {
		ep, node = t.ep, t.node
	}
	r.mu.RUnlock()
	switch {
	case ep != nil || ok && node == r.self:
		r.deliverLocal(r.self, false, b.To, ep, b)
	case ok:
		r.forward(opSend, node, r.self, b) // its sender moved on
	}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// forward publishes e to node, as sent from origin (this node, or the node a
// forwarded envelope came from).
func (r *Router) forward(op byte, node, origin string, e signaling.Envelope) {
	bp := framePool.Get().(*[]byte)
	b, err := appendEnvelopeFrame((*bp)[:0], op, origin, e)
	if err == nil {
		r.publish(node, b) // nats copies b into its write buffer
		r.out.Add(1)
	}
	*bp = b[:0]
	framePool.Put(bp)
}

func bounceFor(err error) signaling.Reason {
	switch {
	case errors.Is(err, signaling.ErrBusy):
		return signaling.BounceBusy
	case errors.Is(err, signaling.ErrUndeliverable):
		return signaling.BounceFull
	default:
		return signaling.BounceGone
	}
}

// onNode handles what other nodes send this one, in order.
func (r *Router) onNode(m *nats.Msg) {
	if len(m.Data) == 0 {
		r.bad.Add(1)
		return
	}
	switch m.Data[0] {
	case opSend, opBroadcast, opForward:
		origin, e, err := parseEnvelopeFrame(m.Data[1:])
		if err != nil {
			r.bad.Add(1)
			r.log.Warn("cluster: bad envelope frame", "err", err)
			return
		}
		if e.Kind != signaling.KindBounce && e.From != "" && !r.sentBy(e.From, origin) {
			r.bad.Add(1)
			r.log.Warn("cluster: envelope from a session its node does not have; dropped", "origin", origin, "from", e.From)
			return
		}
		r.in.Add(1)
		if r.holdSender(m.Data[0], origin, e) {
			return
		}
		r.process(m.Data[0], origin, e)
	case opSent:
		var s sentMsg
		if err := json.Unmarshal(m.Data[1:], &s); err != nil || s.ID == "" || !validToken(s.Node) {
			r.bad.Add(1)
			return
		}
		r.gotSent(s)
	case opClaim:
		if m.Reply == "" {
			r.bad.Add(1)
			return
		}
		// Apart: a release waits for the session's handler, which may wait
		// for an answer that comes on this subscription.
		r.wg.Add(1)
		go r.serveClaim(m)
	case opFlush:
		var f flushMsg
		if err := json.Unmarshal(m.Data[1:], &f); err != nil || f.ID == "" || !validToken(f.Origin) {
			r.bad.Add(1)
			return
		}
		r.flushed(f)
	case opPing:
		_ = m.Respond(nil)
	case opAdmit:
		a, err := parseAdmit(m.Data[1:])
		if err != nil || m.Reply == "" {
			r.bad.Add(1)
			return
		}
		r.mu.Lock()
		ok := r.admitLocked(a.Room, a.ID, a.Max, true)
		r.mu.Unlock()
		answer := byte(0)
		if ok {
			answer = 1
		}
		_ = m.Respond([]byte{answer})
	case opState:
		s, err := parseState(m.Data[1:])
		if err != nil {
			r.bad.Add(1)
			r.log.Warn("cluster: bad state frame", "err", err)
			return
		}
		r.applyState(s)
	default:
		r.bad.Add(1)
	}
}

// sentBy reports whether session id is (or just was) one of node's: a node
// does not trust another's word about whose envelope it carries. A session's
// last envelopes (its hangup) follow its removal, hence the tombstones.
func (r *Router) sentBy(id, node string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.entries[id]; ok {
		return e.node == node || slices.Contains(e.prevs, node)
	}
	t, ok := r.tombs[id]
	return ok && t.node == node
}

// tombTTL is how long a removed session's id is still accepted from its node.
const tombTTL = time.Minute

type tomb struct {
	node string
	at   time.Time
}

// receive delivers an envelope from node origin to a local session, or bounces
// it there: this node is the one that knows the session is not here. One for
// a session that moved away is forwarded to its node, once (fwd: it was
// forwarded already).
func (r *Router) receive(origin string, fwd bool, e signaling.Envelope) {
	if r.intercept(e.To, origin, fwd, e) {
		return // moving in or out: held
	}
	r.mu.RLock()
	t, ok := r.entries[e.To]
	var ep signaling.Endpoint
	node := ""
	inRoom, left := false, false
	if ok {
		ep, node, inRoom, left = t.ep, t.node, t.in && t.room == e.Room, t.dep != nil
	}
	r.mu.RUnlock()
	switch {
	case ok && ep == nil && node != r.self && (!fwd || left):
		// It moved away (on from here, for a forwarded one: the chain of
		// releases is followed, it cannot loop).
		r.forward(opForward, node, origin, e) // moved away: in order behind what went before
	case ok && ep == nil && node == r.self:
		r.deliverLocal(origin, fwd, e.To, nil, e) // moving in: held
	case e.Kind == signaling.KindBounce:
		if ep != nil {
			r.deliverLocal(origin, fwd, e.To, ep, e)
		}
	case e.From == "" && (ep == nil || e.InRoom && !inRoom):
	case e.InRoom && !inRoom:
		r.bounce(origin, e, signaling.BounceNotHere)
	case ep == nil:
		r.bounce(origin, e, signaling.BounceGone)
	default:
		r.deliverLocal(origin, fwd, e.To, ep, e)
	}
}

// forwardMoved passes a broadcast from origin on to the members of its room
// that moved away from here, when origin sent it here not knowing yet (it
// has not flushed through this node).
func (r *Router) forwardMoved(origin string, e signaling.Envelope) {
	if r.deps.Load() == 0 {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for id, t := range r.rooms[e.Room] {
		if d := t.dep; d != nil && !d.leaving && t.ep == nil && id != e.From && !d.flushed[origin] {
			f := e
			f.To, f.InRoom = id, true
			r.forward(opForward, t.node, origin, f)
		}
	}
}
