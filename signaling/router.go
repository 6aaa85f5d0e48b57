package signaling

import (
	"errors"
	"net/netip"
	"sync"
)

// Router errors.
var (
	// ErrNoSession: the addressed session does not exist (anywhere).
	ErrNoSession = errors.New("signaling: no such session")
	// ErrUndeliverable: the session exists but cannot take the message now (its
	// replay window is full of messages it has not received yet).
	ErrUndeliverable = errors.New("signaling: undeliverable")
	// ErrRoomFull: Join refused because the room is at its cap.
	ErrRoomFull = errors.New("signaling: room full")
)

// Member is what a Router knows about a session.
type Member struct {
	ID   string
	Name string
	// Net is the client's public address (IPv6 reduced to its /64), used only to
	// compare two members for "nearby". It is never sent to a client.
	Net netip.Addr
}

// Message is one server→client message on its way to a session. Exactly one of
// Body (an encoded JSON object starting with `{"type":`) and Value (marshaled by the
// receiving session's writer, outside every lock) is set. From is the sending
// session for relayed messages, so an undeliverable message can be reported back.
type Message struct {
	Body  []byte
	Value any
	From  string

	// pooled is set when Body is *pooled, a buffer of the hub's body pool: the
	// receiving session gives it back once the client has acknowledged it (or
	// the caller does, if delivery fails). Only for a message with one receiver.
	pooled *[]byte
}

// Endpoint receives messages for one local session. Deliver must not block. On
// success the message belongs to the endpoint; on error it stays the caller's.
type Endpoint interface {
	Deliver(m Message) error
}

// Router is where sessions are: directory, room membership and delivery. The
// in-process implementation (NewLocalRouter) serves one hub; an implementation
// over NATS can span several instances without touching the WebSocket code.
//
// Methods are called with or without the hub's lock held (membership and calls
// hold it; relaying a signal does not), so implementations must not block (a
// remote router publishes asynchronously) and must not call back into the hub.
// Lock order: Hub.mu, then the router's lock, then a session's lock; the local
// router releases its lock before calling Endpoint.Deliver.
type Router interface {
	// Register makes a local session reachable by id; Unregister forgets it and
	// removes it from its room.
	Register(id string, ep Endpoint)
	Unregister(id string)
	// Join moves m into room (leaving its previous room) and returns the other
	// members. ErrRoomFull when the room already has max members.
	Join(room string, m Member, max int) (others []Member, err error)
	// RoomOf reports the room of session id.
	RoomOf(id string) (room string, ok bool)
	// Members lists room (any order).
	Members(room string) []Member
	// Send delivers m to session id: ErrNoSession or the Endpoint's error.
	Send(id string, m Message) error
	// Broadcast delivers m to every member of room except `except`, returning the
	// ids that could not take it.
	Broadcast(room, except string, m Message) (failed []string)
	// Rooms counts non-empty rooms.
	Rooms() int
}

// NewLocalRouter returns the in-process Router.
func NewLocalRouter() Router {
	return &localRouter{
		eps:   make(map[string]*localEntry),
		rooms: make(map[string]map[string]*localEntry),
	}
}

type localEntry struct {
	ep   Endpoint
	m    Member
	room string
	in   bool // member of room
}

type localRouter struct {
	// An RWMutex: every relayed signal reads (RoomOf, then Send) while only
	// membership changes write, so concurrent relays need not queue on each other.
	mu    sync.RWMutex
	eps   map[string]*localEntry            // guarded by mu
	rooms map[string]map[string]*localEntry // guarded by mu; room → id → entry
}

func (r *localRouter) Register(id string, ep Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eps[id] = &localEntry{ep: ep, m: Member{ID: id}}
}

func (r *localRouter) Unregister(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.eps[id]; ok {
		r.leaveLocked(e)
		delete(r.eps, id)
	}
}

func (r *localRouter) leaveLocked(e *localEntry) {
	if !e.in {
		return
	}
	if m := r.rooms[e.room]; m != nil {
		delete(m, e.m.ID)
		if len(m) == 0 {
			delete(r.rooms, e.room)
		}
	}
	e.in = false
}

func (r *localRouter) Join(room string, m Member, max int) ([]Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.eps[m.ID]
	if !ok {
		return nil, ErrNoSession
	}
	members := r.rooms[room]
	if e.in && e.room == room {
		return membersExcept(members, m.ID), nil
	}
	if len(members) >= max {
		return nil, ErrRoomFull
	}
	r.leaveLocked(e)
	if members == nil {
		members = make(map[string]*localEntry)
		r.rooms[room] = members
	}
	others := membersExcept(members, m.ID)
	e.m, e.room, e.in = m, room, true
	members[m.ID] = e
	return others, nil
}

func membersExcept(ms map[string]*localEntry, id string) []Member {
	out := make([]Member, 0, len(ms))
	for _, e := range ms {
		if e.m.ID != id {
			out = append(out, e.m)
		}
	}
	return out
}

func (r *localRouter) RoomOf(id string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.eps[id]
	if !ok || !e.in {
		return "", false
	}
	return e.room, true
}

func (r *localRouter) Members(room string) []Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return membersExcept(r.rooms[room], "")
}

func (r *localRouter) Send(id string, m Message) error {
	r.mu.RLock()
	e, ok := r.eps[id]
	r.mu.RUnlock()
	if !ok {
		return ErrNoSession
	}
	return e.ep.Deliver(m)
}

func (r *localRouter) Broadcast(room, except string, m Message) (failed []string) {
	r.mu.RLock()
	eps := make([]*localEntry, 0, len(r.rooms[room]))
	for id, e := range r.rooms[room] {
		if id != except {
			eps = append(eps, e)
		}
	}
	r.mu.RUnlock()
	for _, e := range eps {
		if err := e.ep.Deliver(m); err != nil {
			failed = append(failed, e.m.ID)
		}
	}
	return failed
}

func (r *localRouter) Rooms() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.rooms)
}
