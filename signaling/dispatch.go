package signaling

import (
	"encoding/json"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// request is one client message as its handler sees it. Passed by value: it
// stays on the stack, so dispatch allocates nothing.
type request struct {
	l    *link
	m    *inMsg
	room string   // the session's room when the message was taken
	in   *inbound // buffers a handler may use (in.out)
}

// handler runs one type of client message for its session; a non-nil error is
// answered to the client (pushError).
type handler func(s *session, r request) *wireError

// handlers is the table by message type; built once in New.
type handlers map[string]handler

func newHandlers() handlers {
	return handlers{
		"ping":    func(*session, request) *wireError { return nil }, // answered in handle: no lock but the session's
		"hello":   func(*session, request) *wireError { return errf(codeBadMessage, "hello already done") },
		"signal":  (*session).handleSignal,
		"join":    (*session).handleJoin,
		"call":    (*session).handleCall,
		"accept":  (*session).handleAccept,
		"decline": (*session).handleDecline,
		"cancel":  (*session).handleCancel,
		"hangup":  (*session).handleHangup,
	}
}

// reply answers a client request with an error: sequenced for a session,
// direct before hello.
func (h *Hub) reply(l *link, ref json.RawMessage, we *wireError) {
	if l.s != nil {
		l.s.pushError(ref, we)
		return
	}
	h.writeDirect(l, wire.Error{Type: wire.TypeError, Code: we.code, Message: we.msg, To: we.to, Ref: ref}, h.cfg.WriteTimeout)
}

// handle processes one client frame, in.buf, decoded into in.m (see decodeInto);
// false ends the link. Nothing may keep in.m, in.buf or in.m.Data after it returns.
func (h *Hub) handle(l *link, in *inbound) bool {
	m := &in.m
	if err := decodeInto(m, in.buf, &in.scratch, &in.dec); err != nil {
		h.reply(l, nil, errf(codeBadMessage, "%v", err))
		return true
	}
	s := l.s
	if s == nil {
		if we := m.validate(); we != nil {
			h.reply(l, m.Ref, we)
			return true
		}
		if m.Type == "hello" {
			return h.hello(l, m)
		}
		h.reply(l, m.Ref, errf(codeHelloRequired, "send hello first"))
		return true
	}

	// s.handling makes dedupe and the handler one step against a resume, which
	// takes it too: a message read late from a dead link is handled before
	// anything the client resends on its new link, or not at all.
	s.handling.Lock()
	defer s.handling.Unlock()

	// Session-local bookkeeping under s.mu alone: the hot path (signal, ping)
	// never takes Hub.mu. Dedupe and ack come first: a message answered with an
	// error is processed too.
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		return false // replaced by a resume on another connection
	}
	if m.Seq != 0 {
		if m.Seq <= s.inSeq {
			s.mu.Unlock()
			return true // duplicate after a resume: processed already
		}
		s.inSeq = m.Seq
	}
	if m.Ack != 0 {
		s.ackLocked(min(m.Ack, s.sent)) // a client cannot confirm what was never written
	}
	allowed := s.allowLocked()
	room := s.room
	if allowed && m.Type == "ping" {
		l.pongPending++
		l.pongAck = s.inSeq
		s.startWriterLocked()
	}
	s.mu.Unlock()

	if !allowed {
		h.st.rateLimited.Add(1)
		s.pushError(m.Ref, errf(codeRateLimited, "too many messages, slow down"))
		return true
	}
	if we := m.validate(); we != nil {
		s.pushError(m.Ref, we)
		return true
	}
	if we := h.handlers[m.Type](s, request{l: l, m: m, room: room, in: in}); we != nil {
		s.pushError(m.Ref, we)
	}
	if m.Type != "signal" && m.Type != "ping" {
		s.replicate() // a call or a room may have changed; signals and pings change neither
	}
	return true
}

// handleSignal relays a signal to one peer of the room, room-checked by the
// Router, or to the whole room. The body is encoded into the inbound's buffer:
// the Router does not keep it, each receiver copies it into its queue.
func (s *session) handleSignal(r request) *wireError {
	m := r.m
	if m.To == s.id {
		return &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: m.To}
	}
	r.in.out = appendSignalBody(r.in.out[:0], s.id, m.Data)
	e := Envelope{Kind: KindClient, From: s.id, Room: r.room, Ref: m.Ref, Body: r.in.out}
	if m.To == "*" {
		s.e.router.Broadcast(e)
		return nil
	}
	e.To, e.InRoom = m.To, true
	s.e.router.Send(e)
	return nil
}
