package signaling

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// Close codes (PROTOCOL.md, "Close codes").
const (
	closeReplaced     websocket.StatusCode = wire.CloseReplaced
	closeResumeFailed websocket.StatusCode = wire.CloseResumeFailed
)

// closeWait bounds the close handshake of a kicked link before its socket is cut: the close
// frame is already written by then, which is all a client needs to read the code;
// coder/websocket would otherwise wait up to 5 s + 5 s for the peer.
const closeWait = 2 * time.Second

// maxPreHello is how many messages (hellos that failed included) a connection may
// send without getting its welcome before it is closed: a real client's first
// message is its hello, retried a few times at most; more is a scanner.
const maxPreHello = 8

// reason says why a link ended. Every disconnect has one.
type reason int32

const (
	reasonNone reason = iota
	reasonClosed
	reasonReadError
	reasonWriteError
	reasonPongTimeout
	reasonSlowConsumer
	reasonTooLarge
	reasonHelloTimeout
	reasonUnauthorized
	reasonPolicy
	reasonReplaced
	reasonResumeFailed
	reasonServerFull
	reasonShutdown
	numReasons
)

func (r reason) String() string {
	return [...]string{"none", "closed", "read-error", "write-error", "pong-timeout",
		"slow-consumer", "too-large", "hello-timeout", "unauthorized", "policy",
		"replaced", "resume-failed", "server-full", "shutdown"}[r]
}

// link is one WebSocket connection, before or after its hello.
type link struct {
	c  *websocket.Conn // static
	nc net.Conn        // static: the hijacked socket under c
	ip netip.Addr      // static: client IP (never sent to anyone)

	// Field order and widths keep link in the 144-byte size class: a hub holds one
	// per idle session, and every byte is paid about twice (GC headroom).
	why    atomic.Int32 // reason; first one set wins
	kicked atomic.Bool  // a close with a code is under way: don't CloseNow over it
	bye    atomic.Bool  // the client closed with 1000/1001: end the session now
	// nextPing (unix ns) and pinging are set by the ticker and the ping in flight.
	pinging  atomic.Bool
	nextPing atomic.Int64
	// writeSince is when the writer's current write started (unix ns), 0 if none.
	writeSince atomic.Int64

	// guarded by Hub.mu
	helloBy int64 // env.mono

	// owned by the reader goroutine and the handler it waits for (written under
	// Hub.mu too, read by the ticker)
	s        *session
	preHello int32 // at most maxPreHello+1
	liveIdx  int32 // guarded by Hub.mu: index in Hub.live (< MaxSessions), -1 if not there

	// guarded by s.mu once attached
	writing     bool // a writer goroutine is running for this link
	first       any  // welcome, written before anything sequenced
	pongPending int  // pongs owed, one per ping
	pongAck     uint64
}

func (l *link) setReason(r reason) { l.why.CompareAndSwap(0, int32(r)) }

// ServeHTTP upgrades GET /ws to a WebSocket and runs the connection. It returns as
// soon as the connection is handed to its reader goroutine.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	ip := clientIP(r, h.cfg.TrustedProxies)
	key := netKey(ip)
	// A pending slot is reserved before the upgrade (so concurrent upgrades cannot
	// overshoot the cap) and handed to the link, or released, below.
	h.mu.Lock()
	closing := h.closing
	full := !closing && h.pendingIP[key] >= h.cfg.MaxPendingPerIP
	if !closing && !full {
		h.pendingIP[key]++
	}
	h.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if full {
		h.st.pendingRefused.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many connections from your address", http.StatusTooManyRequests)
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	c, err := websocket.Accept(sb, r, h.accept)
	if err != nil {
		h.mu.Lock()
		h.releasePendingLocked(key)
		h.mu.Unlock()
		h.st.originRefused.Add(1)
		h.log.Debug("upgrade refused", "remote", r.RemoteAddr, "err", err)
		return // Accept wrote the HTTP error (403 for a foreign origin)
	}
	c.SetReadLimit(-1) // enforced in readLoop, so the client hears "too-large" first
	l := &link{c: c, nc: sb.conn, ip: ip, liveIdx: -1}
	now := time.Now()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing || len(h.links)+len(h.away) >= h.cfg.MaxSessions {
		h.releasePendingLocked(key) // the link never becomes pending
	}
	switch {
	case h.closing:
		// Shutdown began while this upgrade was in flight: it did not see this link,
		// so it is told here, on the HTTP server's goroutine (the hub's WaitGroup may
		// already be waited on).
		h.st.disconnects[reasonShutdown].Add(1)
		h.mu.Unlock()
		t := time.AfterFunc(closeWait, func() { sb.conn.Close() })
		c.Close(websocket.StatusServiceRestart, "server restarting")
		t.Stop()
		h.mu.Lock() // for the deferred Unlock
		return
	case len(h.links)+len(h.away) >= h.cfg.MaxSessions:
		l.setReason(reasonServerFull)
		h.st.disconnects[reasonServerFull].Add(1)
		h.kickLocked(l, websocket.StatusTryAgainLater, "server full",
			errorMsg(codeServerFull, "too many sessions, retry later", nil))
		return
	}
	h.startOnce.Do(func() { h.wg.Go(h.tickLoop) }) // under mu with !closing: never after Wait
	l.helloBy = h.mono(now.Add(h.cfg.HelloTimeout))
	// The first ping goes out at a random point of the first interval so that a
	// reconnect storm does not ping in lockstep forever.
	l.nextPing.Store(now.Add(h.cfg.PingInterval/2 + rand.N(h.cfg.PingInterval/2+1)).UnixNano())
	h.links[l] = struct{}{}
	h.pending[l] = struct{}{} // takes over the reserved pendingIP slot
	h.wg.Go(func() { h.readLoop(l) })
}

// releasePendingLocked gives back one pendingIP slot of key.
func (h *Hub) releasePendingLocked(key netip.Addr) {
	if h.pendingIP[key]--; h.pendingIP[key] <= 0 {
		delete(h.pendingIP, key)
	}
}

// unpendLocked takes l out of the pending set (hello done, or link gone).
func (h *Hub) unpendLocked(l *link) {
	if _, ok := h.pending[l]; ok {
		delete(h.pending, l)
		h.releasePendingLocked(netKey(l.ip))
	}
}

// smallBuffers swaps net/http's 4 KiB hijack buffers for smaller ones: idle
// sessions are what the hub holds most of, and 8 KiB of buffers each would be half
// the per-session memory budget (16 KiB).
//
// It also keeps the net.Conn: once coder/websocket's Close is under way its
// CloseNow only waits, so cutting a peer that ignores the close handshake needs the
// socket itself.
type smallBuffers struct {
	http.ResponseWriter
	conn net.Conn
}

func (s *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("signaling: response writer cannot hijack")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	s.conn = c
	rd := smallReader(brw.Reader, c)
	// A trickle candidate (~300 bytes) goes out in one write; an SDP offer takes
	// two or three, which is rare enough. Every byte here is paid ~2x (GC headroom)
	// by every idle session.
	return c, bufio.NewReadWriter(rd, bufio.NewWriterSize(c, 512)), nil
}

// smallReader returns a 512-byte reader over c for frame headers and small frames
// (payloads longer than the buffer are read straight into the message buffer).
// 512, not less: a trickle candidate (~300 bytes with its envelope) then arrives
// in one read; at 256 it took two, a syscall per relayed message that showed in
// the benchmark's CPU and p99.
// Bytes net/http already read ahead into br (its background read often holds the
// first byte of the first frame) must end up buffered in the new reader:
// coder/websocket keeps what is buffered and resets the reader's source to the
// socket. If more was read ahead than fits, br itself is kept.
func smallReader(br *bufio.Reader, c io.Reader) *bufio.Reader {
	const size = 512
	n := br.Buffered()
	if n == 0 {
		return bufio.NewReaderSize(c, size)
	}
	ahead, _ := br.Peek(n)
	rd := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), c), size)
	if _, err := rd.Peek(n); err != nil {
		return br
	}
	return rd
}

func (s *smallBuffers) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// readLoop is the link's reader goroutine: it owns l.s and ends the link.
func (h *Hub) readLoop(l *link) {
	defer h.linkDone(l)
	for {
		typ, r, err := l.c.Reader(context.Background()) // deadlines come from the ticker
		if err != nil {
			switch websocket.CloseStatus(err) {
			case websocket.StatusNormalClosure, websocket.StatusGoingAway:
				// The client said goodbye (page closed, app quit): no grace.
				l.bye.Store(true)
				l.setReason(reasonClosed)
			case -1:
				l.setReason(reasonReadError)
			default:
				l.setReason(reasonClosed)
			}
			return
		}
		in := h.frames.Get().(*inbound)
		in.buf, err = readFrame(r, in.buf[:0], h.cfg.ReadLimit)
		if err != nil {
			in.release()
			l.setReason(reasonReadError)
			return
		}
		h.st.messagesIn.Add(1)
		if int64(len(in.buf)) > h.cfg.ReadLimit {
			in.release()
			h.tooLarge(l)
			return
		}
		in.l, in.binary = l, typ != websocket.MessageText // binary: handled as bad-message
		ok := h.handleOff(in)
		in.release()
		if !ok {
			return
		}
	}
}

// readFrame appends the rest of r to buf, like io.ReadAll over
// io.LimitReader(r, limit+1) but into a reused buffer: more than limit bytes means
// the frame is too large (the caller checks len > limit).
func readFrame(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow as append does (512 to start, like io.ReadAll)
			if cap(buf) < 512 {
				buf = make([]byte, len(buf), 512)
			}
		}
		room := buf[len(buf):cap(buf)]
		if left := limit + 1 - int64(len(buf)); int64(len(room)) > left {
			room = room[:left]
		}
		n, err := r.Read(room)
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		case int64(len(buf)) > limit:
			return buf, nil
		}
	}
}

// maxPooledFrame is the largest buffer the frame pool keeps: an SDP offer (the
// biggest common message, ~3-10 KiB) fits; a rare bigger frame (up to ReadLimit)
// is left to the GC rather than pinned in the pool.
const maxPooledFrame = 16 << 10

// inbound is one client frame on its way from the reader to a worker and back,
// pooled in Hub.frames: relaying a signal would otherwise allocate a read buffer,
// the decoded message, copies of its data, a closure and a channel each time.
// It belongs to the reader between Get and release, and to the worker (through
// handleOff) while handle runs.
type inbound struct {
	h    *Hub          // static
	done chan struct{} // static; cap 1: handled, sent by the worker to the waiting reader
	fn   func()        // static: in.handle, bound once so that run(fn) allocates nothing

	l       *link
	binary  bool
	buf     []byte // the frame as read
	m       inMsg  // decoded from buf (decodeInto)
	scratch []byte // decodeInto's compaction buffer
	out     []byte // the encoded body a handler sends (Envelope.Body is not kept by the Router)
	dec     frameDecoder
	ok      bool // handle's result
}

func (in *inbound) handle() {
	defer func() { in.done <- struct{}{} }()
	if l := in.l; l.s == nil {
		// Every frame before the welcome counts, valid or not (each is answered
		// with a direct write): a real client's first message is its hello.
		l.preHello++
		if l.preHello > maxPreHello {
			l.setReason(reasonPolicy)
			in.h.mu.Lock()
			in.h.kickLocked(l, websocket.StatusPolicyViolation, "hello required", nil)
			in.h.mu.Unlock()
			in.ok = false // the link ends
			return
		}
	}
	if in.binary {
		in.h.reply(in.l, nil, errf(codeBadMessage, "binary frames are not part of the protocol"))
		in.ok = true
		return
	}
	in.ok = in.h.handle(in.l, in)
}

// release puts in back into its pool, dropping what it references (the link, the
// strings of the last message) and buffers too big to keep.
func (in *inbound) release() {
	in.l, in.ok, in.binary = nil, false, false
	data := in.m.Data[:0]
	if cap(data) > maxPooledFrame {
		data = nil
	}
	in.m = inMsg{Data: data}
	if cap(in.buf) > maxPooledFrame {
		in.buf = nil
		in.dec = frameDecoder{} // its buffer grew as big
	}
	if cap(in.scratch) > maxPooledFrame {
		in.scratch = nil
	}
	if cap(in.out) > maxPooledFrame {
		in.out = nil
	}
	in.h.frames.Put(in)
}

// handleOff runs handle on a worker (see run) and waits for it. Decoding and the
// hub logic need several KiB of stack; run on the reader, that stack would stay
// grown for the life of every idle session (stacks only shrink at GC, by halves).
// The reader itself stays shallow. Costs about a microsecond per message.
func (h *Hub) handleOff(in *inbound) bool {
	h.run(in.fn)
	<-in.done
	return in.ok
}

// tooLarge tells the client why and closes with 1009. The error is written
// directly (unsequenced): the link is going away and nothing else may overtake it.
func (h *Hub) tooLarge(l *link) {
	l.setReason(reasonTooLarge)
	b, _ := json.Marshal(errorMsg(codeTooLarge, fmt.Sprintf("message over %d bytes", h.cfg.ReadLimit), nil))
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closing {
		h.kickLocked(l, websocket.StatusMessageTooBig, "message too big", json.RawMessage(b))
	}
}

// linkDone ends a link: a session attached to it enters its resume grace, or
// ends at once after a goodbye close.
func (h *Hub) linkDone(l *link) {
	r := reason(l.why.Load())
	if r == reasonNone {
		r = reasonClosed
	}
	h.st.disconnects[r].Add(1)
	var ended *session
	h.mu.Lock()
	delete(h.links, l)
	h.unpendLocked(l)
	if s := l.s; s != nil && s.link == l {
		h.detachLocked(s)
		switch {
		case h.closing:
		case l.bye.Load():
			if h.endLocked(s) {
				ended = s
			}
		default:
			s.graceUntil = h.mono(time.Now().Add(h.cfg.ResumeGrace))
			h.away[s] = struct{}{}
		}
	}
	h.mu.Unlock()
	if ended != nil {
		ended.end(wire.ReasonLeft, true)
	}
	if !l.kicked.Load() {
		l.c.CloseNow()
	}
	h.log.Debug("link closed", "remote", l.ip, "reason", r.String())
}

// kickLocked closes l with code in the background, after writing pre (if not
// nil) directly; the socket is cut closeWait later in case the peer never answers.
func (h *Hub) kickLocked(l *link, code websocket.StatusCode, why string, pre any) {
	if l.kicked.Swap(true) {
		return
	}
	h.wg.Go(func() {
		if pre != nil {
			h.writeDirect(l, pre, closeWait) // a client not reading must not hold the kick
		}
		t := time.AfterFunc(closeWait, func() { l.nc.Close() })
		defer t.Stop()
		l.c.Close(code, why)
	})
}

// writeDirect writes one unsequenced message bypassing the queue: only before
// hello (the reader is the only writer then) or right before a close.
func (h *Hub) writeDirect(l *link, v any, timeout time.Duration) {
	b, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			h.log.Error("encode", "err", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.c.Write(ctx, websocket.MessageText, b); err == nil {
		h.st.messagesOut.Add(1)
	}
}
