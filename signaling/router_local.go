package signaling

import "sync"

// NewLocalRouter returns the in-process Router: delivery is a call of the
// receiver's Deliver on the sender's goroutine, bounces included.
func NewLocalRouter() Router { return newLocalRouter() }

func newLocalRouter() *localRouter {
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
	// An RWMutex: every relayed signal reads (lookup and room check) while only
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

func (r *localRouter) Members(room string) []Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return membersExcept(r.rooms[room], "")
}

func (r *localRouter) Rooms() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.rooms)
}

func (r *localRouter) Send(e Envelope) { r.send(e, r.deliverBounce) }

func (r *localRouter) Broadcast(e Envelope) { r.broadcast(e, r.deliverBounce) }

// send delivers e to e.To and hands a bounce, if any, to bounce. The test
// router passes its own bounce to make bounces hop too.
func (r *localRouter) send(e Envelope, bounce func(Envelope)) {
	r.mu.RLock()
	t, ok := r.eps[e.To]
	inRoom := ok && t.in && t.room == e.Room
	r.mu.RUnlock()
	switch {
	case e.Kind == KindBounce:
		if ok {
			_ = t.ep.Deliver(e) // a bounce never bounces
		}
		return
	case e.InRoom && !inRoom:
		if e.From != "" {
			bounce(e.Bounce(BounceNotHere))
		}
		return
	case !ok:
		if e.From != "" {
			bounce(e.Bounce(BounceGone))
		}
		return
	}
	if err := t.ep.Deliver(e); err != nil && e.From != "" {
		bounce(e.Bounce(BounceFor(err)))
	}
}

// maxStackFanout is how many receivers broadcast collects on the stack: rooms are
// small (MaxRoomSize defaults to 8), so a broadcast allocates nothing.
const maxStackFanout = 16

func (r *localRouter) broadcast(e Envelope, bounce func(Envelope)) {
	type receiver struct {
		ep Endpoint
		id string
	}
	var buf [maxStackFanout]receiver
	r.mu.RLock()
	to := buf[:0]
	for id, t := range r.rooms[e.Room] {
		if id != e.From {
			to = append(to, receiver{t.ep, id})
		}
	}
	r.mu.RUnlock()
	for _, t := range to {
		if err := t.ep.Deliver(e); err != nil && e.From != "" {
			f := e
			f.To = t.id
			bounce(f.Bounce(BounceFor(err)))
		}
	}
}

// deliverBounce hands a bounce to its addressee at once.
func (r *localRouter) deliverBounce(b Envelope) {
	r.mu.RLock()
	t, ok := r.eps[b.To]
	r.mu.RUnlock()
	if ok {
		_ = t.ep.Deliver(b)
	}
}

// NewLocalDirectory returns the in-process Directory.
func NewLocalDirectory() Directory {
	return &localDirectory{m: make(map[string]dirEntry)}
}

type dirEntry struct {
	id      string
	attempt uint64 // highest hello.attempt accepted
}

type localDirectory struct {
	mu sync.Mutex
	m  map[string]dirEntry // guarded by mu; by resume token
}

func (d *localDirectory) Add(token, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[token] = dirEntry{id: id}
}

func (d *localDirectory) Lookup(token string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[token]
	return e.id, ok
}

func (d *localDirectory) Accept(token string, attempt uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[token]
	switch {
	case !ok, attempt == 0:
		return true
	case attempt <= e.attempt:
		return false
	}
	e.attempt = attempt
	d.m[token] = e
	return true
}

func (d *localDirectory) Remove(token string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, token)
}
