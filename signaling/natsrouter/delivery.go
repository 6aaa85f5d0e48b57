package natsrouter

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/switchboard-rtc/switchboard/signaling"
)

// Send delivers e to e.To on whichever node has it.
func (r *Router) Send(e signaling.Envelope) {
	r.mu.RLock()
	t, ok := r.entries[e.To]
	var ep signaling.Endpoint
	var node string
	inRoom := false
	if ok {
		ep, node, inRoom = t.ep, t.node, t.in && t.room == e.Room
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
	case ep == nil:
		r.forward(opSend, node, e)
	case e.Kind == signaling.KindBounce:
		_ = ep.Deliver(e) // a bounce never bounces
	case e.InRoom && !inRoom:
		if e.From != "" {
			r.bounce(r.self, e, signaling.BounceNotHere)
		}
	default:
		if err := ep.Deliver(e); err != nil && e.From != "" {
			r.bounce(r.self, e, bounceFor(err))
		}
	}
}

// Broadcast delivers e to every member of e.Room but e.From, on every node.
func (r *Router) Broadcast(e signaling.Envelope) {
	local, nodes := r.roomTargets(e.Room, e.From, true)
	for _, n := range nodes {
		r.forward(opBroadcast, n, e)
	}
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
		if err := t.ep.Deliver(e); err != nil && e.From != "" {
			f := e
			f.To = t.id
			r.bounce(origin, f, bounceFor(err))
		}
	}
}

// bounce sends e's sender, on node origin, the bounce of e.
func (r *Router) bounce(origin string, e signaling.Envelope, why signaling.Reason) {
	b := signaling.Envelope{Kind: signaling.KindBounce, From: e.To, To: e.From, Room: e.Room, Ref: e.Ref,
		Body: e.Body, Reason: why, Bounced: e.Kind}
	if origin != r.self {
		r.forward(opSend, origin, b)
		return
	}
	r.mu.RLock()
	t, ok := r.entries[b.To]
	r.mu.RUnlock()
	if ok && t.ep != nil {
		_ = t.ep.Deliver(b)
	}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (r *Router) forward(op byte, node string, e signaling.Envelope) {
	bp := framePool.Get().(*[]byte)
	b, err := appendEnvelopeFrame((*bp)[:0], op, r.self, e)
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
	case opSend, opBroadcast:
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
		if m.Data[0] == opBroadcast {
			local, _ := r.roomTargets(e.Room, e.From, false)
			r.deliverAll(origin, e, local)
			return
		}
		r.receive(origin, e)
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
		return e.node == node
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
// it there: this node is the one that knows the session is not here.
func (r *Router) receive(origin string, e signaling.Envelope) {
	r.mu.RLock()
	t, ok := r.entries[e.To]
	ok = ok && t.ep != nil
	var ep signaling.Endpoint
	inRoom := false
	if ok {
		ep, inRoom = t.ep, t.in && t.room == e.Room
	}
	r.mu.RUnlock()
	switch {
	case e.Kind == signaling.KindBounce:
		if ok {
			_ = ep.Deliver(e)
		}
	case e.From == "" && (!ok || e.InRoom && !inRoom):
	case e.InRoom && !inRoom:
		r.bounce(origin, e, signaling.BounceNotHere)
	case !ok:
		r.bounce(origin, e, signaling.BounceGone)
	default:
		if err := ep.Deliver(e); err != nil && e.From != "" {
			r.bounce(origin, e, bounceFor(err))
		}
	}
}
