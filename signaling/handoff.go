package signaling

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// A cluster moves sessions between nodes. Two ways:
//
//   - Handoff: a client cut from node A resumes on node B while A lives. B's
//     hub asks its Router (a Mover) to Claim the session; A's router asks A's
//     hub to Release it, which hands over everything: room, call, numbering
//     and every unacknowledged message. B imports it and resumes it as if it
//     had always been there.
//   - Adoption: A dies. Each session's state was Kept on the other nodes at
//     every change that matters (room, call, a block of sequence numbers); a
//     survivor Adopts it and holds it in its resume grace. What A held and had
//     not replicated (its unacknowledged messages, the client's last messages)
//     may be gone: the client's next welcome says so (lost), and the client
//     restarts ICE.
//
// The Router does the moving of deliveries (see natsrouter); the hub only
// exports and imports a session's state.

var (
	// ErrStale is Release's answer to a resume whose hello.attempt is not
	// above one already accepted: a newer socket of the client took over.
	ErrStale = errors.New("signaling: stale resume attempt")
	// ErrMoved is Deliver's answer once its session has moved to another node:
	// the Router delivers there instead.
	ErrMoved = errors.New("signaling: session moved to another node")
)

// Mover is implemented by a Router whose sessions can move between nodes.
// The hub uses it when its Router implements it.
type Mover interface {
	// Serve gives the router the hub's side of a move. Called once, by New.
	Serve(Sessions)
	// Keep records the state of local session id, to be adopted by another
	// node should this one die. Called with the session's lock held: it must
	// not block and must not call back into the hub.
	Keep(id string, state []byte)
	// Claim takes session id from the node that has it, for a resume with
	// hello.attempt: the state Release returned there. ErrNoSession when no
	// node has it, ErrStale for a stale attempt. On success the session's
	// deliveries come here from the router's next Register of id.
	Claim(ctx context.Context, id string, attempt uint64) ([]byte, error)
}

// Sessions is what a Mover calls on its hub.
type Sessions interface {
	// Release hands local session id over for a resume elsewhere: it leaves
	// this hub without ending (no one is told) and its state is returned.
	// From here on its Deliver returns ErrMoved.
	Release(id string, attempt uint64) ([]byte, error)
	// Adopt takes over a session of a node that died, from its last Kept
	// state; the hub registers it with the router.
	Adopt(state []byte)
	// Fence cuts every link (1012, resume elsewhere) and forgets every
	// session without telling anyone: this node lost the cluster's majority,
	// which adopts them.
	Fence()
}

// sessionState is a session on the wire between nodes.
type sessionState struct {
	ID     string      `json:"id"`
	Resume string      `json:"resume"`
	Name   string      `json:"name,omitempty"`
	Net    netip.Addr  `json:"net,omitzero"`
	Room   string      `json:"room"`
	Grant  *grantState `json:"grant,omitempty"`
	Call   *callState  `json:"call,omitempty"`
	InSeq  uint64      `json:"inSeq,omitempty"`
	// Seq is the last seq assigned; in a kept state, a bound the session will
	// not reach before it is kept again (see seqBlock).
	Seq       uint64        `json:"seq"`
	Acked     uint64        `json:"acked,omitempty"`
	Forgotten uint64        `json:"forgotten,omitempty"`
	Queue     []queuedState `json:"queue,omitempty"`
	// Kept: a replicated snapshot (no queue); adopting it loses what the
	// dead node held. Lost: the client has not been told of such a loss yet.
	Kept bool   `json:"kept,omitempty"`
	Lost bool   `json:"lost,omitempty"`
	Base uint64 `json:"base,omitempty"` // lost: the seq numbering went on from
}

type grantState struct {
	Sub  string `json:"sub"`
	Room string `json:"room,omitempty"`
}

type callState struct {
	ID     string          `json:"id"`
	Peer   string          `json:"peer"`
	Caller bool            `json:"caller,omitempty"`
	Active bool            `json:"active,omitempty"`
	Rung   bool            `json:"rung,omitempty"`
	RingMS int64           `json:"ringMs,omitempty"` // caller, ringing: time left
	Ref    json.RawMessage `json:"ref,omitempty"`
}

type queuedState struct {
	Seq  uint64          `json:"seq"`
	Body json.RawMessage `json:"body"`
	From string          `json:"from,omitempty"`
}

// seqBlock is how far ahead of its last seq a kept state reserves numbers: a
// session is kept again only when it passes the bound, so a busy session costs
// one replication per seqBlock messages, and an adopted one numbers its
// messages above anything its client saw.
const seqBlock = 256

// replica is a session's replication bookkeeping (cluster mode only).
type replica struct {
	key   keepKey // what the last kept state said
	bound uint64  // its Seq
	lost  bool    // adopted from a kept state; the next welcome says so
	base  uint64  // lost: the seq the adoption started at
	moved bool    // released to another node: Deliver answers ErrMoved
}

// keepKey is what, when it changes, makes a session kept again.
type keepKey struct {
	room                 string
	call, peer           string
	caller, active, rung bool
}

// stateLocked exports s (s.mu held); with the queue for a handoff, else as a
// kept snapshot.
func (s *session) stateLocked(now time.Time, full bool) sessionState {
	st := sessionState{ID: s.id, Resume: s.resume, Name: s.name, Net: s.net, Room: s.room, InSeq: s.inSeq, Seq: s.seq}
	if s.grant != nil {
		st.Grant = &grantState{Sub: s.grant.sub, Room: s.grant.room}
	}
	if h := s.call; h != nil {
		c := &callState{ID: h.id, Peer: h.peer, Caller: h.caller, Active: h.active, Rung: h.rung, Ref: h.ref}
		if h.caller && !h.active {
			c.RingMS = max(1, (h.ringUntil-s.e.mono(now))/int64(time.Millisecond))
		}
		st.Call = c
	}
	if s.rep != nil && s.rep.lost {
		st.Lost, st.Base = true, s.rep.base
	}
	if !full {
		st.Kept, st.Seq = true, s.seq+seqBlock
		return st
	}
	st.Acked, st.Forgotten = s.acked, s.forgotten
	st.Queue = make([]queuedState, 0, len(s.queue))
	for _, q := range s.queue {
		body := q.msg.Body
		if body == nil {
			body, _ = json.Marshal(q.msg.Value)
		}
		st.Queue = append(st.Queue, queuedState{Seq: q.seq, Body: body, From: q.msg.From})
	}
	return st
}

func (s *session) keyLocked() keepKey {
	k := keepKey{room: s.room}
	if h := s.call; h != nil {
		k.call, k.peer, k.caller, k.active, k.rung = h.id, h.peer, h.caller, h.active, h.rung
	}
	return k
}

// replicate keeps s's state on the other nodes when what matters changed since
// it was last kept, or its numbering passed the kept bound. A no-op on one node.
func (s *session) replicate() {
	k := s.e.keeper
	if k == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicateLocked(k, false)
}

func (s *session) replicateLocked(k Mover, force bool) {
	if s.gone || s.rep == nil {
		return
	}
	key := s.keyLocked()
	if !force && key == s.rep.key && s.seq < s.rep.bound {
		return
	}
	st := s.stateLocked(time.Now(), false)
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	s.rep.key, s.rep.bound = key, st.Seq
	// Under s.mu, so that two changes are kept in the order they happened.
	k.Keep(s.id, b)
}

// Release implements Sessions.
func (h *Hub) Release(id string, attempt uint64) ([]byte, error) {
	h.mu.Lock()
	s := h.sessions[id]
	h.mu.Unlock()
	if s == nil {
		return nil, ErrNoSession
	}
	s.handling.Lock() // wait for a message being handled
	defer s.handling.Unlock()
	if !h.dir.Accept(s.resume, attempt) {
		h.st.staleResumes.Add(1)
		return nil, ErrStale
	}
	h.mu.Lock()
	if h.sessions[id] != s || s.ended {
		h.mu.Unlock()
		return nil, ErrNoSession
	}
	s.ended = true
	delete(h.sessions, id)
	delete(h.away, s)
	if l := s.link; l != nil {
		h.detachLocked(s)
		l.setReason(reasonReplaced)
		h.kickLocked(l, closeReplaced, "session resumed on another node", nil)
	}
	s.mu.Lock()
	st := s.stateLocked(time.Now(), true)
	s.gone = true
	if s.rep == nil {
		s.rep = &replica{}
	}
	s.rep.moved = true
	c := s.call
	s.call = nil
	s.mu.Unlock()
	h.mu.Unlock()
	if c != nil {
		h.callOver(c) // counted on its new node now
	}
	h.dir.Remove(s.resume)
	h.st.handedOff.Add(1)
	return json.Marshal(st)
}

var errHubClosing = errors.New("signaling: hub closing")

// Adopt implements Sessions.
func (h *Hub) Adopt(state []byte) {
	s, err := h.importSession(state, true)
	if errors.Is(err, errHubClosing) {
		return // the node is stopping: another adopts it
	}
	if err != nil {
		h.log.Error("cannot adopt a session of a node that died", "err", err)
		return
	}
	h.st.adopted.Add(1)
	h.log.Info("adopted a session of a node that died", "peer", s.id, "room", s.room)
}

// Fence implements Sessions.
func (h *Hub) Fence() {
	h.mu.Lock()
	var all []*session
	for _, s := range h.sessions {
		all = append(all, s)
	}
	for _, s := range all {
		s.ended = true
		delete(h.sessions, s.id)
		delete(h.away, s)
		if l := s.link; l != nil {
			h.detachLocked(s)
			l.setReason(reasonShutdown)
			h.kickLocked(l, websocket.StatusServiceRestart, "node lost its cluster, resume elsewhere", nil)
		}
	}
	for l := range h.pending {
		l.setReason(reasonShutdown)
		h.kickLocked(l, websocket.StatusServiceRestart, "node lost its cluster, connect elsewhere", nil)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		s.gone = true
		c := s.call
		s.call = nil
		s.mu.Unlock()
		if c != nil {
			h.callOver(c)
		}
		h.dir.Remove(s.resume)
	}
	h.st.fenced.Add(1)
	h.log.Warn("fenced: this node lost the cluster's majority; its sessions continue on the other nodes", "sessions", len(all))
}

// claim fetches session id from another node for a resume and imports it.
func (h *Hub) claim(id string, attempt uint64) (*session, error) {
	ctx, cancel := context.WithTimeout(h.ctx, claimTimeout)
	defer cancel()
	for {
		b, err := h.keeper.Claim(ctx, id, attempt)
		if err == nil {
			s, err := h.importSession(b, false)
			if err != nil {
				return nil, err
			}
			h.st.handedIn.Add(1)
			return s, nil
		}
		if errors.Is(err, ErrStale) {
			return nil, err
		}
		// Its node died and a survivor is adopting it (perhaps this one):
		// the client came back faster than the cluster noticed. Look here
		// again, and ask again, until the adoption is done or time is up.
		h.mu.Lock()
		s := h.sessions[id]
		h.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(claimRetry):
		}
	}
}

// claimRetry paces the claims of a resume that waits for an adoption.
const claimRetry = 20 * time.Millisecond

// claimTimeout bounds a handoff: the resume waits for it.
const claimTimeout = 4 * time.Second // a dead node is declared dead within 2.5 s

// importSession makes a session of state, detached in its resume grace, and
// registers it: its room and call go on here.
func (h *Hub) importSession(state []byte, adopt bool) (*session, error) {
	var st sessionState
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("signaling: session state: %w", err)
	}
	if st.ID == "" || st.Resume == "" {
		return nil, errors.New("signaling: session state without id or resume token")
	}
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		return nil, errHubClosing
	}
	now := time.Now()
	s := &session{e: h.env, id: st.ID, resume: st.Resume, name: st.Name, net: st.Net, room: st.Room,
		inSeq: st.InSeq, seq: st.Seq, acked: st.Acked, forgotten: st.Forgotten, sent: st.Acked,
		rep: &replica{}}
	if st.Grant != nil {
		s.grant = &grant{sub: st.Grant.Sub, room: st.Grant.Room}
	}
	switch {
	case adopt || st.Kept:
		// Nothing the dead node held came along: number on from above
		// anything the client saw, and tell it at its welcome.
		s.rep.lost, s.rep.base = true, st.Seq
		s.acked, s.forgotten, s.sent = st.Seq, st.Seq, st.Seq
	case st.Lost: // handed off before its client heard of the loss
		s.rep.lost, s.rep.base = true, st.Base
	}
	for _, q := range st.Queue {
		if q.Seq <= s.acked || q.Seq > s.seq {
			continue
		}
		s.queue = append(s.queue, queued{seq: q.Seq, msg: outgoing{Body: []byte(q.Body), From: q.From}})
		s.qbytes += len(q.Body)
	}
	if c := st.Call; c != nil {
		hf := &half{id: c.ID, peer: c.Peer, caller: c.Caller, active: c.Active, rung: c.Rung, ref: c.Ref, invited: true}
		if hf.caller && !hf.active {
			hf.ringUntil = h.mono(now.Add(time.Duration(c.RingMS) * time.Millisecond))
		}
		s.call = hf
		if hf.caller {
			h.calls.Add(1)
			if !hf.active {
				h.ring.add(hf, s)
			}
		}
	}
	h.router.Register(s.id, s)
	if _, err := h.router.Join(s.room, s.member(), h.cfg.MaxRoomSize); err != nil {
		// Its room is here (the router moved it along); failing that, it ends.
		h.log.Warn("moved session lost its room", "peer", s.id, "room", s.room, "err", err)
	}
	h.dir.Add(s.resume, s.id)
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		s.end(wire.ReasonLeft, false)
		return nil, errHubClosing
	}
	if old := h.sessions[s.id]; old != nil {
		h.mu.Unlock()
		return nil, fmt.Errorf("signaling: session %s is here already", s.id)
	}
	h.sessions[s.id] = s
	h.away[s] = struct{}{}
	s.graceUntil = h.mono(now.Add(h.cfg.ResumeGrace))
	h.mu.Unlock()
	s.mu.Lock()
	s.replicateLocked(h.keeper, true)
	s.mu.Unlock()
	return s, nil
}

// tokenMatch compares resume tokens in constant time.
func tokenMatch(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
