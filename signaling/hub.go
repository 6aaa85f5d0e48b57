// Package signaling is the WebSocket signaling hub: names, presence, rooms, calls and
// resumable sessions, with TURN credentials minted per session (see PROTOCOL.md).
package signaling

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// Close codes (PROTOCOL.md, "Close codes").
const (
	closeReplaced     websocket.StatusCode = 4001
	closeResumeFailed websocket.StatusCode = 4002
)

// closeWait bounds the close handshake of a kicked link before its socket is cut: the close
// frame is already written by then, which is all a client needs to read the code;
// coder/websocket would otherwise wait up to 5 s + 5 s for the peer.
const closeWait = 2 * time.Second

// maxPreHello is how many messages (hellos that failed included) a connection may
// send without getting its welcome before it is closed: a real client's first
// message is its hello, retried a few times at most; more is a scanner.
const maxPreHello = 8

// Hub is the signaling server core. It never listens: ServeHTTP is mounted by the
// caller at /ws and ICEServersHandler at /api/ice-servers.
//
// Lock order: a session's handling, then Hub.mu, then the Router's lock, then a
// session's mu. Under any of
// them: map/slice operations and non-blocking work only (no I/O, no JSON, no
// waiting); goroutines may be started. Hub.mu serializes membership, calls and
// session lifecycle; relaying a signal and answering a ping take only the
// sessions' locks (and the router's), so the hot path never queues on Hub.mu.
type Hub struct {
	// Static after New.
	cfg       Config
	log       *slog.Logger
	router    Router
	accept    *websocket.AcceptOptions
	creds     *ipLimiter // nil with AuthSecret (tokens gate issuance instead)
	heartbeat heartbeat
	// epoch is (just before) New's time.Now(): per-session deadlines are stored as int64
	// nanoseconds since it (see mono), monotonic like time.Time's but a third of
	// the size, in structs the hub holds one of per idle session.
	epoch time.Time

	// Lifetime. ctx is cancelled by Shutdown/Close; wg owns every goroutine the hub
	// starts (readers, workers running handlers, writers, pings and refreshes,
	// kicks, the ticker).
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	work      chan func() // unbuffered: a send succeeds only when a worker is idle
	// frames pools *inbound: a reader takes one when a frame arrives and gives it
	// back once the frame is handled, so an idle session holds no read buffer.
	frames sync.Pool
	// seqBufs pools *[]byte scratch for withSeq, held by a writer while it runs.
	seqBufs sync.Pool
	// bodies pools the encoded bodies of relayed signals (Message.pooled): each
	// lives from its relay until the receiver's ack, and they were most of the
	// hub's garbage under load, so most of its GC cycles.
	bodies sync.Pool

	st counters

	mu      sync.Mutex
	closing bool               // guarded by mu
	links   map[*link]struct{} // guarded by mu: every open connection
	pending map[*link]struct{} // guarded by mu: connections before hello
	// pendingIP counts pending links (and upgrades in progress) by netKey of the
	// client IP; guarded by mu. Bounded by pending: zero entries are deleted.
	pendingIP map[netip.Addr]int
	live      []*link               // guarded by mu: links with a session attached (l.liveIdx)
	cursor    int                   // guarded by mu: where the tick's scan of live resumes
	nextSweep time.Time             // guarded by mu: when the tick next walks the small sets
	sessions  map[string]*session   // guarded by mu: by id, attached or in grace
	resumes   map[string]*session   // guarded by mu: by resume token
	away      map[*session]struct{} // guarded by mu: sessions in resume grace
	ringing   map[*call]struct{}    // guarded by mu: calls not yet answered
	calls     int                   // guarded by mu: calls ringing or active
}

// New validates cfg and returns a Hub. It starts nothing.
func New(cfg Config) (*Hub, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:       cfg,
		log:       cfg.Logger,
		router:    cfg.Router,
		links:     make(map[*link]struct{}),
		pending:   make(map[*link]struct{}),
		pendingIP: make(map[netip.Addr]int),
		away:      make(map[*session]struct{}),
		sessions:  make(map[string]*session),
		resumes:   make(map[string]*session),
		ringing:   make(map[*call]struct{}),
		heartbeat: heartbeat{
			Interval: cfg.PingInterval.Milliseconds(),
			Timeout:  cfg.PongTimeout.Milliseconds(),
		},
	}
	if h.router == nil {
		h.router = NewLocalRouter()
	}
	h.accept = &websocket.AcceptOptions{
		OriginPatterns:  cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled, // JSON this small gains little; flate state costs ~50 KiB a link
	}
	if len(cfg.AuthSecret) == 0 {
		h.creds = newIPLimiter(rate.Limit(cfg.CredentialRate), cfg.CredentialBurst, cfg.MaxTrackedIPs)
	}
	h.epoch = time.Now().Add(-time.Nanosecond) // mono is > 0 from New on: 0 stays free for "never"
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.work = make(chan func())
	h.frames.New = func() any {
		in := &inbound{h: h, done: make(chan struct{}, 1)}
		in.fn = in.handle
		return in
	}
	h.seqBufs.New = func() any { return new([]byte) }
	h.bodies.New = func() any { return new([]byte) }
	return h, nil
}

// counters are the hub's monotonic counters; see Stats.
type counters struct {
	messagesIn, messagesOut, rateLimited, authRefused, credentialsIssued,
	resumed, replayed, undeliverable, slowConsumers, originRefused, pendingRefused atomic.Uint64
	disconnects [numReasons]atomic.Uint64
}

// Stats is a snapshot for metrics.
type Stats struct {
	Sessions    int // gauge: sessions, attached or in resume grace
	Detached    int // gauge: sessions in resume grace
	Connections int // gauge: open WebSocket connections (incl. before hello)
	Rooms       int // gauge: non-empty rooms
	Calls       int // gauge: calls ringing or active

	MessagesIn        uint64            // client messages read
	MessagesOut       uint64            // messages written (incl. replays)
	RateLimited       uint64            // client messages refused by the rate limit
	AuthRefused       uint64            // hellos and /api/ice-servers requests refused for a bad token
	CredentialsIssued uint64            // ICE credential sets minted (welcome, refresh, HTTP)
	Resumed           uint64            // successful resumes
	Replayed          uint64            // messages unacked at a resume, written again on the new link
	Undeliverable     uint64            // messages that could not be delivered
	SlowConsumers     uint64            // links closed because the client did not read
	OriginRefused     uint64            // upgrades refused (origin or bad handshake)
	PendingRefused    uint64            // upgrades refused: MaxPendingPerIP connections before hello from one address
	Disconnects       map[string]uint64 // links closed, by reason
}

// Stats returns a snapshot of the hub's gauges and counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{
		Sessions:    len(h.sessions),
		Detached:    len(h.away),
		Connections: len(h.links),
		Calls:       h.calls,
	}
	h.mu.Unlock()
	s.Rooms = h.router.Rooms()
	s.MessagesIn = h.st.messagesIn.Load()
	s.MessagesOut = h.st.messagesOut.Load()
	s.RateLimited = h.st.rateLimited.Load()
	s.AuthRefused = h.st.authRefused.Load()
	s.CredentialsIssued = h.st.credentialsIssued.Load()
	s.Resumed = h.st.resumed.Load()
	s.Replayed = h.st.replayed.Load()
	s.Undeliverable = h.st.undeliverable.Load()
	s.SlowConsumers = h.st.slowConsumers.Load()
	s.OriginRefused = h.st.originRefused.Load()
	s.PendingRefused = h.st.pendingRefused.Load()
	s.Disconnects = make(map[string]uint64, numReasons)
	for r := range reason(numReasons) {
		if n := h.st.disconnects[r].Load(); n > 0 && r != reasonNone {
			s.Disconnects[r.String()] = n
		}
	}
	return s
}

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
	helloBy int64 // Hub.mono

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

// call is one call between two sessions; guarded by Hub.mu.
type call struct {
	id        string
	caller    *session
	callee    *session
	active    bool
	ringUntil time.Time
}

func (c *call) other(s *session) *session {
	if c.caller == s {
		return c.callee
	}
	return c.caller
}

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
			outMsg{Type: "error", Code: codeServerFull, Message: "too many sessions, retry later"})
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
	b, _ := json.Marshal(outMsg{Type: "error", Code: codeTooLarge,
		Message: fmt.Sprintf("message over %d bytes", h.cfg.ReadLimit)})
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closing {
		h.kickLocked(l, websocket.StatusMessageTooBig, "message too big", json.RawMessage(b))
	}
}

// linkDone ends a link: a session attached to it enters its resume grace.
func (h *Hub) linkDone(l *link) {
	r := reason(l.why.Load())
	if r == reasonNone {
		r = reasonClosed
	}
	h.st.disconnects[r].Add(1)
	h.mu.Lock()
	delete(h.links, l)
	h.unpendLocked(l)
	if s := l.s; s != nil && s.link == l {
		h.detachLocked(s)
		switch {
		case h.closing:
		case l.bye.Load():
			h.endSessionLocked(s, "left", true)
		default:
			s.graceUntil = h.mono(time.Now().Add(h.cfg.ResumeGrace))
			h.away[s] = struct{}{}
		}
	}
	h.mu.Unlock()
	if !l.kicked.Load() {
		l.c.CloseNow()
	}
	h.log.Debug("link closed", "remote", l.ip, "reason", r.String())
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

// reply answers a client request with an error: sequenced for a session,
// direct before hello. It is the one place mapping errors to the wire.
func (h *Hub) reply(l *link, ref json.RawMessage, we *wireError) {
	m := outMsg{Type: "error", Code: we.code, Message: we.msg, To: we.to, Ref: ref}
	if we.code == codeUndeliverable {
		h.st.undeliverable.Add(1)
	}
	if l.s == nil {
		h.writeDirect(l, m, h.cfg.WriteTimeout)
		return
	}
	_ = l.s.Deliver(Message{Value: m})
}

// sendError is reply for a session. It needs no lock (Hub.mu may be held; the
// session's mu must not be).
func (h *Hub) sendError(s *session, ref json.RawMessage, we *wireError) {
	if we.code == codeUndeliverable {
		h.st.undeliverable.Add(1)
	}
	_ = s.Deliver(Message{Value: outMsg{Type: "error", Code: we.code, Message: we.msg, To: we.to, Ref: ref}})
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

	// Encode outside the lock what can be.
	var msg Message
	var jb joinedBodies
	switch m.Type {
	case "signal":
		msg = h.signalMessage(s.id, m)
	case "join":
		jb = peerJoined(s)
	}

	// s.handling makes dedupe and relay one step against a resume, which takes it
	// too: a message read late from a dead link is relayed before anything the
	// client resends on its new link, or not at all.
	s.handling.Lock()
	defer s.handling.Unlock()

	// Session-local bookkeeping under s.mu alone: the hot path (signal, ping) never
	// takes Hub.mu, which every membership and call change needs. Dedupe and ack
	// come first: a message answered with an error is processed too.
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		h.putBody(msg)
		return false // replaced by a resume on another connection
	}
	if m.Seq != 0 {
		if m.Seq <= s.inSeq {
			s.mu.Unlock()
			h.putBody(msg)
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
		h.putBody(msg)
		h.st.rateLimited.Add(1)
		h.sendError(s, m.Ref, errf(codeRateLimited, "too many messages, slow down"))
		return true
	}
	if we := m.validate(); we != nil {
		h.putBody(msg)
		h.sendError(s, m.Ref, we)
		return true
	}
	var we *wireError
	switch m.Type {
	case "ping":
	case "hello":
		we = errf(codeBadMessage, "hello already done")
	case "signal":
		we = h.signal(s, room, m, msg)
		msg = Message{} // delivered, or given back by signal
	default:
		h.mu.Lock()
		if s.link != l {
			h.mu.Unlock()
			return false
		}
		switch m.Type {
		case "join":
			we = h.joinLocked(s, m, jb)
		case "call":
			we = h.callLocked(s, m)
		case "accept", "decline", "cancel", "hangup":
			we = h.callActionLocked(s, m)
		}
		h.mu.Unlock()
	}
	if we != nil {
		h.sendError(s, m.Ref, we)
	}
	return true
}

// signalMessage encodes the signal m from session id. A signal to one peer gets
// a pooled body, a broadcast (shared by every receiver) its own.
func (h *Hub) signalMessage(from string, m *inMsg) Message {
	if m.To == "*" {
		return Message{Body: appendSignalBody(nil, from, m.Data), From: from}
	}
	p := h.bodies.Get().(*[]byte)
	*p = appendSignalBody((*p)[:0], from, m.Data)
	return Message{Body: *p, From: from, pooled: p}
}

// putBody gives m's pooled body back, if it has one; nothing may use m.Body after.
func (h *Hub) putBody(m Message) {
	if m.pooled != nil && cap(*m.pooled) <= maxPooledFrame {
		h.bodies.Put(m.pooled)
	}
}

// signal relays msg, the signal m from s (in room), without Hub.mu: the router
// has its own lock and delivery takes only the receivers' locks. msg is handed
// on or given back.
func (h *Hub) signal(s *session, room string, m *inMsg, msg Message) *wireError {
	if m.To == "*" {
		for _, id := range h.router.Broadcast(room, s.id, msg) {
			h.sendError(s, m.Ref, &wireError{code: codeUndeliverable, msg: "recipient cannot take more messages", to: id})
		}
		return nil
	}
	if r, ok := h.router.RoomOf(m.To); !ok || r != room || m.To == s.id {
		h.putBody(msg)
		return &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: m.To}
	}
	err := h.router.Send(m.To, msg)
	if err != nil {
		h.putBody(msg)
	}
	switch {
	case errors.Is(err, ErrNoSession):
		return &wireError{code: codePeerUnavailable, msg: "peer is gone", to: m.To}
	case err != nil:
		return &wireError{code: codeUndeliverable, msg: "recipient cannot take more messages", to: m.To}
	}
	return nil
}

// roomAllowed checks room against a token's room claim ("" = any) and the lobby switch.
func (h *Hub) roomAllowed(claim, room string) *wireError {
	if claim != "" && room != claim {
		return errf(codeForbiddenRoom, "your token is for another room")
	}
	if room == "" && h.cfg.NoLobby {
		return errf(codeForbiddenRoom, "this server has no lobby; join a named room")
	}
	return nil
}

func (h *Hub) joinLocked(s *session, m *inMsg, jb joinedBodies) *wireError {
	room := *m.Room
	if we := h.roomAllowed(s.roomClaim(), room); we != nil {
		return we
	}
	if room == s.room {
		h.deliverJoinedLocked(s, room, h.router.Members(room), m.Ref)
		return nil
	}
	others, err := h.router.Join(room, s.member(), h.cfg.MaxRoomSize)
	if err != nil {
		return errf(codeRoomFull, "room %q is full", room)
	}
	if s.call != nil {
		h.endCallLocked(s, "left")
	}
	h.router.Broadcast(s.room, s.id, Message{Value: outMsg{Type: "peer-left", ID: s.id, Reason: "moved"}})
	s.mu.Lock()
	s.room = room
	s.mu.Unlock()
	h.announceLocked(s, others, jb)
	h.deliverJoinedLocked(s, room, others, m.Ref)
	return nil
}

func (h *Hub) deliverJoinedLocked(s *session, room string, members []Member, ref json.RawMessage) {
	peers := s.peerList(members)
	_ = s.Deliver(Message{Value: outMsg{Type: "joined", Room: &room, Peers: &peers, Ref: ref}})
}

// joinedBodies encodes s's peer-joined in both flavours, before the lock is taken.
// Encoded bodies are also far smaller than queued values while peers hold them.
type joinedBodies struct{ near, far []byte }

func peerJoined(s *session) joinedBodies {
	enc := func(nearby bool) []byte {
		b, _ := json.Marshal(outMsg{Type: "peer-joined", Peer: &peerInfo{ID: s.id, Name: s.name, Nearby: nearby}})
		return b
	}
	return joinedBodies{near: enc(true), far: enc(false)}
}

// announceLocked tells others that s arrived; nearby is relative to each receiver.
func (h *Hub) announceLocked(s *session, others []Member, jb joinedBodies) {
	near, far := Message{Body: jb.near}, Message{Body: jb.far}
	for _, o := range others {
		msg := far
		if o.Net.IsValid() && o.Net == s.net {
			msg = near
		}
		_ = h.router.Send(o.ID, msg)
	}
}

func (h *Hub) callLocked(s *session, m *inMsg) *wireError {
	if s.call != nil {
		return errf(codeBusy, "you are already in call %q", s.call.id)
	}
	t := h.sessions[m.To]
	if t == nil || t == s || t.room != s.room {
		return &wireError{code: codePeerUnavailable, msg: "peer is not in your room", to: m.To}
	}
	if t.call != nil {
		_ = s.Deliver(Message{Value: outMsg{Type: "busy", Call: m.Call, From: t.id, Ref: m.Ref}})
		return nil
	}
	c := &call{id: m.Call, caller: s, callee: t, ringUntil: time.Now().Add(h.cfg.RingTimeout)}
	s.call, t.call = c, c
	h.ringing[c] = struct{}{}
	h.calls++
	_ = s.Deliver(Message{Value: outMsg{Type: "ringing", Call: c.id, To: t.id, Ref: m.Ref}})
	if err := t.Deliver(Message{Value: outMsg{Type: "call", Call: c.id, From: s.id, Name: s.name}, From: s.id}); err != nil {
		h.clearCallLocked(c)
		return &wireError{code: codeUndeliverable, msg: "callee cannot take more messages", to: t.id}
	}
	return nil
}

func (h *Hub) callActionLocked(s *session, m *inMsg) *wireError {
	c := s.call
	if c == nil || c.id != m.Call {
		return errf(codeNoSuchCall, "you are not in call %q", m.Call)
	}
	o := c.other(s)
	switch m.Type {
	case "accept":
		if c.active || c.callee != s {
			return errf(codeNoSuchCall, "call %q is not ringing for you", m.Call)
		}
		c.active = true
		delete(h.ringing, c)
		_ = c.caller.Deliver(Message{Value: acceptedMsg{Type: "accepted", Call: c.id, Peer: c.callee.id, Polite: false}})
		_ = c.callee.Deliver(Message{Value: acceptedMsg{Type: "accepted", Call: c.id, Peer: c.caller.id, Polite: true, Ref: m.Ref}})
	case "decline":
		if c.active || c.callee != s {
			return errf(codeNoSuchCall, "call %q is not ringing for you", m.Call)
		}
		h.clearCallLocked(c)
		_ = o.Deliver(Message{Value: outMsg{Type: "declined", Call: c.id, From: s.id}})
	case "cancel":
		if c.active || c.caller != s {
			return errf(codeNoSuchCall, "call %q is not yours to cancel", m.Call)
		}
		h.clearCallLocked(c)
		_ = o.Deliver(Message{Value: outMsg{Type: "cancelled", Call: c.id, From: s.id}})
	case "hangup":
		h.clearCallLocked(c)
		_ = o.Deliver(Message{Value: outMsg{Type: "hangup", Call: c.id, From: s.id, Reason: "hangup"}})
	}
	return nil
}

func (h *Hub) clearCallLocked(c *call) {
	if c.caller.call == c {
		c.caller.call = nil
	}
	if c.callee.call == c {
		c.callee.call = nil
	}
	delete(h.ringing, c)
	h.calls--
}

// endCallLocked ends s's call because s is leaving; the other side hears why.
func (h *Hub) endCallLocked(s *session, why string) {
	c := s.call
	h.clearCallLocked(c)
	_ = c.other(s).Deliver(Message{Value: outMsg{Type: "hangup", Call: c.id, From: s.id, Reason: why}})
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
				outMsg{Type: "error", Code: codeUnauthorized, Message: "invalid token: " + err.Error(), Ref: m.Ref})
			h.mu.Unlock()
			return false
		}
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
	jb := peerJoined(s)
	servers, exp, ok := h.mintForHello(l, m.Ref, s.id)
	if !ok {
		return true
	}
	now := time.Now()

	if we := h.startSession(l, s, m, jb, servers, now, exp); we != nil {
		h.reply(l, m.Ref, we)
		return true
	}
	h.log.Debug("session started", "peer", s.id, "room", room, "remote", l.ip)
	return true
}

// startSession registers s, puts it in its room and attaches it to l.
func (h *Hub) startSession(l *link, s *session, m *inMsg, jb joinedBodies, servers []ICEServer, now, exp time.Time) *wireError {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return errf(codeServerFull, "server is restarting")
	}
	h.router.Register(s.id, s)
	others, err := h.router.Join(s.room, s.member(), h.cfg.MaxRoomSize)
	if err != nil {
		h.router.Unregister(s.id)
		return errf(codeRoomFull, "room %q is full", s.room)
	}
	h.sessions[s.id] = s
	h.resumes[s.resume] = s
	s.refreshAt = h.refreshTime(now, exp)
	h.announceLocked(s, others, jb)
	s.mu.Lock()
	h.attachLocked(s, l)
	l.first = welcomeMsg{Type: "welcome", ID: s.id, Resume: s.resume, ICEServers: servers,
		TTL: ttlSeconds(now, exp), Heartbeat: h.heartbeat, Room: s.room,
		Peers: s.peerList(others), Ref: m.Ref}
	s.startWriterLocked()
	s.mu.Unlock()
	return nil
}

// resume reattaches a session in its grace (or still attached elsewhere) to l.
func (h *Hub) resume(l *link, m *inMsg, cl *claims) bool {
	fail := func(why string) bool {
		l.setReason(reasonResumeFailed)
		h.kickLocked(l, closeResumeFailed, why, nil)
		return false
	}
	h.mu.Lock()
	s := h.resumes[m.Resume]
	h.mu.Unlock()
	if s == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		return fail("resume unknown or expired")
	}
	servers, exp, ok := h.mintForHello(l, m.Ref, s.id)
	if !ok {
		return true
	}
	now := time.Now()

	s.handling.Lock() // wait for a message still being handled on the old link
	defer s.handling.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	if h.resumes[m.Resume] != s || (cl != nil && cl.Subject != s.subject()) {
		return fail("resume unknown or expired")
	}
	// Take the old link away first: from here its writer can no longer move s.sent.
	old := s.link
	h.detachLocked(s)
	if old != nil {
		old.setReason(reasonReplaced)
		h.kickLocked(old, closeReplaced, "session resumed elsewhere", nil)
	}
	peers := s.peerList(h.router.Members(s.room)) // router before s.mu (lock order)
	s.mu.Lock()
	ack := min(m.Ack, s.seq)
	if ack < s.forgotten || ack < s.acked {
		s.mu.Unlock()
		h.endSessionLocked(s, "left", false)
		return fail("resume is behind the replay window")
	}
	s.ackLocked(ack)
	s.sent = ack
	h.st.replayed.Add(s.seq - ack)
	h.attachLocked(s, l)
	l.first = welcomeMsg{Type: "welcome", ID: s.id, Resume: s.resume, Resumed: true, ICEServers: servers,
		TTL: ttlSeconds(now, exp), Heartbeat: h.heartbeat, Room: s.room,
		Peers: peers, Ack: s.inSeq, Ref: m.Ref}
	s.startWriterLocked()
	s.mu.Unlock()
	s.refreshAt = h.refreshTime(now, exp)
	s.graceUntil = 0
	h.st.resumed.Add(1)
	h.log.Debug("session resumed", "peer", s.id, "room", s.room, "remote", l.ip)
	return true
}

// endSessionLocked ends s for good: peers hear peer-left, its call partner a
// hangup, and senders of messages it never confirmed an undeliverable error.
//
// Unconfirmed means above the client's ack, except after a goodbye close
// (graceful): then what was written before it counts as delivered.
func (h *Hub) endSessionLocked(s *session, why string, graceful bool) {
	if s.gone {
		return
	}
	delete(h.sessions, s.id)
	delete(h.resumes, s.resume)
	delete(h.away, s)
	if l := s.link; l != nil {
		h.detachLocked(s)
		l.setReason(reasonResumeFailed)
		h.kickLocked(l, closeResumeFailed, "session ended", nil)
	}
	h.router.Unregister(s.id)
	if s.call != nil {
		h.endCallLocked(s, "left")
	}
	h.router.Broadcast(s.room, s.id, Message{Value: outMsg{Type: "peer-left", ID: s.id, Reason: why}})
	s.mu.Lock()
	s.gone = true
	confirmed := s.acked
	if graceful {
		confirmed = max(confirmed, s.sent)
	}
	lost := map[string]int{}
	for _, q := range s.queue {
		if q.seq > confirmed && q.msg.From != "" {
			lost[q.msg.From]++
		}
	}
	s.queue, s.qbytes = nil, 0
	s.mu.Unlock()
	for from, n := range lost {
		if f := h.sessions[from]; f != nil {
			h.st.undeliverable.Add(uint64(n) - 1) // sendError counts one
			h.sendError(f, nil, &wireError{code: codeUndeliverable,
				msg: fmt.Sprintf("%d message(s) were not delivered: the peer left", n), to: s.id})
		}
	}
	h.log.Debug("session ended", "peer", s.id, "room", s.room, "reason", why)
}

func (h *Hub) refreshTime(now, exp time.Time) int64 {
	if exp.IsZero() || !exp.After(now) {
		return 0
	}
	return h.mono(now.Add(time.Duration(float64(exp.Sub(now)) * h.cfg.RefreshAt)))
}

// mono is t as nanoseconds since h.epoch: monotonic when t has a monotonic
// reading (time.Now does), so a wall-clock step moves no deadline.
func (h *Hub) mono(t time.Time) int64 { return int64(t.Sub(h.epoch)) }

func ttlSeconds(now, exp time.Time) int64 {
	if exp.IsZero() {
		return 0
	}
	return max(0, int64(exp.Sub(now)/time.Second))
}

// tickLoop drives every timer of the hub from one ticker: an idle session costs a
// few map entries, not a goroutine and a timer.
func (h *Hub) tickLoop() {
	t := time.NewTicker(h.scanTick())
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.tick(now)
		}
	}
}

// maxScanTick bounds the period of the scan of attached links. A coarse tick
// would start every ping due in the last Tick at once: at 10,000 sessions and a
// 5 s ping interval that is 1,000 pings (and 1,000 pongs) every 500 ms, and every
// signal of that moment waited behind them (a p99 of 25 ms at 20,000 msg/s,
// measured with `switchboard bench signaling`). At 20 ms the pings trickle out
// 40 at a time. Tick still paces the small sets, which are walked whole.
const maxScanTick = 20 * time.Millisecond

// scanTick is the period of the hub's ticker.
func (h *Hub) scanTick() time.Duration { return min(h.cfg.Tick, maxScanTick) }

func (h *Hub) tick(now time.Time) {
	var pings *pingBatch
	defer func() {
		if pings != nil {
			pings.done() // the tick held a reference until all pings were started
		}
	}()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	if !now.Before(h.nextSweep) {
		h.sweepLocked(now)
	}
	share := h.scanShare(len(h.live))
	h.mu.Unlock()

	// The attached links, the big set: each tick visits its share (so that every
	// link is seen at least every scanPeriod), scanBatch per hold of the lock, so a
	// tick never stalls message handling for more than a few microseconds.
	const scanBatch = 256
	for done := 0; done < share; {
		h.mu.Lock()
		for i := 0; i < scanBatch && done < share && len(h.live) > 0; i++ {
			if h.cursor >= len(h.live) {
				h.cursor = 0
			}
			l := h.live[h.cursor]
			h.cursor++
			done++
			pings = h.checkLinkLocked(l, now, pings)
		}
		if len(h.live) == 0 {
			done = share
		}
		h.mu.Unlock()
	}
}

// sweepLocked walks the small sets whole: connections before hello, sessions in
// grace, ringing calls. It runs every Tick.
func (h *Hub) sweepLocked(now time.Time) {
	// Half a scan tick early, so that ticker jitter never makes a sweep skip a Tick.
	h.nextSweep = now.Add(h.cfg.Tick - h.scanTick()/2)
	for l := range h.pending {
		if !l.kicked.Load() && h.mono(now) > l.helloBy {
			l.setReason(reasonHelloTimeout)
			h.kickLocked(l, websocket.StatusPolicyViolation, "hello timeout", nil)
		}
	}
	for s := range h.away {
		if h.mono(now) > s.graceUntil {
			h.endSessionLocked(s, "timeout", false)
		}
	}
	for c := range h.ringing {
		if now.After(c.ringUntil) {
			h.clearCallLocked(c)
			_ = c.caller.Deliver(Message{Value: outMsg{Type: "timeout", Call: c.id}})
			_ = c.callee.Deliver(Message{Value: outMsg{Type: "timeout", Call: c.id}})
		}
	}
}

// scanPeriod is how often each attached link is looked at: a quarter of the ping
// interval (pings go out at most 25 % late) or of the write timeout.
func (h *Hub) scanPeriod() time.Duration {
	return min(h.cfg.PingInterval, h.cfg.WriteTimeout) / 4
}

// scanShare is how many of n attached links one tick visits.
func (h *Hub) scanShare(n int) int {
	p, tick := h.scanPeriod(), h.scanTick()
	if p <= tick {
		return n
	}
	ticks := int(p / tick)
	return (n + ticks - 1) / ticks
}

// checkLinkLocked does an attached link's timed work: stalled-write cut, ping,
// credential refresh.
func (h *Hub) checkLinkLocked(l *link, now time.Time, pings *pingBatch) *pingBatch {
	if l.kicked.Load() {
		return pings
	}
	if ws := l.writeSince.Load(); ws != 0 && now.Sub(time.Unix(0, ws)) > h.cfg.WriteTimeout {
		// A write stuck this long: the client is not reading (or is gone).
		if l.why.Load() == 0 {
			l.setReason(reasonSlowConsumer)
			h.st.slowConsumers.Add(1)
			h.wg.Go(func() { l.nc.Close() }) // unblocks the write; the reader ends the link
		}
		return pings
	}
	if !l.pinging.Load() && now.UnixNano() > l.nextPing.Load() {
		l.pinging.Store(true)
		if pings == nil {
			pings = newPingBatch(now.Add(h.cfg.PongTimeout))
		}
		pings.n.Add(1)
		// A goroutine of its own rather than a worker: it mostly waits (a round
		// trip), and a fresh goroutine's stack is half a worker's.
		h.wg.Go(func() { h.ping(l, pings) })
	}
	if s := l.s; s != nil && s.refreshAt != 0 && !s.refreshing && h.mono(now) > s.refreshAt {
		s.refreshing = true
		h.run(func() { h.refresh(s) })
	}
	return pings
}

// pingBatch shares one deadline context among the pings started in one tick: a
// context and timer per ping would be most of the keepalive's garbage.
type pingBatch struct {
	ctx    context.Context
	cancel context.CancelFunc
	n      atomic.Int32 // pings still waiting; the last one cancels
}

func newPingBatch(deadline time.Time) *pingBatch {
	b := &pingBatch{}
	b.ctx, b.cancel = context.WithDeadline(context.Background(), deadline)
	b.n.Store(1)
	return b
}

func (b *pingBatch) done() {
	if b.n.Add(-1) == 0 {
		b.cancel()
	}
}

// ping sends one WebSocket ping and waits for its pong; a missing pong ends the link.
func (h *Hub) ping(l *link, b *pingBatch) {
	err := l.c.Ping(b.ctx)
	b.done()
	if err != nil {
		l.setReason(reasonPongTimeout)
		if !l.kicked.Load() {
			l.c.CloseNow() // the reader wakes up and moves the session into its grace
		}
		return
	}
	l.nextPing.Store(time.Now().Add(h.cfg.PingInterval).UnixNano())
	l.pinging.Store(false)
}

// refresh mints fresh ICE servers for s and queues them before the old ones expire.
func (h *Hub) refresh(s *session) {
	servers, exp, err := h.cfg.ICE.ICEServers(h.ctx, s.id)
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s.refreshing = false
	if err != nil {
		h.log.Warn("refresh ice servers", "peer", s.id, "err", err)
		s.refreshAt = h.mono(now.Add(max(h.cfg.Tick, time.Second))) // retry soon: the old ones run out
		return
	}
	h.st.credentialsIssued.Add(1)
	s.refreshAt = h.refreshTime(now, exp)
	if s.gone {
		return
	}
	ttl := ttlSeconds(now, exp)
	_ = s.Deliver(Message{Value: outMsg{Type: "ice-servers", ICEServers: servers, TTL: &ttl}})
}

// Shutdown stops accepting, tells every client to reconnect (1012) and waits for
// the hub's goroutines, or for ctx; then it cuts what is left.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for l := range h.links {
		l.setReason(reasonShutdown)
		h.kickLocked(l, websocket.StatusServiceRestart, "server restarting", nil)
	}
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.closeNowAll()
		<-done
		return fmt.Errorf("signaling: shutdown: %w", ctx.Err())
	}
}

// Close cuts every connection now and waits for the hub's goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	h.cancel()
	h.closeNowAll()
	h.wg.Wait()
	return nil
}

func (h *Hub) closeNowAll() {
	h.mu.Lock()
	ls := make([]*link, 0, len(h.links))
	for l := range h.links {
		l.setReason(reasonShutdown)
		ls = append(ls, l)
	}
	h.mu.Unlock()
	for _, l := range ls {
		l.nc.Close() // not CloseNow: it only waits when a Close is under way
	}
}

// workerIdle is how long a worker waits for more work before it exits: long
// enough to carry a burst (a call start) without respawning, short enough that an
// idle hub holds no workers.
const workerIdle = time.Second

// run runs f on an idle worker, or else on a new goroutine that stays a worker
// for workerIdle afterwards. Workers keep their grown stacks, so a message does
// not pay for growing a fresh 2 KiB stack, and there are never more of them than
// the work in flight needs. Blocking work (a write to a slow client) just
// occupies one worker.
func (h *Hub) run(f func()) {
	select {
	case h.work <- f:
	default:
		h.wg.Go(func() {
			f()
			h.worker()
		})
	}
}

func (h *Hub) worker() {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		select {
		case f := <-h.work:
			f()
			t.Reset(workerIdle)
		case <-t.C:
			return
		case <-h.ctx.Done():
			return
		}
	}
}

// newID returns n random bytes, base64url: unguessable ids and resume tokens.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(b)
}
