package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// handoffRun marks the signals Handoff queues for a cut session. Relay runs
// count up from 1 per Runner and never reach it, so a queued signal is never
// taken for a relay one (or the other way round).
const handoffRun = 1<<32 - 1

// Close codes of PROTOCOL.md that end a resume.
const (
	closeResumeTaken   websocket.StatusCode = 4001 // stale attempt, or taken over by another socket
	closeResumeUnknown websocket.StatusCode = 4002 // resume token unknown or expired
)

// HandoffConfig describes one Handoff phase.
type HandoffConfig struct {
	// Count is how many sessions are cut and resumed: the first member of
	// Count pairs spread evenly over all pairs, at most one per pair, so the
	// other member is connected to queue signals for it. Required.
	Count int
	// Queued is how many signals the pair peer sends to a cut session before
	// it resumes; the resume must replay them. Default 1; negative: none.
	Queued int
	// Concurrency bounds the handoffs in flight. Default 8: hundreds finish
	// in seconds, and few enough run at once that the figures are each
	// handoff's own time rather than a queue behind the others.
	Concurrency int
	// Timeout bounds one handoff, from the cut to the last queued signal.
	// Default 10 s: far above a healthy handoff on loopback, short enough that
	// a wedged one does not hold the phase.
	Timeout time.Duration
	// Phase bounds the whole phase: no handoff starts after it, and those
	// under way end within their Timeout. Default 60 s.
	Phase time.Duration
}

// HandoffResult reports a Handoff phase.
type HandoffResult struct {
	Attempted int // sessions cut
	Skipped   int // picked but not started: the phase's time ran out
	Resumed   int // welcome{resumed} with the same id, and every queued signal received
	// OtherNode is how many of the attempts resumed on another node than the
	// one the session was cut from (all of them with two or more nodes).
	OtherNode int
	// Failures counts why the others failed: "close 4002 (resume unknown)", …
	Failures map[string]int
	Welcome  Latency // resume hello written → welcome read
	Replay   Latency // resume hello written → first queued signal read
	Queued   uint64  // signals the peers sent to cut sessions
	Replayed uint64  // of those, received after the resume
	Elapsed  time.Duration
}

// handoffOutcome is one session's handoff.
type handoffOutcome struct {
	failure          string // "" when resumed
	other            bool
	welcome, replay  time.Duration // replay < 0: nothing queued arrived
	queued, replayed uint64
}

// Handoff cuts Count sessions (the socket closes with no close frame, as a
// lost link does), has each one's pair peer send it Queued signals, then
// resumes it on another node with hello{resume, ack, attempt+1} and reads
// until every queued signal has been replayed. A resumed session replaces
// the cut one, so later relay runs use it; a failed one stays down. Call it
// after Connect, not during Relay. Switchboard only.
func (r *Runner) Handoff(ctx context.Context, hc HandoffConfig) (HandoffResult, error) {
	res := HandoffResult{Failures: map[string]int{}}
	if r.cfg.Protocol != Switchboard {
		return res, fmt.Errorf("loadgen: handoff: the %s protocol has no resume", r.cfg.Protocol)
	}
	if hc.Count <= 0 {
		return res, fmt.Errorf("loadgen: handoff count %d: want > 0", hc.Count)
	}
	if hc.Queued == 0 {
		hc.Queued = 1
	}
	hc.Queued = max(hc.Queued, 0)
	if hc.Concurrency <= 0 {
		hc.Concurrency = 8
	}
	if hc.Timeout <= 0 {
		hc.Timeout = 10 * time.Second
	}
	if hc.Phase <= 0 {
		hc.Phase = time.Minute
	}

	var picked []*session
	r.mu.Lock()
	pairs := len(r.sessions) / 2
	n := min(hc.Count, pairs)
	for j := range n {
		k := j * pairs / n
		s, p := r.sessions[2*k], r.sessions[2*k+1]
		if s != nil && p != nil && s.alive.Load() && p.alive.Load() {
			picked = append(picked, s)
		}
	}
	r.mu.Unlock()
	if len(picked) == 0 {
		return res, errors.New("loadgen: handoff: no connected pair")
	}

	var (
		welcome, replay histogram
		mu              sync.Mutex // guards res
		wg              sync.WaitGroup
		sem             = make(chan struct{}, hc.Concurrency)
	)
	start := time.Now()
	phase := time.NewTimer(hc.Phase)
	defer phase.Stop()
launch:
	for _, s := range picked {
		select {
		case <-ctx.Done():
			break launch
		case <-phase.C:
			break launch
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			o := r.handoff(ctx, s, hc)
			mu.Lock()
			defer mu.Unlock()
			res.Attempted++
			if o.other {
				res.OtherNode++
			}
			res.Queued += o.queued
			res.Replayed += o.replayed
			if o.failure != "" {
				res.Failures[o.failure]++
				r.log.Debug("handoff failed", "peer", s.idx, "reason", o.failure)
				return
			}
			res.Resumed++
			welcome.record(o.welcome)
			if o.replay >= 0 {
				replay.record(o.replay)
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Skipped = len(picked) - res.Attempted
	res.Welcome = welcome.summary()
	res.Replay = replay.summary()
	return res, ctx.Err()
}

// resumeNode is where a session cut from node h resumes: with three or more
// nodes the one that is neither h nor its pair peer's (h+1), so the session,
// its peer and its new home are three different nodes; with two the other
// one; with one the same.
func (r *Runner) resumeNode(h int) int {
	n := len(r.nodes)
	if n >= 3 {
		return (h + 2) % n
	}
	return (h + 1) % n
}

// handoff cuts s, queues signals for it and resumes it on another node.
func (r *Runner) handoff(ctx context.Context, s *session, hc HandoffConfig) handoffOutcome {
	o := handoffOutcome{replay: -1}
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	peer := s.peer()
	s.cut.Store(true)
	s.conn.CloseNow()
	select {
	case <-s.done: // the reader has stopped: s.lastSeq is final
	case <-ctx.Done():
		o.failure = "cut: " + shortReason(ctx.Err())
		return o
	}

	var buf []byte
	for j := range hc.Queued {
		if peer == nil || !peer.alive.Load() {
			break
		}
		buf = r.appendSignal(buf[:0], peer, s, handoffRun, uint64(j), int64(time.Since(r.epoch)))
		if err := peer.write(buf); err != nil {
			r.log.Debug("queued signal write failed", "peer", peer.idx, "err", err)
			break
		}
		o.queued++
	}

	node := r.resumeNode(s.node)
	o.other = node != s.node
	token := ""
	if r.cfg.Token != nil {
		token = r.cfg.Token(s.idx)
	}
	c, _, err := websocket.Dial(ctx, r.dialURL(s.idx, node, token), r.dialOptions(node))
	if err != nil {
		o.failure = "dial: " + shortReason(err)
		return o
	}
	c.SetReadLimit(1 << 20) // as in dial
	ns := &session{
		r: r, idx: s.idx, node: node, conn: c, id: s.id, idJSON: s.idJSON,
		resume: s.resume, attempt: s.attempt + 1, done: make(chan struct{}),
	}
	ack := s.lastSeq.Load()
	ns.lastSeq.Store(ack)
	ns.acked.Store(ack)
	if o.failure = r.resumeOn(ctx, ns, token, &o); o.failure != "" {
		c.CloseNow()
		return o
	}

	ns.alive.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		c.CloseNow()
		o.failure = "runner closed"
		return o
	}
	r.sessions[s.idx] = ns
	r.wg.Go(ns.readLoop)
	return o
}

// resumeOn sends ns's resume hello and reads the welcome and the queued
// signals, filling o's figures; it returns why the resume failed, "" if not.
func (r *Runner) resumeOn(ctx context.Context, ns *session, token string, o *handoffOutcome) string {
	hello, _ := json.Marshal(wire.Hello{
		Type: wire.TypeHello, Name: "bench-" + strconv.Itoa(ns.idx), Token: token,
		Resume: ns.resume, Attempt: ns.attempt, Meta: wire.Meta{Ack: ns.lastSeq.Load()},
	})
	t0 := time.Now()
	if err := ns.conn.Write(ctx, websocket.MessageText, hello); err != nil {
		return "hello: " + closeReason(err)
	}
	for welcomed := false; !welcomed; {
		_, b, err := ns.conn.Read(ctx)
		if err != nil {
			return closeReason(err)
		}
		var m inbound
		if err := json.Unmarshal(b, &m); err != nil {
			return "undecodable answer to the resume"
		}
		switch m.Type {
		case wire.TypeWelcome:
			if !m.Resumed || m.ID != ns.id {
				return "welcome without the session (resumed false or another id)"
			}
			o.welcome = time.Since(t0)
			if m.Resume != "" {
				ns.resume = m.Resume
			}
			welcomed = true
		case "error":
			return "error " + m.Code
		}
	}
	for o.replayed < o.queued {
		_, b, err := ns.conn.Read(ctx)
		if err != nil {
			return "replay: " + closeReason(err)
		}
		if seq, mk, ok := fastSignal(b); ok && mk.Run == handoffRun {
			if o.replayed == 0 {
				o.replay = time.Since(t0)
			}
			o.replayed++
			if ns.noteSeq(seq) {
				ns.sendAck()
			}
			continue
		}
		ns.handle(b)
	}
	return ""
}

// closeReason names how a resume socket ended: its close code when the
// server sent one.
func closeReason(err error) string {
	switch code := websocket.CloseStatus(err); code {
	case closeResumeUnknown:
		return "close 4002 (resume unknown)"
	case closeResumeTaken:
		return "close 4001 (stale attempt or taken over)"
	case -1:
		return shortReason(err)
	default:
		return "close " + strconv.Itoa(int(code))
	}
}
