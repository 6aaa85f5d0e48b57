package signaling

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// mintForHello mints the ICE servers a welcome carries. On failure it answers the
// hello with internal-error and reports false: the socket stays open for another
// hello, as PROTOCOL.md promises.
func (h *Hub) mintForHello(l *link, ref json.RawMessage, id string) ([]ICEServer, time.Time, bool) {
	servers, exp, err := h.cfg.ICE.ICEServers(h.ctx, id)
	if err != nil {
		h.log.Error("mint ice servers", "peer", id, "err", err)
		h.reply(l, ref, errf(codeInternal, "cannot issue ICE servers, retry later"))
		return nil, time.Time{}, false
	}
	h.st.credentialsIssued.Add(1)
	return servers, exp, true
}

// hello creates or resumes a session; false ends the link.
func (h *Hub) hello(l *link, m *inMsg) bool {
	var cl *claims
	if len(h.cfg.AuthSecret) > 0 {
		var err error
		if cl, err = verifyToken(h.cfg.AuthSecret, m.Token); err != nil {
			h.st.authRefused.Add(1)
			l.setReason(reasonUnauthorized)
			h.mu.Lock()
			h.kickLocked(l, websocket.StatusPolicyViolation, "unauthorized",
				errorMsg(codeUnauthorized, "invalid token: "+err.Error(), m.Ref))
			h.mu.Unlock()
			return false
		}
	}
	if f, ok := h.router.(interface{ Fenced() bool }); ok && f.Fenced() {
		// Cut off from its cluster: whatever this node starts or resumes
		// lives on the other nodes already.
		l.setReason(reasonShutdown)
		h.mu.Lock()
		h.kickLocked(l, websocket.StatusServiceRestart, "node cut off from its cluster",
			errorMsg(codeServerFull, "this node is cut off from its cluster, connect again", m.Ref))
		h.mu.Unlock()
		return false
	}
	if m.Resume != "" {
		return h.resume(l, m, cl)
	}
	room := ""
	switch {
	case m.Room != nil:
		room = *m.Room
	case cl != nil:
		room = cl.Room
	}
	claim := ""
	if cl != nil {
		claim = cl.Room
	}
	if we := h.roomAllowed(claim, room); we != nil {
		h.reply(l, m.Ref, we)
		return true
	}
	if h.creds != nil && !h.creds.allow(l.ip, time.Now()) {
		h.st.rateLimited.Add(1)
		h.reply(l, m.Ref, errf(codeRateLimited, "too many new sessions from your address, retry later"))
		return true
	}

	s := h.newSession(l, m.Name, room, cl)
	servers, exp, ok := h.mintForHello(l, m.Ref, s.id)
	if !ok {
		return true
	}
	if we := h.startSession(l, s, m, servers, time.Now(), exp, cl); we != nil {
		h.reply(l, m.Ref, we)
		return true
	}
	h.log.Debug("session started", "peer", s.id, "room", room, "remote", l.ip)
	return true
}

func (h *Hub) newSession(l *link, name, room string, cl *claims) *session {
	s := &session{
		e:      h.env,
		id:     newID(16),
		resume: newID(24),
		name:   name,
		net:    netKey(l.ip),
		room:   room,
	}
	if cl != nil {
		s.grant = &grant{sub: cl.Subject, room: cl.Room}
	}
	if h.keeper != nil {
		s.rep = &replica{}
	}
	return s
}

// startSession registers s, puts it in its room, announces it and attaches it
// to l. The Router is called without Hub.mu. The room hears of s before s gets
// its welcome, so that whatever s sends next reaches peers that know it.
func (h *Hub) startSession(l *link, s *session, m *inMsg, servers []ICEServer, now, exp time.Time, cl *claims) *wireError {
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		return errf(codeServerFull, "server is restarting")
	}
	h.router.Register(s.id, s)
	others, err := h.router.Join(s.room, s.member(), h.cfg.MaxRoomSize)
	if err != nil {
		h.router.Unregister(s.id)
		return errf(codeRoomFull, "room %q is full", s.room)
	}
	s.announce(s.room, others, peerJoined(s))
	h.dir.Add(s.resume, s.id)
	s.replicate()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		s.end(wire.ReasonLeft, false) // the room heard of s: it hears it left
		return errf(codeServerFull, "server is restarting")
	}
	h.sessions[s.id] = s
	s.refreshAt = h.refreshTime(now, exp)
	h.grantLocked(s, cl, now)
	s.mu.Lock()
	h.attachLocked(s, l)
	l.first = wire.Welcome{Type: wire.TypeWelcome, ID: s.id, Resume: s.resume, ICEServers: servers,
		TTL: ttlSeconds(now, exp), Heartbeat: h.heartbeat, Room: s.room,
		Peers: s.peerList(others), Ref: m.Ref}
	s.startWriterLocked()
	s.mu.Unlock()
	h.mu.Unlock()
	return nil
}

// grantLocked keeps cl, the token of s's hello (fresh or resume), for renewal
// when it is renewable: its successor is pushed at RefreshAt of its lifetime.
func (h *Hub) grantLocked(s *session, cl *claims, now time.Time) {
	if s.grant == nil || cl == nil || !cl.Renew || cl.ExpiresAt == nil {
		return
	}
	s.grant.renew = cl
	s.grant.renewAt = h.refreshTime(now, cl.ExpiresAt.Time)
}

// resume reattaches a session in its grace (or still attached elsewhere) to l.
// A hello whose attempt is not above one already accepted for the session is
// stale (it was overtaken by a newer socket of the same client): it is closed
// with 4001 and the live link stays.
func (h *Hub) resume(l *link, m *inMsg, cl *claims) bool {
	fail := func(code websocket.StatusCode, r reason, why string) bool {
		l.setReason(r)
		h.kickLocked(l, code, why, nil)
		return false
	}
	var s *session
	id, ok := h.dir.Lookup(m.Resume)
	if ok {
		h.mu.Lock()
		s = h.sessions[id]
		h.mu.Unlock()
	}
	if s == nil && ok && h.keeper != nil {
		// On another node (a cluster's directory knows every node's tokens):
		// take it over from there.
		var err error
		switch s, err = h.claim(id, m.Attempt); {
		case errors.Is(err, ErrStale):
			h.st.staleResumes.Add(1)
			h.mu.Lock()
			defer h.mu.Unlock()
			return fail(closeReplaced, reasonReplaced, "a newer connection resumed this session")
		case err != nil:
			h.log.Info("resume from another node failed", "peer", id, "err", err)
		case !tokenMatch(s.resume, m.Resume):
			s = nil // cannot happen unless the directory lies: never trust it with a session
		}
	}
	if s == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		return fail(closeResumeFailed, reasonResumeFailed, "resume unknown or expired")
	}
	servers, exp, ok := h.mintForHello(l, m.Ref, s.id)
	if !ok {
		return true
	}
	now := time.Now()

	s.handling.Lock() // wait for a message still being handled on the old link
	defer s.handling.Unlock()
	// The room cannot change while s.handling is held: ask the router first,
	// without Hub.mu.
	s.mu.Lock()
	room := s.room
	s.mu.Unlock()
	peers := s.peerList(h.router.Members(room))

	if cl != nil && cl.Subject != s.subject() {
		h.mu.Lock()
		defer h.mu.Unlock()
		return fail(closeResumeFailed, reasonResumeFailed, "resume unknown or expired")
	}
	// The attempt is checked (and recorded) before Hub.mu: a cluster's
	// Directory may take a round trip. s.handling orders resumes of s.
	if !h.dir.Accept(s.resume, m.Attempt) {
		h.st.staleResumes.Add(1)
		h.mu.Lock()
		defer h.mu.Unlock()
		return fail(closeReplaced, reasonReplaced, "a newer connection resumed this session")
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return false
	}
	if h.sessions[s.id] != s || s.ended {
		defer h.mu.Unlock()
		return fail(closeResumeFailed, reasonResumeFailed, "resume unknown or expired")
	}
	// Take the old link away first: from here its writer can no longer move s.sent.
	old := s.link
	h.detachLocked(s)
	if old != nil {
		old.setReason(reasonReplaced)
		h.kickLocked(old, closeReplaced, "session resumed elsewhere", nil)
	}
	s.mu.Lock()
	ack := min(m.Ack, s.seq)
	lost := s.rep != nil && s.rep.lost
	if lost && ack < s.rep.base {
		ack = s.rep.base // what the client missed died with its node: it is told (welcome.lost)
	}
	if ack < s.forgotten || ack < s.acked {
		s.mu.Unlock()
		ended := h.endLocked(s)
		fail(closeResumeFailed, reasonResumeFailed, "resume is behind the replay window")
		h.mu.Unlock()
		if ended {
			s.end(wire.ReasonLeft, false)
		}
		return false
	}
	s.ackLocked(ack)
	s.sent = ack
	h.st.replayed.Add(s.seq - ack)
	h.attachLocked(s, l)
	l.first = wire.Welcome{Type: wire.TypeWelcome, ID: s.id, Resume: s.resume, Resumed: true, ICEServers: servers,
		TTL: ttlSeconds(now, exp), Heartbeat: h.heartbeat, Room: room,
		Peers: peers, Ack: s.inSeq, Lost: lost, Ref: m.Ref}
	if lost {
		s.rep.lost = false
	}
	s.startWriterLocked()
	s.mu.Unlock()
	s.refreshAt = h.refreshTime(now, exp)
	s.graceUntil = 0
	h.grantLocked(s, cl, now)
	h.mu.Unlock()
	h.st.resumed.Add(1)
	h.log.Debug("session resumed", "peer", s.id, "room", room, "remote", l.ip)
	return true
}

// attachLocked makes l the link of s (s.mu held by the caller).
func (h *Hub) attachLocked(s *session, l *link) {
	s.link = l
	l.s = s
	h.unpendLocked(l)
	delete(h.away, s)
	l.liveIdx = int32(len(h.live))
	h.live = append(h.live, l)
}

// detachLocked takes s's link away from it (and out of the ping scan).
func (h *Hub) detachLocked(s *session) {
	l := s.link
	if l == nil {
		return
	}
	s.mu.Lock()
	s.link = nil
	s.mu.Unlock()
	last := len(h.live) - 1
	h.live[l.liveIdx] = h.live[last]
	h.live[l.liveIdx].liveIdx = l.liveIdx
	h.live[last] = nil
	h.live = h.live[:last]
	l.liveIdx = -1
}

// endLocked takes s out of the hub (sessions, grace set) and cuts its link;
// false if it was already. The caller then calls s.end without Hub.mu, which
// removes s from the Directory and tells the others through the Router.
func (h *Hub) endLocked(s *session) bool {
	if s.ended {
		return false
	}
	s.ended = true
	delete(h.sessions, s.id)
	delete(h.away, s)
	if l := s.link; l != nil {
		h.detachLocked(s)
		l.setReason(reasonResumeFailed)
		h.kickLocked(l, closeResumeFailed, "session ended", nil)
	}
	return true
}
