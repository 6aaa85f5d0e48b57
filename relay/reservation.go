package relay

import (
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// reservations makes RESERVATION-TOKEN work whichever listening socket a request lands on.
// pion keeps a reservation in the allocation manager of the socket that answered the
// EVEN-PORT (R=1) Allocate, one manager per SO_REUSEPORT socket, and the client's second
// Allocate (RTCP, from another client port) hashes to any socket: with Sockets=N it failed
// (N-1)/N of the time with 508. So the relay learns every token from pion's Allocate success
// responses (filterConn.WriteTo), and an Allocate carrying a known token is handed to pion
// without it: the port the token reserved is passed to the relay address generator
// (relays.AllocatePacketConn) for that user's next allocation instead.
//
// pion itself holds no socket for a reservation (the port is bound at the second Allocate,
// which fails with 508 if the port was taken meanwhile); neither does this table.
type reservations struct {
	mu      sync.Mutex
	tokens  map[string]reserved     // guarded by mu
	pending map[string]pendingAlloc // user -> what their next allocation gets; guarded by mu
	held    map[int]time.Time       // reserved port -> when its token expires; guarded by mu
}

type reserved struct {
	port    int // the EVEN-PORT allocation's port; the token reserves port+1
	expires time.Time
}

// pendingAlloc is what the filter set aside for a user's next relay socket: the reserved
// port, and DONT-FRAGMENT.
type pendingAlloc struct {
	port    int
	df      bool
	expires time.Time
}

// reservationLifetime is pion's (CreateReservation) and RFC 8656 §7.2's 30 s.
const reservationLifetime = 30 * time.Second

// pendingLifetime bounds how long a port waits for the allocation it was set aside for:
// pion allocates on the same goroutine right after the filter passes the request, so this
// only clears what a refused request (quota) left behind.
const pendingLifetime = 5 * time.Second

// maxReservations bounds the table; each entry is a few dozen bytes.
const maxReservations = 4096

// learn records the token and port of a successful Allocate response pion is sending.
func (r *reservations) learn(m *stun.Message, now time.Time) {
	tok, err := m.Get(stun.AttrReservationToken)
	if err != nil || len(tok) != 8 {
		return
	}
	var relayed stun.XORMappedAddress
	if relayed.GetFromAs(m, stun.AttrXORRelayedAddress) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tokens == nil {
		r.tokens = map[string]reserved{}
	}
	if len(r.tokens) >= maxReservations {
		for k, v := range r.tokens {
			if now.After(v.expires) {
				delete(r.tokens, k)
			}
		}
		if len(r.tokens) >= maxReservations {
			return // full of live tokens: this one is not honoured on other sockets
		}
	}
	r.tokens[string(tok)] = reserved{port: relayed.Port, expires: now.Add(reservationLifetime)}
	if r.held == nil {
		r.held = map[int]time.Time{}
	}
	for p, exp := range r.held {
		if now.After(exp) {
			delete(r.held, p)
		}
	}
	r.held[relayed.Port+1] = now.Add(reservationLifetime)
}

// isHeld reports whether port is reserved by a live token: no other allocation may take
// it, since no socket holds it until the reserving client's second Allocate.
func (r *reservations) isHeld(port int, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.held[port]
	return ok && !now.After(exp)
}

// claim returns the port a known token reserved. It does not consume the token: a
// retransmitted Allocate must find it again.
func (r *reservations) claim(token []byte, now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tokens[string(token)]
	if !ok || now.After(t.expires) {
		return 0, false
	}
	return t.port + 1, true
}

// setAside keeps p for user's next relay socket (relays.AllocatePacketConn).
func (r *reservations) setAside(user string, p pendingAlloc, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]pendingAlloc{}
	}
	if len(r.pending) >= maxReservations {
		clear(r.pending)
	}
	p.expires = now.Add(pendingLifetime)
	r.pending[user] = p
}

// take returns what was set aside for user's relay socket, if anything.
func (r *reservations) take(user string, now time.Time) pendingAlloc {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[user]
	if !ok {
		return pendingAlloc{}
	}
	delete(r.pending, user)
	if now.After(p.expires) {
		return pendingAlloc{}
	}
	return p
}
