package signaling

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// session is one peer: id, name, room, its half of a call and its numbered
// outgoing messages. It outlives its links (resume). It is the Endpoint the
// Router delivers to, and owns the handlers of its client's messages
// (dispatch.go). Kept small: a hub holds tens of thousands of them.
type session struct {
	// Static after newSession.
	e      *env
	id     string
	resume string
	name   string
	net    netip.Addr // netKey of the client IP at hello (for nearby)

	// handling is held while one client message of this session is processed and
	// while a resume swaps the link: see Hub.handle. Taken before Hub.mu.
	handling sync.Mutex

	// guarded by Hub.mu
	grant      *grant // from the hello's token; nil in open mode
	graceUntil int64  // env.mono; set while detached
	refreshAt  int64  // env.mono: when to push fresh ICE servers; 0: never
	refreshing bool
	ended      bool // out of the hub's sets: ending or ended (see Hub.endLocked)

	// guarded by mu; link is written with Hub.mu held as well, so holding
	// either one is enough to read it. room and call are written only by the
	// session's own handlers (under handling) and by end.
	mu        sync.Mutex
	room      string
	call      *half         // this session's half of its call; nil: none
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
	rep       *replica // cluster mode only (handoff.go)
}

// grant is what a session keeps of its JWT. It sits behind a pointer so that
// sessions in open mode (no token) do not carry it.
type grant struct {
	sub  string // JWT subject; static
	room string // JWT room claim ("" = any room); static

	// guarded by Hub.mu: a renewable token (rnw claim) and when to push its successor
	renew    *claims // nil: not renewable
	renewAt  int64   // env.mono; 0: never
	renewing bool
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
		s.limiter = rate.NewLimiter(rate.Limit(s.e.cfg.MessageRate), s.e.cfg.MessageBurst)
	}
	return s.limiter.Allow()
}

// outgoing is one server→client message in a session's queue. Exactly one of
// Body (an encoded JSON object starting with `{"type":`) and Value (a message
// of this session's own, marshaled by the writer outside every lock) is set.
// From is the sending session of a delivered message, told when it is lost.
type outgoing struct {
	Body  []byte
	Value any
	From  string

	// pooled is set when Body is *pooled, a buffer of env.bodies: it goes back
	// once the client has acknowledged the message.
	pooled *[]byte
}

type queued struct {
	seq uint64
	msg outgoing
}

// valueCost is what a message carrying a Value (not yet encoded) counts towards
// ReplayBytes: those are the hub's own small messages (errors, call events,
// joined with at most MaxRoomSize peers, ice-servers, token), a few hundred bytes.
const valueCost = 512

func (m outgoing) cost() int {
	if m.Body != nil {
		return len(m.Body)
	}
	return valueCost
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

// Deliver takes an envelope from the Router (Endpoint). A client message is
// copied into a pooled buffer and queued; call control and bounces are turned
// into this session's state and its client's messages.
func (s *session) Deliver(e Envelope) error {
	switch e.Kind {
	case KindClient:
		p := s.e.bodies.Get().(*[]byte)
		*p = append((*p)[:0], e.Body...)
		m := outgoing{Body: *p, From: e.From, pooled: p}
		s.mu.Lock()
		err := s.enqueueLocked(m)
		if err == nil && s.e.keeper != nil {
			s.replicateLocked(s.e.keeper, false) // its numbering may have passed the kept bound
		}
		s.mu.Unlock()
		if err != nil {
			s.e.putBody(m)
		}
		return err
	case KindControl:
		err := s.control(e)
		s.replicate()
		return err
	case KindBounce:
		s.mu.Lock()
		moved := s.rep != nil && s.rep.moved
		s.mu.Unlock()
		if moved {
			return ErrMoved
		}
		s.bounced(e)
		s.replicate()
	}
	return nil
}

// goneErrLocked is what a delivery to a gone session gets: ErrMoved when it
// moved to another node (the router delivers there), else ErrNoSession.
func (s *session) goneErrLocked() error {
	if s.rep != nil && s.rep.moved {
		return ErrMoved
	}
	return ErrNoSession
}

// push queues v, a message of the session's own, for its client.
func (s *session) push(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enqueueLocked(outgoing{Value: v})
}

// pushError answers the client with an error. It is the one place mapping a
// session's errors to the wire.
func (s *session) pushError(ref json.RawMessage, we *wireError) {
	if we.code == codeUndeliverable {
		s.e.st.undeliverable.Add(1)
	}
	_ = s.push(wire.Error{Type: wire.TypeError, Code: we.code, Message: we.msg, To: we.to, Ref: ref})
}

// bounced turns an envelope that did not arrive into the protocol's error.
func (s *session) bounced(e Envelope) {
	if e.Bounced == KindControl {
		s.callBounced(e)
		return
	}
	var we *wireError
	switch e.Reason {
	case BounceGone:
		we = &wireError{code: codePeerUnavailable, msg: "peer is gone", to: e.From}
	case BounceNotHere:
		we = &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: e.From}
	case BounceFull, BounceBusy:
		we = &wireError{code: codeUndeliverable, msg: "recipient cannot take more messages", to: e.From}
	case BounceLost:
		n, err := strconv.ParseUint(string(e.Body), 10, 32)
		if err != nil || n == 0 {
			return
		}
		s.e.st.undeliverable.Add(n - 1) // pushError counts one
		we = &wireError{code: codeUndeliverable, to: e.From,
			msg: fmt.Sprintf("%d message(s) were not delivered: the peer left", n)}
		e.Ref = nil
	default:
		return
	}
	s.pushError(e.Ref, we)
}

// enqueueLocked numbers m and queues it for s. It never blocks: a link that falls
// more than SendQueue behind is cut (slow consumer) and the session waits in its
// grace with everything kept; only a full replay window of unwritten messages
// refuses.
func (s *session) enqueueLocked(m outgoing) error {
	if s.gone {
		return s.goneErrLocked()
	}
	cfg := &s.e.cfg
	size := m.cost()
	for len(s.queue) > 0 && (len(s.queue) >= cfg.ReplayWindow || s.qbytes+size > cfg.ReplayBytes) {
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
		s.e.putBody(s.queue[0].msg)
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
	if s.seq-s.sent > uint64(cfg.SendQueue) {
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
		s.e.st.slowConsumers.Add(1)
		s.e.wg.Go(func() { l.c.CloseNow() })
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
		s.e.putBody(s.queue[i].msg) // written (n <= sent), so no writer reads it any more
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
	s.e.run(func() { s.writeLoop(l) })
}

// next picks what the writer sends next on l: welcome, pong, then messages in seq
// order. A queued body is framed into *buf here, under s.mu: once the lock is
// released an ack may give a pooled body back (see outgoing.pooled). A Value comes
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
		return wire.Pong{Type: wire.TypePong, Ack: l.pongAck}, nil, 0, true
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
	e := s.e
	// buf frames sequenced messages; pooled because a writer lives for one burst
	// (an idle session has none), so its own buffer would be garbage every time.
	buf := e.seqBufs.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledFrame {
			e.seqBufs.Put(buf)
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
				e.log.Error("encode", "peer", s.id, "err", err)
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
		e.st.messagesOut.Add(1)
		if seq != 0 {
			s.mu.Lock()
			if s.link == l && seq > s.sent {
				s.sent = seq
			}
			s.mu.Unlock()
		}
	}
}

// end ends s for good, after Hub.endLocked took it out of the hub's sets: the
// directory and the router forget it, its call partner hears a hangup, its room peer-left, and
// each sender of messages it never confirmed one BounceLost saying how many.
//
// Unconfirmed means above the client's ack, except after a goodbye close
// (graceful): then what was written before it counts as delivered.
func (s *session) end(why string, graceful bool) {
	s.e.dir.Remove(s.resume)
	r := s.e.router
	r.Unregister(s.id) // from here on, envelopes to s bounce BounceGone
	s.mu.Lock()
	s.gone = true
	room, c := s.room, s.call
	s.call = nil
	confirmed := s.acked
	if graceful {
		confirmed = max(confirmed, s.sent)
	}
	var lost map[string]uint64
	for _, q := range s.queue {
		if q.seq > confirmed && q.msg.From != "" {
			if lost == nil {
				lost = map[string]uint64{}
			}
			lost[q.msg.From]++
		}
	}
	s.queue, s.qbytes = nil, 0
	s.mu.Unlock()
	if c != nil {
		s.sendControl(c.peer, control{Op: opHangup, Call: c.id, Reason: wire.ReasonLeft})
		s.e.callOver(c)
	}
	r.Broadcast(Envelope{Kind: KindClient, Room: room, Body: peerLeftBody(s.id, why)})
	for from, n := range lost {
		r.Send(Envelope{Kind: KindBounce, From: s.id, To: from, Reason: BounceLost, Bounced: KindClient,
			Body: strconv.AppendUint(nil, n, 10)})
	}
	s.e.log.Debug("session ended", "peer", s.id, "room", room, "reason", why)
}
