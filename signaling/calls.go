package signaling

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// A call is two halves, one in each session, that talk through the Router with
// control envelopes. Each side changes only its own half:
//
//	caller                         callee
//	call     → half{ringing}, invite →
//	                               ← ringing   (half{ringing}; or a bounce: busy, gone, not here, full)
//	                               ← accept    (callee's accept: half{active})
//	cancel / timeout / hangup →    ← decline / hangup
//
// The callee's side decides busy (it is the one that knows whether it is in a
// call); the caller's side owns the ring timer. An end (decline, cancel,
// timeout, hangup) clears the sender's half at once and the receiver's when it
// arrives, if the receiver still has that call with that peer: envelopes that
// cross (a cancel and an accept) end the call on both sides.
//
// Glare, two sessions calling each other at once: the call of the session
// with the smaller id goes on, the other caller hears busy for its own call and
// then the incoming call (see invited, PROTOCOL.md).

// half is one session's side of a call; guarded by its session's mu.
type half struct {
	id     string
	peer   string
	caller bool
	active bool
	// caller only:
	rung      bool            // the callee confirmed its phone rings (ringing sent to the client)
	ringUntil int64           // env.mono: when an unanswered call times out; static
	ref       json.RawMessage // the call request's ref, for ringing, busy and errors
	// invited: the invite has been handed to the Router. Until then an end
	// decided elsewhere (a glare, the ring timer) waits in after, and
	// handleCall sends it once the invite is on its way: an end must never
	// overtake its invite.
	invited bool
	after   *control
}

// endLocked decides the end c of h, s's caller half (s.mu held): it is sent
// at once (send true) unless the invite is not on its way yet.
func (h *half) endLocked(c control) (send bool) {
	if !h.invited {
		h.after = &c
		return false
	}
	return true
}

// Call control operations (control.Op).
const (
	opInvite  = "invite"  // caller → callee; Name is the caller's display name
	opRinging = "ringing" // callee → caller: the invite was taken
	opAccept  = "accept"  // callee → caller
	opDecline = "decline" // callee → caller
	opCancel  = "cancel"  // caller → callee
	opTimeout = "timeout" // caller → callee: the ring timer ran out
	opHangup  = "hangup"  // either way; Reason hangup or left
)

// control is the body of a KindControl envelope.
type control struct {
	Op     string `json:"op"`
	Call   string `json:"call"`
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// sendControl sends c to session to. Control is rare (a handful per call), so
// it is plain JSON.
func (s *session) sendControl(to string, c control) {
	b, _ := json.Marshal(c)
	s.e.router.Send(Envelope{Kind: KindControl, From: s.id, To: to, Body: b})
}

// callOver counts a caller half gone. Called after the end of the call was
// sent to the partner, if any: a call is counted until its end is on its way
// (and, through a synchronous router, has arrived).
func (e *env) callOver(h *half) {
	if h.caller {
		e.calls.Add(-1)
	}
}

// handleCall starts a call: the caller's half, then the invite, room-checked.
func (s *session) handleCall(r request) *wireError {
	m := r.m
	if m.To == s.id {
		return &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: m.To}
	}
	s.mu.Lock()
	if s.call != nil {
		id := s.call.id
		s.mu.Unlock()
		return errf(codeBusy, "you are already in call %q", id)
	}
	h := &half{id: m.Call, peer: m.To, caller: true, ref: m.Ref,
		ringUntil: s.e.mono(time.Now().Add(s.e.cfg.RingTimeout))}
	s.call = h
	room := s.room
	s.mu.Unlock()
	s.e.calls.Add(1)
	s.e.ring.add(h, s)
	b, _ := json.Marshal(control{Op: opInvite, Call: h.id, Name: s.name})
	s.e.router.Send(Envelope{Kind: KindControl, From: s.id, To: m.To, Room: room, InRoom: true, Ref: m.Ref, Body: b})
	s.mu.Lock()
	h.invited = true
	after := h.after
	s.mu.Unlock()
	if after != nil {
		s.sendControl(h.peer, *after)
	}
	return nil
}

func (s *session) handleAccept(r request) *wireError {
	return s.answer(r, func(h *half) (control, any, *wireError) {
		if h.active || h.caller {
			return control{}, nil, errf(codeNoSuchCall, "call %q is not ringing for you", h.id)
		}
		h.active = true
		return control{Op: opAccept, Call: h.id},
			wire.Accepted{Type: wire.TypeAccepted, Call: h.id, Peer: h.peer, Polite: true, Ref: r.m.Ref}, nil
	})
}

func (s *session) handleDecline(r request) *wireError {
	return s.answer(r, func(h *half) (control, any, *wireError) {
		if h.active || h.caller {
			return control{}, nil, errf(codeNoSuchCall, "call %q is not ringing for you", h.id)
		}
		return control{Op: opDecline, Call: h.id}, nil, nil
	})
}

func (s *session) handleCancel(r request) *wireError {
	return s.answer(r, func(h *half) (control, any, *wireError) {
		if h.active || !h.caller {
			return control{}, nil, errf(codeNoSuchCall, "call %q is not yours to cancel", h.id)
		}
		return control{Op: opCancel, Call: h.id}, nil, nil
	})
}

func (s *session) handleHangup(r request) *wireError {
	return s.answer(r, func(h *half) (control, any, *wireError) {
		return control{Op: opHangup, Call: h.id, Reason: wire.ReasonHangup}, nil, nil
	})
}

// answer runs one of the client's call actions on its half: step checks the
// half and returns what to tell the partner and the client. Every action but
// accept ends the call, so the half goes.
func (s *session) answer(r request, step func(h *half) (control, any, *wireError)) *wireError {
	s.mu.Lock()
	h := s.call
	if h == nil || h.id != r.m.Call {
		s.mu.Unlock()
		return errf(codeNoSuchCall, "you are not in call %q", r.m.Call)
	}
	c, reply, we := step(h)
	if we != nil {
		s.mu.Unlock()
		return we
	}
	if c.Op != opAccept {
		s.call = nil
	}
	if reply != nil {
		_ = s.enqueueLocked(outgoing{Value: reply})
	}
	s.mu.Unlock()
	s.sendControl(h.peer, c)
	if c.Op != opAccept {
		s.e.callOver(h)
	}
	return nil
}

// leaveCall ends s's call because s leaves its room; the partner hears why.
func (s *session) leaveCall() {
	s.mu.Lock()
	h := s.call
	s.call = nil
	s.mu.Unlock()
	if h != nil {
		s.sendControl(h.peer, control{Op: opHangup, Call: h.id, Reason: wire.ReasonLeft})
		s.e.callOver(h)
	}
}

// control applies call control from the partner (or a would-be caller) to s.
func (s *session) control(e Envelope) error {
	var c control
	if err := json.Unmarshal(e.Body, &c); err != nil {
		s.e.log.Error("bad call control", "peer", s.id, "from", e.From, "err", err)
		return nil
	}
	if c.Op == opInvite {
		return s.invited(e.From, c)
	}
	s.mu.Lock()
	h := s.call
	if s.gone && s.rep != nil && s.rep.moved {
		s.mu.Unlock()
		return ErrMoved
	}
	if s.gone || h == nil || h.id != c.Call || h.peer != e.From {
		// Not (or no longer) this call: its end crossed this envelope, and the
		// partner hears (or heard) that end too.
		s.mu.Unlock()
		return nil
	}
	var out any
	switch c.Op {
	case opRinging:
		if h.caller && !h.active && !h.rung {
			h.rung = true
			out = wire.Ringing{Type: wire.TypeRinging, Call: h.id, To: h.peer, Ref: h.ref}
		}
	case opAccept:
		if h.caller && !h.active {
			h.active = true
			if !h.rung { // the accept overtook the ringing: the client still hears both, in order
				h.rung = true
				_ = s.enqueueLocked(outgoing{Value: wire.Ringing{Type: wire.TypeRinging, Call: h.id, To: h.peer, Ref: h.ref}})
			}
			out = wire.Accepted{Type: wire.TypeAccepted, Call: h.id, Peer: h.peer, Polite: false}
		}
	case opDecline:
		if h.caller && !h.active {
			out = wire.CallEnded{Type: wire.TypeDeclined, Call: h.id, From: e.From}
		}
	case opCancel: // even when active: the callee's accept crossed the cancel
		if !h.caller {
			out = wire.CallEnded{Type: wire.TypeCancelled, Call: h.id, From: e.From}
		}
	case opTimeout: // even when active: the callee's accept crossed the timeout
		if !h.caller {
			out = wire.Timeout{Type: wire.TypeTimeout, Call: h.id}
		}
	case opHangup:
		out = wire.Hangup{Type: wire.TypeHangup, Call: h.id, From: e.From, Reason: c.Reason}
	}
	ended := out != nil && c.Op != opRinging && c.Op != opAccept
	if ended {
		s.call = nil
	}
	if out != nil {
		_ = s.enqueueLocked(outgoing{Value: out})
	}
	s.mu.Unlock()
	if ended {
		s.e.callOver(h)
	}
	return nil
}

// invited takes an invite: the callee's half and the client's call, or ErrBusy.
//
// Glare (s rings from, which rings s): the session with the smaller id keeps
// its call and refuses the other's invite as busy; the other one gives its own
// call up (its client hears busy for it) and takes the invite. Both sides apply
// the same rule, so the outcome does not depend on which invite arrives first.
func (s *session) invited(from string, c control) error {
	s.mu.Lock()
	if s.gone {
		defer s.mu.Unlock()
		return s.goneErrLocked()
	}
	var yielded *half
	if h := s.call; h != nil {
		if !h.caller || h.active || h.peer != from || s.id < from {
			s.mu.Unlock()
			return ErrBusy
		}
		s.call = nil
		if h.endLocked(control{Op: opCancel, Call: h.id}) {
			yielded = h
		}
		defer s.e.callOver(h)
		_ = s.enqueueLocked(outgoing{Value: wire.CallEnded{Type: wire.TypeBusy, Call: h.id, From: from, Ref: h.ref}})
	}
	msg := outgoing{Value: wire.Incoming{Type: wire.TypeCall, Call: c.Call, From: from, Name: c.Name}, From: from}
	err := s.enqueueLocked(msg)
	if err == nil {
		s.call = &half{id: c.Call, peer: from}
	}
	s.mu.Unlock()
	if yielded != nil {
		// Our invite is on its way to from, which normally refuses it (busy,
		// ignored here). Should from have ended its own call before it
		// arrives, it would ring there with no caller left: this cancel, sent
		// after the invite, ends it.
		s.sendControl(from, control{Op: opCancel, Call: yielded.id})
	}
	if err != nil {
		return err
	}
	s.sendControl(from, control{Op: opRinging, Call: c.Call})
	return nil
}

// callBounced handles control that did not arrive. Only an invite matters: the
// caller's half goes and the client hears why. Anything else was an end or an
// answer to a partner that is gone, whose own end reaches (or reached) s.
func (s *session) callBounced(e Envelope) {
	var c control
	if json.Unmarshal(e.Body, &c) != nil || c.Op != opInvite {
		return
	}
	s.mu.Lock()
	h := s.call
	if h == nil || !h.caller || h.active || h.id != c.Call || h.peer != e.From {
		s.mu.Unlock()
		return
	}
	s.call = nil
	var we *wireError
	switch e.Reason {
	case BounceBusy:
		_ = s.enqueueLocked(outgoing{Value: wire.CallEnded{Type: wire.TypeBusy, Call: h.id, From: h.peer, Ref: h.ref}})
	case BounceFull:
		we = &wireError{code: codeUndeliverable, msg: "callee cannot take more messages", to: h.peer}
	default:
		we = &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: h.peer}
	}
	s.mu.Unlock()
	s.e.callOver(h)
	if we != nil {
		s.pushError(h.ref, we)
	}
}

// ringSet holds caller halves waiting for an answer, for the ticker.
type ringSet struct {
	mu sync.Mutex
	m  map[*half]*session // guarded by mu
}

func (r *ringSet) add(h *half, s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[h] = s
}

// due takes out the halves whose ring time has passed; halves answered or
// ended meanwhile are taken out too, when their time comes.
func (r *ringSet) due(now int64) (out []*session, hs []*half) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h, s := range r.m {
		if now > h.ringUntil {
			delete(r.m, h)
			out, hs = append(out, s), append(hs, h)
		}
	}
	return out, hs
}

// ringTimeout ends h, s's call, if nobody answered it: both sides hear timeout.
func (s *session) ringTimeout(h *half) {
	s.mu.Lock()
	if s.call != h || h.active {
		s.mu.Unlock()
		return
	}
	s.call = nil
	_ = s.enqueueLocked(outgoing{Value: wire.Timeout{Type: wire.TypeTimeout, Call: h.id}})
	send := h.endLocked(control{Op: opTimeout, Call: h.id})
	s.mu.Unlock()
	if send {
		s.sendControl(h.peer, control{Op: opTimeout, Call: h.id})
	}
	s.e.callOver(h)
}
