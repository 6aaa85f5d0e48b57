package signaling

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// session is one peer: id, name, room, call and its numbered outgoing messages. It
// outlives its links (resume). Kept small: a hub holds tens of thousands of them.
type session struct {
	// Static after newSession.
	h      *Hub
	id     string
	resume string
	name   string
	grant  *grant     // from the hello's token; nil in open mode
	net    netip.Addr // netKey of the client IP at hello (for nearby)

	// handling is held while one client message of this session is processed and
	// while a resume swaps the link: see Hub.handle. Taken before Hub.mu.
	handling sync.Mutex

	// room is written with Hub.mu and mu held: either is enough to read it.
	room string

	// guarded by Hub.mu
	call       *call
	graceUntil int64 // Hub.mono; set while detached
	refreshAt  int64 // Hub.mono: when to push fresh ICE servers; 0: never
	refreshing bool

	// guarded by mu; link is written with Hub.mu held as well, so holding
	// either one is enough to read it.
	mu        sync.Mutex
	inSeq     uint64        // last processed client seq
	limiter   *rate.Limiter // nil until the first message after hello (see allowLocked)
	link      *link         // nil while in resume grace
	gone      bool
	seq       uint64   // last seq assigned
	sent      uint64   // last seq written on the current (or last) link
	acked     uint64   // last seq the client confirmed
	forgotten uint64   // last seq dropped from the window unconfirmed
	queue     []queued // unconfirmed messages, by seq, contiguous
	qbytes    int      // sum of cost() over queue (Config.ReplayBytes)
}

// grant is what a session keeps of its JWT. It sits behind a pointer so that
// sessions in open mode (no token) do not carry two empty strings each.
type grant struct {
	sub  string // JWT subject
	room string // JWT room claim ("" = any room)
}

// subject is the JWT subject of s, "" in open mode.
func (s *session) subject() string {
	if s.grant == nil {
		return ""
	}
	return s.grant.sub
}

// roomClaim is the JWT room claim of s, "" (any room) in open mode.
func (s *session) roomClaim() string {
	if s.grant == nil {
		return ""
	}
	return s.grant.room
}

// allowLocked spends one token of the session's message rate limit (s.mu held).
// The limiter is made on first use: most sessions sit idle after their hello,
// and a fresh limiter starts with a full burst either way, so creating it late
// changes nothing a client can see.
func (s *session) allowLocked() bool {
	if s.limiter == nil {
		s.limiter = rate.NewLimiter(rate.Limit(s.h.cfg.MessageRate), s.h.cfg.MessageBurst)
	}
	return s.limiter.Allow()
}

type queued struct {
	seq uint64
	msg Message
}

// valueCost is what a Message carrying a Value (not yet encoded) counts towards
// ReplayBytes: those are the hub's own small messages (errors, presence, call
// events, joined with at most MaxRoomSize peers, ice-servers), a few hundred bytes.
const valueCost = 512

func (m Message) cost() int {
	if m.Body != nil {
		return len(m.Body)
	}
	return valueCost
}

func (h *Hub) newSession(l *link, name, room string, cl *claims) *session {
	s := &session{
		h:      h,
		id:     newID(16),
		resume: newID(24),
		name:   name,
		net:    netKey(l.ip),
		room:   room,
	}
	if cl != nil {
		s.grant = &grant{sub: cl.Subject, room: cl.Room}
	}
	return s
}

func (s *session) member() Member { return Member{ID: s.id, Name: s.name, Net: s.net} }

// peerList renders members as s sees them (nearby relative to s).
func (s *session) peerList(ms []Member) []peerInfo {
	out := make([]peerInfo, 0, len(ms))
	for _, m := range ms {
		if m.ID == s.id {
			continue
		}
		out = append(out, peerInfo{ID: m.ID, Name: m.Name, Nearby: m.Net.IsValid() && m.Net == s.net})
	}
	return out
}

// Deliver numbers m and queues it for s. It never blocks: a link that falls more
// than SendQueue behind is cut (slow consumer) and the session waits in its grace
// with everything kept; only a full replay window of unwritten messages refuses.
func (s *session) Deliver(m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return ErrNoSession
	}
	size := m.cost()
	for len(s.queue) > 0 && (len(s.queue) >= s.h.cfg.ReplayWindow || s.qbytes+size > s.h.cfg.ReplayBytes) {
		if s.queue[0].seq > s.sent {
			// The window is full of messages the client has not even received: an
			// attached link is not keeping up (cut it into its grace, like the
			// SendQueue bound); either way this one is refused, not dropped.
			if l := s.link; l != nil {
				s.slowLocked(l)
			}
			return ErrUndeliverable
		}
		// The oldest was written but never acked: forget it (a resume behind it fails).
		s.forgotten = s.queue[0].seq
		s.qbytes -= s.queue[0].msg.cost()
		s.h.putBody(s.queue[0].msg)
		s.queue[0] = queued{}
		s.queue = s.queue[1:]
	}
	s.seq++
	s.queue = append(s.queue, queued{seq: s.seq, msg: m})
	s.qbytes += size
	l := s.link
	if l == nil {
		return nil
	}
	if s.seq-s.sent > uint64(s.h.cfg.SendQueue) {
		s.slowLocked(l)
		return nil
	}
	s.startWriterLocked()
	return nil
}

// slowLocked cuts l, s's link, as a slow consumer; the reader moves s into its grace.
func (s *session) slowLocked(l *link) {
	if !l.kicked.Load() && l.why.Load() == 0 {
		l.setReason(reasonSlowConsumer)
		s.h.st.slowConsumers.Add(1)
		s.h.wg.Go(func() { l.c.CloseNow() })
	}
}

// keptQueue is the largest queue backing array (in entries, 64 bytes each) an
// emptied queue keeps: during a call's trickle each relayed signal is acked by the
// client's next message, so one or two entries are in flight and keeping them
// saves an allocation per relayed message; bigger arrays go back while idle.
const keptQueue = 2

func (s *session) ackLocked(n uint64) {
	if n <= s.acked {
		return
	}
	s.acked = n
	i := 0
	for i < len(s.queue) && s.queue[i].seq <= n {
		s.qbytes -= s.queue[i].msg.cost()
		s.h.putBody(s.queue[i].msg) // written (n <= sent), so no writer reads it any more
		s.queue[i] = queued{}
		i++
	}
	if i < len(s.queue) {
		s.queue = s.queue[i:]
		return
	}
	s.qbytes = 0
	if cap(s.queue) <= keptQueue {
		s.queue = s.queue[:0] // from the array's start: the next messages fit again
	} else {
		s.queue = nil // give a grown backing array back while idle
	}
}

// startWriterLocked starts the link's writer unless it runs already.
func (s *session) startWriterLocked() {
	l := s.link
	if l == nil || l.writing || l.kicked.Load() || l.why.Load() != 0 {
		return
	}
	l.writing = true
	s.h.run(func() { s.writeLoop(l) })
}

// next picks what the writer sends next on l: welcome, pong, then messages in seq
// order. A queued body is framed into *buf here, under s.mu: once the lock is
// released an ack may give a pooled body back (see Message.pooled). A Value comes
// back unencoded (out nil), to be marshaled outside the lock.
func (s *session) next(l *link, buf *[]byte) (v any, out []byte, seq uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.link != l {
		return nil, nil, 0, false
	}
	switch {
	case l.first != nil:
		v, l.first = l.first, nil
		return v, nil, 0, true
	case l.pongPending > 0:
		l.pongPending--
		ack := l.pongAck
		return outMsg{Type: "pong", Ack: &ack}, nil, 0, true
	}
	if len(s.queue) > 0 {
		if i := s.sent + 1 - s.queue[0].seq; s.sent+1 >= s.queue[0].seq && i < uint64(len(s.queue)) {
			q := s.queue[i]
			if q.msg.Body == nil {
				return q.msg.Value, nil, q.seq, true
			}
			*buf = withSeq((*buf)[:0], q.seq, q.msg.Body)
			return nil, *buf, q.seq, true
		}
	}
	l.writing = false
	return nil, nil, 0, false
}

// writeLoop is l's writer goroutine. It runs while there is something to write and
// exits when the queue is empty (an idle session has no writer), when the link is
// replaced, or on a write error (then it cuts the link; the reader reports it).
func (s *session) writeLoop(l *link) {
	h := s.h
	// buf frames sequenced messages; pooled because a writer lives for one burst
	// (an idle session has none), so its own buffer would be garbage every time.
	buf := h.seqBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledFrame {
			h.seqBufs.Put(buf)
		}
	}()
	for {
		v, out, seq, ok := s.next(l, buf)
		if !ok {
			return
		}
		if out == nil {
			body, err := json.Marshal(v)
			if err != nil {
				h.log.Error("encode", "peer", s.id, "err", err)
				body = []byte(`{"type":"error","code":"internal-error","message":"unencodable message"}`)
			}
			out = body
			if seq != 0 {
				*buf = withSeq((*buf)[:0], seq, body)
				out = *buf
			}
		}
		// No context deadline: coder/websocket keeps a write's context until the
		// next write, which would pin a timer and a context to every idle session.
		// The ticker enforces WriteTimeout through writeSince instead.
		l.writeSince.Store(time.Now().UnixNano())
		err := l.c.Write(context.Background(), websocket.MessageText, out)
		l.writeSince.Store(0)
		if err != nil {
			l.setReason(reasonWriteError) // l.writing stays set: nothing more goes to this link
			if !l.kicked.Load() {
				l.c.CloseNow()
			}
			return
		}
		h.st.messagesOut.Add(1)
		if seq != 0 {
			s.mu.Lock()
			if s.link == l && seq > s.sent {
				s.sent = seq
			}
			s.mu.Unlock()
		}
	}
}
