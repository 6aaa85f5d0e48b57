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
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-rtc/switchboard/signaling"
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
	// FenceAfter is how long this node may miss the heartbeats of the
	// cluster's majority before it fences itself (fence.go). Default
	// three quarters of DeadAfter; negative: never.
	FenceAfter time.Duration
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
	Claimed   uint64 // sessions claimed from other nodes (handoffs in)
	HandedOff uint64 // sessions released to other nodes (handoffs out)
	Adopted   uint64 // sessions of dead nodes adopted here
	Fences    uint64 // times this node fenced itself off
	Fenced    bool   // fenced now
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

	epoch uint64   // moves between nodes so far
	snap  []byte   // last kept state (signaling.Mover.Keep)
	tok   string   // hash of the resume token (directory.go)
	dep   *moveOut // moving out, or moved out lately (handoff.go)
	prevs []string // the nodes it was on lately (newest last): their envelopes may still come
}

type peer struct {
	info    map[string]string // from its last heartbeat
	inc     string
	last    time.Time
	linked  bool
	refused bool
}

// Router is a signaling.Router over NATS. Close it before the connection.
type Router struct {
	nc   *nats.Conn
	opt  Options
	self string
	// inc names this incarnation (random per start, and per fence); guarded
	// by mu. oldInc: the one before a fence, whose heartbeats may still come.
	inc, oldInc string
	prefix      string
	log         *slog.Logger
	marks       map[string]string

	mu      sync.RWMutex
	entries map[string]*entry            // guarded by mu; by session id
	rooms   map[string]map[string]*entry // guarded by mu; room → id → entry
	// admitted: entries this node admitted as a room's owner whose joins
	// have not arrived yet; guarded by mu. room → id → when.
	admitted map[string]map[string]time.Time
	tombs    map[string]tomb  // guarded by mu; sessions of other nodes removed lately
	peers    map[string]*peer // guarded by mu; by node name
	changed  chan struct{}    // guarded by mu; closed when links change

	// Moves (handoff.go), guarded by mu: sessions moving in, the hub.
	incoming map[string]*arrival
	sessions signaling.Sessions
	toks     map[string]string // resume token hash → session id, every node's
	local    signaling.Directory
	// moves counts arrivals and leaving sessions, deps entries with a dep:
	// the delivery paths look at the maps only when these are not zero.
	moves, deps atomic.Int32
	// fencing (fence.go), guarded by mu
	// senders: moved sessions whose old node has not said it is done
	// (order.go); sentMarks: such words that came first. Guarded by mu;
	// swaits counts senders.
	senders   map[string]*senderWait
	sentMarks map[string]sentMsg
	swaits    atomic.Int32
	fenced    bool
	info      map[string]string    // this node's, sent in heartbeats
	known     map[string]time.Time // nodes linked lately, for the majority
	wg        sync.WaitGroup       // claims being served

	subs []*nats.Subscription
	stop chan struct{}
	done chan struct{}
	once sync.Once

	nodesSeen, refused, gone, out, in, bad, claimed, handedOff, adopted, fences atomic.Uint64
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
	if opt.FenceAfter == 0 {
		opt.FenceAfter = opt.DeadAfter * 3 / 4
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
		incoming: make(map[string]*arrival),
		senders:  make(map[string]*senderWait),
		toks:     make(map[string]string),
		local:    signaling.NewLocalDirectory(),
		known:    make(map[string]time.Time),
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
		r.wg.Wait()
		r.mu.RLock()
		b, _ := json.Marshal(heartbeat{Node: r.self, Inc: r.inc, Marks: r.marks, Bye: true})
		r.mu.RUnlock()
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
		Out: r.out.Load(), In: r.in.Load(), Bad: r.bad.Load(), Claimed: r.claimed.Load(), HandedOff: r.handedOff.Load(),
		Adopted: r.adopted.Load(), Fences: r.fences.Load(), Fenced: r.Fenced()}
}

// SetInfo sets what heartbeats tell the other nodes of this one (PeerInfo).
func (r *Router) SetInfo(info map[string]string) {
	r.mu.Lock()
	r.info = maps.Clone(info)
	r.mu.Unlock()
}

// PeerInfo returns the info of each linked peer (SetInfo there), by name.
func (r *Router) PeerInfo() map[string]map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]map[string]string)
	for name, p := range r.peers {
		if p.linked && !p.refused && p.info != nil {
			out[name] = p.info
		}
	}
	return out
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

// Registration here; room membership in rooms.go, its replication to the other
// nodes in state.go, delivery in delivery.go, heartbeats and links in liveness.go.

// Register makes a local session reachable from every node. A session that
// moved here (a claim or an adoption, handoff.go) keeps its room.
func (r *Router) Register(id string, ep signaling.Endpoint) {
	r.mu.Lock()
	old, ok := r.entries[id]
	if ok && old.ep == nil && (old.node == r.self || r.incoming[id] != nil) {
		a := r.takeOverLocked(id, old, ep)
		r.mu.Unlock()
		if a != nil {
			r.drain(id, a)
		}
		return
	}
	defer r.mu.Unlock()
	if ok {
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
	if e.tok != "" {
		delete(r.toks, e.tok)
	}
	r.tellLocked(memberOp{Op: opUnreg, ID: id, Epoch: e.epoch})
}

// randomID names this router instance in heartbeats.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
