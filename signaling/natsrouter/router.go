// Package natsrouter is a signaling.Router spanning several Switchboard nodes
// over NATS (github.com/nats-io/nats.go), plus an embedded NATS server for
// SWITCHBOARD_CLUSTER=embedded (embedded.go).
//
// Each node subscribes to one subject of its own, <cluster>.node.<name>, and to
// <cluster>.hb (heartbeats). Everything a node tells another goes to the other's
// node subject over the node's one connection, and one subscription delivers it
// in order: NATS keeps a publisher's order, so envelopes from one sender to one
// receiver keep theirs, and a node's membership changes reach a peer before
// any envelope sent after them.
//
// Every node keeps a replica of the cluster's membership (which session is on
// which node, in which room), made of what each node says of its own sessions:
// a snapshot when two nodes link up, then every change. A Send looks the
// receiver up in the replica and publishes to its node; the node that has not
// got the session (any more) bounces it back, like derp's PeerGone; a session
// no node has is bounced by the sender's node at once.
//
// Two nodes link when each hears the other's heartbeats: a heartbeat lists the
// peers its sender hears, so a node that finds itself in a peer's list knows
// that its subject is known to the peer's server and the other way round (a
// subscription is not at once visible on other servers of a NATS cluster). A
// peer silent for DeadAfter is gone: its sessions leave the replica and local
// members of their rooms hear peer-left.
package natsrouter

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// Options configures a Router.
type Options struct {
	// Cluster is the subject prefix (SWITCHBOARD_CLUSTER_NAME). Default "switchboard".
	Cluster string
	// Node is this node's name, unique in the cluster (SWITCHBOARD_NODE_NAME). Required.
	Node string
	// Secret is the cluster secret: it keys the marks heartbeats carry.
	Secret []byte
	// Marks are secrets every node must share (e.g. "SWITCHBOARD_TURN_SECRET"
	// → its value). Heartbeats carry an HMAC of each; a peer whose marks
	// differ is refused, with one log line naming the variable.
	Marks map[string][]byte
	// Heartbeat is how often a node says it is alive. Default 500ms.
	Heartbeat time.Duration
	// DeadAfter is how long a silent peer stays in the cluster. Default
	// 4×Heartbeat (2s): with the sweep on the heartbeat's tick, a dead node is
	// declared within 2.5s, under the 3s, while three lost
	// heartbeats in a row are still forgiven.
	DeadAfter time.Duration
	// Logger gets joins, departures and refusals. Default: discard.
	Logger *slog.Logger
}

// Stats are a Router's counters.
type Stats struct {
	Peers     int    // linked peers now
	NodesSeen uint64 // peer incarnations ever linked
	Refused   uint64 // peer incarnations refused for mismatched secrets
	Gone      uint64 // peers declared dead
	Out       uint64 // envelopes published to other nodes (bounces included)
	In        uint64 // envelopes received from other nodes
	Bad       uint64 // undecodable frames dropped
}

// entry is one session in the replica: local (ep set) or on node.
type entry struct {
	ep   signaling.Endpoint
	node string
	m    signaling.Member
	room string
	in   bool
	// knows (local, in a room): the members of room the session has heard
	// of or will hear of from them; the rest joined at the same time on
	// another node and are told by applyState.
	knows map[string]bool
}

type peer struct {
	inc     string
	last    time.Time
	linked  bool
	refused bool
}

// Router is a signaling.Router over NATS. Close it before the connection.
type Router struct {
	nc     *nats.Conn
	opt    Options
	self   string
	inc    string
	prefix string
	log    *slog.Logger
	marks  map[string]string

	mu      sync.RWMutex
	entries map[string]*entry            // guarded by mu; by session id
	rooms   map[string]map[string]*entry // guarded by mu; room → id → entry
	// admitted: entries this node admitted as a room's owner whose joins
	// have not arrived yet; guarded by mu. room → id → when.
	admitted map[string]map[string]time.Time
	tombs    map[string]tomb  // guarded by mu; sessions of other nodes removed lately
	peers    map[string]*peer // guarded by mu; by node name
	changed  chan struct{}    // guarded by mu; closed when links change

	subs []*nats.Subscription
	stop chan struct{}
	done chan struct{}
	once sync.Once

	nodesSeen, refused, gone, out, in, bad atomic.Uint64
}

var _ signaling.Router = (*Router)(nil)

// New starts a Router on nc: it subscribes and starts heartbeating.
func New(nc *nats.Conn, opt Options) (*Router, error) {
	if opt.Cluster == "" {
		opt.Cluster = "switchboard"
	}
	if !ValidName(opt.Cluster) || !ValidName(opt.Node) {
		return nil, fmt.Errorf("natsrouter: cluster %q and node %q must be letters, digits, - and _", opt.Cluster, opt.Node)
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = 500 * time.Millisecond
	}
	if opt.DeadAfter <= 0 {
		opt.DeadAfter = 4 * opt.Heartbeat
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		nc: nc, opt: opt, self: opt.Node, inc: randomID(), prefix: opt.Cluster,
		log:      opt.Logger.With("node", opt.Node),
		marks:    marks(opt.Secret, opt.Marks),
		entries:  make(map[string]*entry),
		rooms:    make(map[string]map[string]*entry),
		peers:    make(map[string]*peer),
		admitted: make(map[string]map[string]time.Time),
		tombs:    make(map[string]tomb),
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	// The node subject first: a peer that hears our heartbeats has seen this
	// subscription too (a server propagates a connection's interest in order).
	for _, s := range []struct {
		subj string
		h    nats.MsgHandler
	}{{r.nodeSubject(r.self), r.onNode}, {r.prefix + ".hb", r.onHeartbeat}} {
		sub, err := nc.Subscribe(s.subj, s.h)
		if err != nil {
			r.unsubscribe()
			return nil, fmt.Errorf("natsrouter: subscribe %s: %w", s.subj, err)
		}
		// Never drop: a slow node queues rather than loses messages silently.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			r.unsubscribe()
			return nil, err
		}
		r.subs = append(r.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		r.unsubscribe()
		return nil, fmt.Errorf("natsrouter: %w", err)
	}
	// One request now creates the connection's reply subscription before the
	// heartbeat subscription: a peer that hears us can answer our requests.
	if _, err := nc.Request(r.nodeSubject(r.self), []byte{opPing}, 10*time.Second); err != nil {
		r.unsubscribe()
		return nil, fmt.Errorf("natsrouter: ping itself: %w", err)
	}
	go r.beat()
	return r, nil
}

func (r *Router) unsubscribe() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
}

// Close says goodbye to the peers (they forget this node's sessions at once
// instead of after DeadAfter) and stops heartbeats and subscriptions; the
// connection stays open. Close the hub first: its sessions' ends are told.
func (r *Router) Close() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		b, _ := json.Marshal(heartbeat{Node: r.self, Inc: r.inc, Marks: r.marks, Bye: true})
		_ = r.nc.Publish(r.prefix+".hb", b)
		_ = r.nc.Flush()
		r.unsubscribe()
	})
}

// Node is this node's name.
func (r *Router) Node() string { return r.self }

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.RLock()
	n := 0
	for _, p := range r.peers {
		if p.linked {
			n++
		}
	}
	r.mu.RUnlock()
	return Stats{Peers: n, NodesSeen: r.nodesSeen.Load(), Refused: r.refused.Load(), Gone: r.gone.Load(),
		Out: r.out.Load(), In: r.in.Load(), Bad: r.bad.Load()}
}

// Peers lists the linked peers, sorted.
func (r *Router) Peers() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for name, p := range r.peers {
		if p.linked {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// WaitPeers waits until n peers are linked (both ways), or ctx ends.
func (r *Router) WaitPeers(ctx context.Context, n int) error {
	for {
		r.mu.RLock()
		ch := r.changed
		k := 0
		for _, p := range r.peers {
			if p.linked {
				k++
			}
		}
		r.mu.RUnlock()
		if k >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("natsrouter: %s linked to %d of %d peers: %w", r.self, k, n, ctx.Err())
		}
	}
}

func (r *Router) nodeSubject(node string) string { return r.prefix + ".node." + node }

// publish sends a frame to node; counted in Out when it is an envelope.
func (r *Router) publish(node string, frame []byte) {
	if err := r.nc.Publish(r.nodeSubject(node), frame); err != nil {
		r.log.Warn("cluster publish", "to", node, "err", err)
	}
}

// --- Membership ---

// Register makes a local session reachable from every node.
func (r *Router) Register(id string, ep signaling.Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.entries[id]; ok {
		r.leaveLocked(old)
	}
	r.entries[id] = &entry{ep: ep, node: r.self, m: signaling.Member{ID: id}}
	r.tellLocked(memberOp{Op: opReg, ID: id})
}

// Unregister forgets a local session on every node.
func (r *Router) Unregister(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || e.ep == nil {
		return
	}
	r.leaveLocked(e)
	delete(r.entries, id)
	r.tellLocked(memberOp{Op: opUnreg, ID: id})
}

// Join moves local session m.ID into room.
//
// The cap is the cluster's: every room has an owner, the node ranked first
// for the room's name among the linked nodes (rendezvous hashing), which
// admits entries one at a time: it counts the members its replica knows plus
// the admissions it granted whose joins have not reached it yet. Nodes agree
// on the owner while the set of linked nodes is stable; while it changes (a
// node joining or gone) two owners may each admit one, and when the owner
// does not answer within admitTimeout this node decides on its own replica.
func (r *Router) Join(room string, m signaling.Member, max int) ([]signaling.Member, error) {
	r.mu.Lock()
	e, ok := r.entries[m.ID]
	if !ok || e.ep == nil {
		r.mu.Unlock()
		return nil, signaling.ErrNoSession
	}
	if e.in && e.room == room {
		defer r.mu.Unlock()
		return membersExcept(r.rooms[room], m.ID), nil
	}
	owner := r.ownerLocked(room)
	if owner == r.self {
		defer r.mu.Unlock()
		if !r.admitLocked(room, m.ID, max, false) {
			return nil, signaling.ErrRoomFull
		}
		return r.joinLocked(e, room, m), nil
	}
	r.mu.Unlock()
	admitted, answered := r.askAdmit(owner, room, m.ID, max)
	if answered && !admitted {
		return nil, signaling.ErrRoomFull
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok = r.entries[m.ID]
	if !ok || e.ep == nil {
		return nil, signaling.ErrNoSession // the owner's admission expires
	}
	if e.in && e.room == room {
		return membersExcept(r.rooms[room], m.ID), nil
	}
	if !answered && !r.admitLocked(room, m.ID, max, false) {
		return nil, signaling.ErrRoomFull
	}
	return r.joinLocked(e, room, m), nil
}

// admitTimeout bounds the wait for a room owner's admission.
const admitTimeout = 2 * time.Second

// admissionTTL is how long an admission counts on the owner before the
// join it admitted arrives.
const admissionTTL = 10 * time.Second

// ownerLocked is the node that admits entries to room.
func (r *Router) ownerLocked(room string) string {
	best, bh := r.self, rank(room, r.self)
	for name, p := range r.peers {
		if !p.linked || p.refused {
			continue
		}
		if h := rank(room, name); h > bh || h == bh && name < best {
			best, bh = name, h
		}
	}
	return best
}

func rank(room, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(room))
	h.Write([]byte{0})
	h.Write([]byte(node))
	return h.Sum64()
}

// admitLocked counts room's members and pending admissions but id against
// max; reserve records an admission for a session of another node.
func (r *Router) admitLocked(room, id string, max int, reserve bool) bool {
	members := r.rooms[room]
	n := len(members)
	if members[id] != nil {
		n--
	}
	for rid := range r.admitted[room] {
		if rid != id && members[rid] == nil {
			n++
		}
	}
	if n >= max {
		return false
	}
	if reserve {
		if r.admitted[room] == nil {
			r.admitted[room] = make(map[string]time.Time)
		}
		r.admitted[room][id] = time.Now()
	}
	return true
}

// askAdmit asks owner whether id may enter room; answered is false when it
// did not answer in time.
func (r *Router) askAdmit(owner, room, id string, max int) (admitted, answered bool) {
	b, _ := json.Marshal(admitReq{Room: room, ID: id, Max: max})
	msg, err := r.nc.Request(r.nodeSubject(owner), append([]byte{opAdmit}, b...), admitTimeout)
	if err != nil || len(msg.Data) != 1 {
		r.log.Warn("cluster: room owner did not answer; deciding here", "room", room, "owner", owner, "err", err)
		return false, false
	}
	return msg.Data[0] == 1, true
}

// joinLocked puts local entry e into room (the cap was checked).
func (r *Router) joinLocked(e *entry, room string, m signaling.Member) []signaling.Member {
	members := r.rooms[room]
	r.leaveLocked(e)
	others := membersExcept(members, m.ID)
	e.m, e.room = m, room
	e.knows = make(map[string]bool, len(others))
	for _, o := range others {
		e.knows[o.ID] = true
	}
	r.enterLocked(e)
	r.tellLocked(memberOp{Op: opJoin, ID: m.ID, Name: m.Name, Net: m.Net, Room: room, Saw: knownIDs(e)})
	return others
}

// Members lists room on every node.
func (r *Router) Members(room string) []signaling.Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return membersExcept(r.rooms[room], "")
}

// Rooms counts the rooms with a member on this node.
func (r *Router) Rooms() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, ms := range r.rooms {
		for _, e := range ms {
			if e.ep != nil {
				n++
				break
			}
		}
	}
	return n
}

func membersExcept(ms map[string]*entry, id string) []signaling.Member {
	out := make([]signaling.Member, 0, len(ms))
	for _, e := range ms {
		if e.m.ID != id {
			out = append(out, e.m)
		}
	}
	return out
}

func (r *Router) enterLocked(e *entry) {
	ms := r.rooms[e.room]
	if ms == nil {
		ms = make(map[string]*entry)
		r.rooms[e.room] = ms
	}
	ms[e.m.ID] = e
	e.in = true
	if a := r.admitted[e.room]; a != nil {
		delete(a, e.m.ID) // a member now, counted as such
		if len(a) == 0 {
			delete(r.admitted, e.room)
		}
	}
}

func (r *Router) leaveLocked(e *entry) {
	if !e.in {
		return
	}
	if ms := r.rooms[e.room]; ms != nil {
		delete(ms, e.m.ID)
		for _, o := range ms {
			delete(o.knows, e.m.ID) // if it comes back, it is news again
		}
		if len(ms) == 0 {
			delete(r.rooms, e.room)
		}
	}
	e.in = false
	e.knows = nil
}

func knownIDs(e *entry) []string {
	ids := make([]string, 0, len(e.knows))
	for id := range e.knows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

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
			ops = append(ops, memberOp{Op: opJoin, ID: id, Name: e.m.Name, Net: e.m.Net, Room: e.room, Saw: knownIDs(e)})
		default:
			ops = append(ops, memberOp{Op: opReg, ID: id})
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
			continue // a session id is one node's
		}
		switch o.Op {
		case opUnreg:
			if had {
				r.leaveLocked(old)
				delete(r.entries, o.ID)
				r.tombs[o.ID] = tomb{node: s.Node, at: time.Now()}
			}
		case opReg, opJoin:
			if !had {
				old = &entry{node: s.Node}
				r.entries[o.ID] = old
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
		if e.node != node {
			continue
		}
		if e.in {
			for _, o := range r.rooms[e.room] {
				if o.ep != nil {
					left = append(left, departure{id: id, to: o})
				}
			}
		}
		r.leaveLocked(e)
		delete(r.entries, id)
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

// --- Delivery ---

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

// --- Heartbeats and links ---

func (r *Router) beat() {
	defer close(r.done)
	t := time.NewTicker(r.opt.Heartbeat)
	defer t.Stop()
	r.sendHeartbeat()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.sweep(now)
			r.sendHeartbeat()
		}
	}
}

func (r *Router) sendHeartbeat() {
	r.mu.RLock()
	hb := heartbeat{Node: r.self, Inc: r.inc, Marks: r.marks}
	for name, p := range r.peers {
		if !p.refused {
			hb.Heard = append(hb.Heard, name)
		}
	}
	r.mu.RUnlock()
	b, _ := json.Marshal(hb)
	if err := r.nc.Publish(r.prefix+".hb", b); err != nil {
		r.log.Warn("cluster heartbeat", "err", err)
	}
}

// sweep declares peers silent for DeadAfter gone.
func (r *Router) sweep(now time.Time) {
	var left []departure
	r.mu.Lock()
	for id, t := range r.tombs {
		if now.Sub(t.at) > tombTTL {
			delete(r.tombs, id)
		}
	}
	for room, a := range r.admitted {
		for id, at := range a {
			if now.Sub(at) > admissionTTL {
				delete(a, id)
			}
		}
		if len(a) == 0 {
			delete(r.admitted, room)
		}
	}
	for name, p := range r.peers {
		if now.Sub(p.last) < r.opt.DeadAfter {
			continue
		}
		delete(r.peers, name)
		if !p.refused {
			r.gone.Add(1)
			r.log.Warn("cluster: node gone (no heartbeat)", "peer", name, "silent", now.Sub(p.last).Round(time.Millisecond))
		}
		left = append(left, r.dropNodeLocked(name)...)
		r.notifyLocked()
	}
	r.mu.Unlock()
	r.tellLeft(left)
}

// tellLeft gives local members the peer-left of sessions whose node went.
func (r *Router) tellLeft(left []departure) {
	for _, d := range left {
		_ = d.to.ep.Deliver(signaling.Envelope{Kind: signaling.KindClient, To: d.to.m.ID, Room: d.to.room,
			Body: peerLeftBody(d.id)})
	}
}

func peerLeftBody(id string) []byte {
	b, _ := json.Marshal(wire.PeerLeft{Type: wire.TypePeerLeft, ID: id, Reason: wire.ReasonLeft})
	return b
}

func (r *Router) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Router) onHeartbeat(m *nats.Msg) {
	hb, err := parseHeartbeat(m.Data)
	if err != nil {
		r.bad.Add(1)
		return
	}
	if hb.Node == r.self {
		if hb.Inc != r.inc {
			r.log.Error("cluster: another node uses this node's name", "name", r.self)
		}
		return
	}
	answer := false
	var left []departure
	r.mu.Lock()
	p, ok := r.peers[hb.Node]
	if hb.Bye {
		if ok && p.inc == hb.Inc {
			delete(r.peers, hb.Node)
			left = r.dropNodeLocked(hb.Node)
			r.notifyLocked()
			r.log.Info("cluster: node left", "peer", hb.Node)
		}
		r.mu.Unlock()
		r.tellLeft(left)
		return
	}
	if !ok || p.inc != hb.Inc {
		if ok { // restarted: what it had is gone
			left = r.dropNodeLocked(hb.Node)
		}
		p = &peer{inc: hb.Inc}
		r.peers[hb.Node] = p
		answer = true // let it hear us without waiting a period
		if bad := r.mismatch(hb.Marks); bad != "" {
			p.refused = true
			r.refused.Add(1)
			r.log.Error("cluster: refusing node: its "+bad+" differs from this node's", "peer", hb.Node)
		} else {
			r.log.Info("cluster: node seen", "peer", hb.Node)
		}
		r.notifyLocked()
	}
	p.last = time.Now()
	if !p.refused {
		linked := slices.Contains(hb.Heard, r.self)
		if linked && !p.linked {
			r.nodesSeen.Add(1)
			// From now on this peer gets every change, after this snapshot.
			r.sendSnapshotLocked(hb.Node)
			r.log.Info("cluster: linked", "peer", hb.Node)
		}
		if linked != p.linked {
			p.linked = linked
			r.notifyLocked()
		}
	}
	r.mu.Unlock()
	r.tellLeft(left)
	if answer {
		r.sendHeartbeat()
	}
}

// marks keys each named secret's HMAC with the cluster secret.
func marks(key []byte, named map[string][]byte) map[string]string {
	out := map[string]string{"SWITCHBOARD_CLUSTER_SECRET": mac(key, "cluster", nil)}
	for name, v := range named {
		out[name] = mac(key, name, v)
	}
	return out
}

func mac(key []byte, name string, v []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("switchboard cluster mark v1\x00" + name + "\x00"))
	h.Write(v)
	return hex.EncodeToString(h.Sum(nil))
}

// mismatch names the first secret whose mark differs ("" if none): the
// cluster secret first, as a different one changes every mark.
func (r *Router) mismatch(theirs map[string]string) string {
	const cs = "SWITCHBOARD_CLUSTER_SECRET"
	if !hmac.Equal([]byte(theirs[cs]), []byte(r.marks[cs])) {
		return cs
	}
	names := make([]string, 0, len(r.marks))
	for n := range r.marks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !hmac.Equal([]byte(theirs[n]), []byte(r.marks[n])) {
			return n
		}
	}
	return ""
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
