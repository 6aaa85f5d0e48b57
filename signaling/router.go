package signaling

import (
	"encoding/json"
	"errors"
	"net/netip"
)

// Errors an Endpoint returns from Deliver; the Router turns them into bounces.
var (
	// ErrNoSession: the session has ended (bounce BounceGone).
	ErrNoSession = errors.New("signaling: no such session")
	// ErrUndeliverable: the session cannot take the message now, its replay
	// window is full of messages it has not received yet (bounce BounceFull).
	ErrUndeliverable = errors.New("signaling: undeliverable")
	// ErrBusy: a call invite found the session in another call (bounce BounceBusy).
	ErrBusy = errors.New("signaling: busy")
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

// Kind says what an Envelope's Body is.
type Kind uint8

const (
	// KindClient: Body is a server→client message without its seq
	// ({"type":"signal",...}, peer-joined, peer-left): the receiver numbers it
	// and queues it for its client as it is.
	KindClient Kind = iota + 1
	// KindControl: Body is call control between the two halves of a call, JSON
	// the receiving session reads (see control in calls.go).
	KindControl
	// KindBounce: an envelope that could not be delivered, on its way back to its
	// sender; Reason says why, Bounced what it was.
	KindBounce
)

// Reason says why an envelope bounced.
type Reason uint8

const (
	// BounceGone: the receiver does not exist (any more).
	BounceGone Reason = iota + 1
	// BounceNotHere: the receiver is not in the envelope's Room (or unknown, for
	// a room-checked send: the two cannot be told apart from outside the room).
	BounceNotHere
	// BounceFull: the receiver cannot take more messages now (ErrUndeliverable).
	BounceFull
	// BounceBusy: a call invite found the callee in another call (ErrBusy).
	BounceBusy
	// BounceLost: the receiver ended with messages from this sender it never
	// confirmed; Body is how many, in decimal. Sent by the ending session itself.
	BounceLost
)

// Envelope is one message between two sessions, or from a session to a room. It
// is a plain value that can cross a network: strings and encoded bytes, nothing
// the receiver has to share with the sender.
type Envelope struct {
	Kind Kind
	// From is the sending session, where bounces go; "" wants no bounce.
	From string
	// To is the receiving session (Send); empty for a Broadcast.
	To string
	// Room is the room of a Broadcast, and of a Send with InRoom set: then the
	// receiver must be a member of Room, else the envelope bounces BounceNotHere.
	// One check at delivery, so that a move between a check and a send cannot
	// slip a message into the wrong room.
	Room   string
	InRoom bool
	// Ref is the sender's request reference (JSON), opaque to the router and
	// carried back in a bounce so that the sender can answer the request.
	Ref json.RawMessage
	// Body is the encoded message. Neither Send, Broadcast nor Deliver keeps it
	// after returning: an asynchronous router copies it, a session copies what it
	// queues. So a sender may reuse its buffer at once.
	Body []byte

	// Reason and Bounced are set on a bounce (Kind KindBounce): From and To are
	// then swapped relative to the envelope that failed, whose Kind was Bounced
	// and whose Body and Ref this one carries.
	Reason  Reason
	Bounced Kind
}

// Bounce is the envelope that tells e's sender why e did not arrive. A Router
// sends it to e.From when e.From is not empty and e is not a bounce itself.
func (e Envelope) Bounce(why Reason) Envelope {
	return Envelope{Kind: KindBounce, From: e.To, To: e.From, Room: e.Room, Ref: e.Ref, Body: e.Body,
		Reason: why, Bounced: e.Kind}
}

// BounceFor maps an Endpoint's Deliver error to the reason of its bounce.
func BounceFor(err error) Reason {
	switch {
	case errors.Is(err, ErrBusy):
		return BounceBusy
	case errors.Is(err, ErrUndeliverable):
		return BounceFull
	default:
		return BounceGone
	}
}

// Endpoint is a session as a Router sees it.
type Endpoint interface {
	// Deliver hands e to the session. It never blocks; it may call the Router
	// (a callee answers an invite), so a router calls it with no lock held. An
	// error (ErrNoSession, ErrUndeliverable, ErrBusy) makes the router bounce e
	// to its sender; errors on a bounce are dropped (a bounce never bounces).
	Deliver(e Envelope) error
}

// Router is the only way a session reaches another one: directory of sessions,
// room membership and delivery. NewLocalRouter serves one node; a router over a
// message bus (NATS) can span several, in its own package: everything here is
// values that encode to bytes.
//
// Send and Broadcast are asynchronous as far as the caller knows: they return
// nothing about the receivers, whose failures come back to the sender as a
// bounce (an Envelope of KindBounce delivered to From). Envelopes from one
// sender to one receiver arrive in the order they were sent.
//
// Methods never block on a session and are called without the hub's lock.
// Lock order: a session's handling lock, then the Hub's, then the router's,
// then a session's mu; a router holds no lock of its own while it calls
// Endpoint.Deliver.
type Router interface {
	// Register makes a local session reachable by id; Unregister forgets it and
	// removes it from its room.
	Register(id string, ep Endpoint)
	Unregister(id string)
	// Join moves m into room (leaving its previous room) and returns the other
	// members. ErrRoomFull when the room already has max members.
	Join(room string, m Member, max int) (others []Member, err error)
	// Members lists room (any order).
	Members(room string) []Member
	// Send delivers e to session e.To (room-checked when e.InRoom).
	Send(e Envelope)
	// Broadcast delivers e to every member of e.Room except e.From.
	Broadcast(e Envelope)
	// Rooms counts non-empty rooms (for metrics; a cluster may count its own node's).
	Rooms() int
}

// Directory maps resume tokens to sessions, so that a client whose link dropped
// finds its session again. NewLocalDirectory serves one node; a cluster
// implements it over shared storage. Methods may take a round trip: the hub
// never calls them with its lock held (a resume holds only its session's
// handling lock, so resumes of one session are serialized).
type Directory interface {
	// Add records token as the resume token of session id.
	Add(token, id string)
	// Lookup returns the session of token.
	Lookup(token string) (id string, ok bool)
	// Accept records that a resume with attempt (hello.attempt) of token is
	// taking place. It refuses (false) a stale attempt: one not zero and not
	// above the highest attempt accepted so far. Zero (clients that do not
	// count) is always accepted and changes nothing; so is an unknown token
	// (not stale: the caller finds its session gone).
	Accept(token string, attempt uint64) bool
	// Remove forgets token: its session has ended.
	Remove(token string)
}
