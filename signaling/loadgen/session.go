package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// session is one client connection. Its reader goroutine (readLoop) owns
// reads; writes may come from relay workers, the heartbeat loop and the
// reader's acks at once, which coder/websocket allows.
type session struct {
	r    *Runner
	idx  int
	node int // index in Runner.nodes of the node this link is on
	conn *websocket.Conn
	// static after dial
	id      string        // server-assigned (Switchboard) or chosen (PeerJS) peer id
	idJSON  []byte        // id as a JSON string, ready to splice into messages
	resume  string        // the welcome's resume token (Switchboard)
	attempt uint64        // hello.attempt of this link: 1 for the first, +1 per resume
	done    chan struct{} // closed when readLoop returns

	alive   atomic.Bool
	cut     atomic.Bool   // the load generator cut this link on purpose (Handoff)
	lastSeq atomic.Uint64 // highest server seq seen (Switchboard)
	acked   atomic.Uint64 // highest seq sent back in an ack
	// writeSince is when the oldest write still under way started (ns since
	// Runner.epoch), 0 if none; the watchdog cuts a link stuck longer than
	// WriteTimeout.
	writeSince atomic.Int64
}

// codeError is a server's refusal during the handshake.
type codeError struct{ code, msg string }

func (e *codeError) Error() string { return "server error " + e.code + ": " + e.msg }

// inbound is every server message field the load generator looks at: the
// Switchboard protocol's (package wire) and PeerJS's payload.
type inbound struct {
	wire.Any
	Payload json.RawMessage `json:"payload"` // PeerJS
}

// mark is the data of every benchmark signal.
type mark struct {
	Run uint32 `json:"r"`
	N   uint64 `json:"n"`
	T   int64  `json:"t"` // ns since Runner.epoch at the sender's write
}

// peerJSID is session i's PeerJS id: PeerJS lets clients choose ids.
func peerJSID(i int) string { return "bench-" + strconv.Itoa(i) }

func randomToken() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dial opens session i and completes the protocol handshake.
func (r *Runner) dial(ctx context.Context, i int) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	token := ""
	if r.cfg.Protocol == PeerJS {
		token = randomToken()
	} else if r.cfg.Token != nil {
		token = r.cfg.Token(i)
	}
	node := r.Home(i)
	c, _, err := websocket.Dial(ctx, r.dialURL(i, node, token), r.dialOptions(node))
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	// Server messages here are small; 1 MiB only guards against a runaway.
	c.SetReadLimit(1 << 20)
	s := &session{r: r, idx: i, node: node, conn: c, attempt: 1, done: make(chan struct{})}
	if err := s.handshake(ctx, token); err != nil {
		c.CloseNow()
		return nil, err
	}
	s.idJSON, _ = json.Marshal(s.id)
	s.alive.Store(true)
	return s, nil
}

func (s *session) handshake(ctx context.Context, token string) error {
	if s.r.cfg.Protocol == PeerJS {
		s.id = peerJSID(s.idx)
		return s.expect(ctx, func(m *inbound) (bool, error) {
			switch m.Type {
			case "OPEN":
				return true, nil
			case "ERROR", "ID-TAKEN":
				return false, &codeError{code: m.Type, msg: string(m.Payload)}
			}
			return false, nil
		})
	}
	// Each pair gets a room of its own: in a shared lobby every join would be
	// announced to every session, O(N²) messages.
	room := "bench-" + strconv.Itoa(s.idx/2)
	b, _ := json.Marshal(wire.Hello{Type: wire.TypeHello, Name: "bench-" + strconv.Itoa(s.idx), Room: &room, Token: token, Attempt: s.attempt})
	if err := s.conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	return s.expect(ctx, func(m *inbound) (bool, error) {
		switch m.Type {
		case wire.TypeWelcome:
			if m.ID == "" {
				return false, &codeError{code: "bad-welcome", msg: "welcome without id"}
			}
			s.id, s.resume = m.ID, m.Resume
			if m.Heartbeat != nil && m.Heartbeat.Interval > 0 && s.r.cfg.Heartbeat == 0 {
				s.r.hbEvery.CompareAndSwap(0, m.Heartbeat.Interval*int64(time.Millisecond))
			}
			return true, nil
		case "error":
			return false, &codeError{code: m.Code, msg: m.Message}
		}
		return false, nil
	})
}

// expect reads messages until done reports true or an error. Other
// messages before it are ignored; at most 16 are tolerated.
func (s *session) expect(ctx context.Context, done func(*inbound) (bool, error)) error {
	for range 16 {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("handshake read: %w", err)
		}
		var m inbound
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		s.noteSeq(m.Seq)
		ok, err := done(&m)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("handshake: no welcome in 16 messages")
}

// peer is the other member of the session's pair, nil if not connected.
func (s *session) peer() *session {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.r.sessions[s.idx^1]
}

// readLoop reads until the link ends or the runner closes. One buffer per
// session is reused for every message: no allocation per read.
func (s *session) readLoop() {
	defer close(s.done)
	defer s.alive.Store(false)
	var buf bytes.Buffer
	for {
		// No context: coder/websocket would register a callback on it for
		// every read. Close cuts the sockets instead.
		_, rd, err := s.conn.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			if s.r.ctx.Err() == nil && !s.cut.Load() {
				s.r.dropped.Add(1)
				s.r.log.Debug("session dropped", "peer", s.idx, "err", err)
			}
			return
		}
		s.handle(buf.Bytes())
	}
}

// handle processes one server message; b is only valid during the call.
func (s *session) handle(b []byte) {
	now := time.Now()
	if seq, mk, ok := fastSignal(b); ok {
		s.record(now, mk)
		if s.noteSeq(seq) {
			s.sendAck()
		}
		return
	}
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		s.r.countError("undecodable")
		return
	}
	var data json.RawMessage
	switch m.Type {
	case "signal": // Switchboard
		data = m.Data
	case "CANDIDATE", "OFFER", "ANSWER": // PeerJS
		data = m.Payload
	case "error":
		s.r.countError(m.Code)
	case "ERROR", "EXPIRE", "LEAVE", "ID-TAKEN":
		s.r.countError(m.Type)
	}
	if data != nil {
		var mk mark
		if err := json.Unmarshal(data, &mk); err != nil || mk.T == 0 {
			s.r.countError("foreign-signal")
		} else {
			s.record(now, mk)
		}
	}
	if s.noteSeq(m.Seq) {
		s.sendAck()
	}
}

// record counts a benchmark signal received at now.
func (s *session) record(now time.Time, mk mark) {
	if run := s.r.run.Load(); run != 0 && mk.Run == run {
		s.r.hist.Load().record(now.Sub(s.r.epoch) - time.Duration(mk.T))
		s.r.delivered.Add(1)
	} else {
		s.r.stray.Add(1)
	}
}

// fastSignal recognises a benchmark signal without a full JSON decode, to
// keep the client's CPU for the server under test at 20,000 messages/s. It
// relies on the keys "r", "n", "t" appearing only in the mark (ids and the
// padding cannot hold a quote); anything else (another message type,
// whitespace after a colon, a missing key) returns ok=false and goes to the
// full decoder.
func fastSignal(b []byte) (seq uint64, mk mark, ok bool) {
	if !bytes.Contains(b, []byte(`"type":"signal"`)) && !bytes.Contains(b, []byte(`"type":"CANDIDATE"`)) {
		return 0, mark{}, false
	}
	run, ok1 := scanUint(b, `"r":`)
	n, ok2 := scanUint(b, `"n":`)
	t, ok3 := scanUint(b, `"t":`)
	if !ok1 || !ok2 || !ok3 || run > 1<<32-1 || t == 0 || t > 1<<63-1 {
		return 0, mark{}, false
	}
	seq, _ = scanUint(b, `"seq":`) // absent for PeerJS
	return seq, mark{Run: uint32(run), N: n, T: int64(t)}, true
}

// scanUint returns the unsigned integer right after the first key in b.
func scanUint(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	digits := b[i+len(key):]
	k := 0
	for k < len(digits) && digits[k] >= '0' && digits[k] <= '9' {
		k++
	}
	if k == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(digits[:k]), 10, 64)
	return v, err == nil
}

// noteSeq records a server seq and reports whether an ack is due.
func (s *session) noteSeq(seq uint64) bool {
	if seq == 0 || s.r.cfg.Protocol != Switchboard {
		return false
	}
	for {
		last := s.lastSeq.Load()
		if seq <= last || s.lastSeq.CompareAndSwap(last, seq) {
			break
		}
	}
	every := s.r.cfg.AckEvery
	return every > 0 && s.lastSeq.Load()-s.acked.Load() >= uint64(every)
}

func (s *session) sendAck() {
	ack := s.lastSeq.Load()
	s.acked.Store(ack)
	b := strconv.AppendUint([]byte(`{"type":"ping","ack":`), ack, 10)
	b = append(b, '}')
	if err := s.write(b); err != nil {
		s.r.log.Debug("ack write failed", "peer", s.idx, "err", err)
	}
}

// heartbeat sends the protocol's application keepalive.
func (s *session) heartbeat() {
	if s.r.cfg.Protocol == PeerJS {
		if err := s.write([]byte(`{"type":"HEARTBEAT"}`)); err != nil {
			s.r.log.Debug("heartbeat write failed", "peer", s.idx, "err", err)
		}
		return
	}
	s.sendAck()
}

// write writes b. It is bounded by the runner's watchdog, not by a context:
// coder/websocket registers a callback on a write's context, and at 20,000
// signals/s that bookkeeping (an allocation and a map entry under the
// context's lock, per write) is load on the CPUs the server under test needs.
func (s *session) write(b []byte) error {
	started := max(1, int64(time.Since(s.r.epoch)))
	first := s.writeSince.CompareAndSwap(0, started)
	err := s.conn.Write(context.Background(), websocket.MessageText, b)
	if first {
		s.writeSince.Store(0)
	}
	return err
}

// appendSignal appends a signal to peer carrying a mark and the padding.
// A Switchboard signal also carries the sender's ack (any client message
// may), as a real client would piggyback it.
func (r *Runner) appendSignal(b []byte, from, peer *session, run uint32, n uint64, t int64) []byte {
	if r.cfg.Protocol == PeerJS {
		b = append(b, `{"type":"CANDIDATE","dst":`...)
		b = append(b, peer.idJSON...)
		b = append(b, `,"payload":`...)
	} else {
		ack := from.lastSeq.Load()
		from.acked.Store(ack)
		b = append(b, `{"type":"signal","ack":`...)
		b = strconv.AppendUint(b, ack, 10)
		b = append(b, `,"to":`...)
		b = append(b, peer.idJSON...)
		b = append(b, `,"data":`...)
	}
	b = append(b, `{"r":`...)
	b = strconv.AppendUint(b, uint64(run), 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"p":"`...)
	b = append(b, r.pad...)
	b = append(b, `"}}`...)
	return b
}

func (r *Runner) countError(code string) {
	if code == "" {
		code = "unknown"
	}
	r.errMu.Lock()
	r.errCodes[code]++
	r.errMu.Unlock()
}
