package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// Environment of the client role (set by the test, never by a user).
const (
	envNATClientName = "SWITCHBOARD_TEST_NAME" // display name, unique per run: "A", "B", "LAN"
	envNATClientURL  = "SWITCHBOARD_TEST_URL"  // ws:// URL of the hub as this client sees it
)

const (
	// natRoom is the named room every client joins; named, not the lobby, so the test
	// works with SWITCHBOARD_LOBBY=false too.
	natRoom = "nat"

	// natMediaPackets is how many RTP packets a side must receive before it reports
	// media: one second of 20 ms audio frames, enough to show a flow rather than a stray
	// packet, short enough to keep each call quick.
	natMediaPackets = 50
	// natFrame is the packet interval of the synthetic audio track (Opus' usual 20 ms).
	natFrame = 20 * time.Millisecond

	// natIOTimeout bounds one signaling dial, handshake or write: a hub on the same
	// simulated network answers in milliseconds; 5 s covers -race on a busy machine.
	natIOTimeout = 5 * time.Second
	// natBackoffMin and natBackoffMax bound reconnect backoff: a restarting server is
	// back within about a second, and the test must not wait long after that.
	natBackoffMin = 100 * time.Millisecond
	natBackoffMax = 2 * time.Second
	// natDefaultHeartbeat is the ping interval when the welcome names none (the hub's
	// documented default is 20 s).
	natDefaultHeartbeat = 20 * time.Second
)

// natWire is any server message, as every Go client of the protocol decodes it.
type natWire = wire.Any

// natSignal is the client-defined payload of a signal message between two test peers.
type natSignal struct {
	Call      string                     `json:"call"`
	Direct    bool                       `json:"direct,omitempty"` // the call uses no TURN server
	SDP       *webrtc.SessionDescription `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// natClient is one pion/webrtc peer with its signaling connection. Its state is owned by
// the event loop (run); pion's callbacks touch only values fixed when they were
// installed, the socket (through send, under connMu) and the event stream.
type natClient struct {
	name, url string
	emit      *natEmit
	api       *webrtc.API
	apiDirect *webrtc.API // for calls without TURN: fails fast, see natWebRTCAPI

	// owned by run
	id        string
	resume    string
	lastSeq   uint64
	sockets   uint64 // sockets opened for this session: hello.attempt
	connN     int
	ice       []webrtc.ICEServer
	peers     map[string]string // id → name
	calls     map[string]*natCall
	heartbeat time.Duration
	liveFor   time.Duration // no message for this long: the connection is dead

	connMu sync.Mutex
	conn   *websocket.Conn // current connection, nil between connections
}

// natCall is one call. Its PeerConnection outlives signaling reconnects.
type natCall struct {
	id       string
	peerID   string
	peerName string
	pc       *webrtc.PeerConnection
	pending  []webrtc.ICECandidateInit // remote candidates before the remote description
	rtp      atomic.Int64              // RTP packets received; written by the track reader
	stop     context.CancelFunc        // stops the media writer
	direct   bool                      // no TURN server: only host and srflx candidates

	typesMu sync.Mutex
	types   map[string]bool // local candidate types gathered; written by pion's callback
}

// natClientRole is the client process: it connects to the hub named by
// SWITCHBOARD_TEST_URL, auto-accepts calls, obeys commands on stdin and reports events
// on stdout. It ends when stdin closes (the test is done with it) or on SIGTERM.
func natClientRole() int {
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	c := &natClient{
		name:  os.Getenv(envNATClientName),
		url:   os.Getenv(envNATClientURL),
		emit:  newNATEmit(os.Stdout),
		peers: map[string]string{},
		calls: map[string]*natCall{},
	}
	if c.name == "" || c.url == "" {
		fmt.Fprintf(os.Stderr, "%s and %s must be set\n", envNATClientName, envNATClientURL)
		return 2
	}
	var err error
	if c.api, err = natWebRTCAPI(false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if c.apiDirect, err = natWebRTCAPI(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	cmds := make(chan natCommand)
	go func() { // owner: this process; ends at stdin EOF, which also ends run
		defer cancel()
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var cmd natCommand
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
				c.emit.emit(natEvent{Ev: "error", Name: c.name, Err: fmt.Sprintf("bad command %q: %v", sc.Bytes(), err)})
				continue
			}
			select {
			case cmds <- cmd:
			case <-ctx.Done():
				return
			}
		}
	}()
	c.run(ctx, cmds)
	for _, call := range c.calls {
		c.endCall(call, "exit")
	}
	return 0
}

// natWebRTCAPI is the pion API every test peer uses. It does NOT force relay-only ICE:
// the topology alone must make the relay the only working path. IPv4 UDP only, because
// the simulated network is IPv4 (link-local IPv6 on the veths would only add dead pairs),
// and no mDNS, so candidates carry plain addresses the test can report.
//
// failFast is for the calls that must fail (no TURN server between two symmetric NATs):
// ICE gives up after checking for 2+3 s instead of pion's default 5+25 s. A direct path,
// were there one, would be found in well under a second on this network.
func natWebRTCAPI(failFast bool) (*webrtc.API, error) {
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("register codecs: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if failFast {
		se.SetICETimeouts(2*time.Second, 3*time.Second, time.Second)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se)), nil
}

// natDialed is the outcome of one connection attempt.
type natDialed struct {
	conn    *websocket.Conn
	welcome natWire
	err     error
}

// natLink is one live connection's reader: it owns nothing but the read side.
type natLink struct {
	conn   *websocket.Conn
	msgs   chan natWire
	err    chan error // one value, then the reader is done
	cancel context.CancelFunc
	reader sync.WaitGroup
}

// run is the client's single event loop: connection attempts, server messages, test
// commands and pings all arrive here, so commands are served while disconnected too
// (a call's media outlives its signaling, and the test watches it while the server
// drains).
func (c *natClient) run(ctx context.Context, cmds <-chan natCommand) {
	dialed := make(chan natDialed, 1)
	var dialing sync.WaitGroup // at most one attempt at a time
	dial := func() {
		hello := map[string]any{"type": "hello", "name": c.name, "room": natRoom}
		c.sockets++
		if c.resume == "" {
			c.sockets = 1 // a fresh session
		} else {
			hello["resume"] = c.resume
			hello["ack"] = c.lastSeq
			hello["attempt"] = c.sockets
		}
		dialing.Go(func() {
			conn, w, err := natDial(ctx, c.url, hello)
			dialed <- natDialed{conn, w, err}
		})
	}
	var (
		link    *natLink
		retry   <-chan time.Time
		ping    <-chan time.Time
		lastRx  time.Time
		backoff = natBackoffMin
	)
	dropLink := func() {
		c.connMu.Lock()
		c.conn = nil
		c.connMu.Unlock()
		link.cancel()
		link.conn.CloseNow()
		link.reader.Wait()
		link, ping = nil, nil
	}
	defer func() {
		if link != nil {
			dropLink()
		}
		dialing.Wait()
		if len(dialed) > 0 {
			if d := <-dialed; d.conn != nil {
				d.conn.CloseNow()
			}
		}
	}()
	dial()
	var pingTicker *time.Ticker
	defer func() {
		if pingTicker != nil {
			pingTicker.Stop()
		}
	}()
	for {
		var msgs <-chan natWire
		var readErr <-chan error
		if link != nil {
			msgs, readErr = link.msgs, link.err
		}
		select {
		case <-ctx.Done():
			return
		case d := <-dialed:
			if d.err != nil {
				if websocket.CloseStatus(d.err) == 4002 || errors.Is(d.err, errNATResumeRefused) {
					c.resume, c.lastSeq = "", 0 // resume unknown or expired: start fresh
				}
				fmt.Fprintf(os.Stderr, "connect: %v\n", d.err)
				// Full jitter, so that clients of a restarted server do not come back in step.
				retry = time.After(time.Duration(rand.Int64N(int64(backoff))) + natBackoffMin/2)
				backoff = min(2*backoff, natBackoffMax)
				continue
			}
			backoff = natBackoffMin
			link = c.welcome(ctx, d.conn, d.welcome)
			if pingTicker != nil {
				pingTicker.Stop()
			}
			pingTicker = time.NewTicker(c.heartbeat)
			ping, lastRx = pingTicker.C, time.Now()
		case <-retry:
			retry = nil
			dial()
		case err := <-readErr:
			code := int(websocket.CloseStatus(err))
			reason := err.Error()
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				reason = ce.Reason
			}
			if code == 4002 {
				c.resume, c.lastSeq = "", 0
			}
			c.emit.emit(natEvent{Ev: "closed", Name: c.name, Code: code, Reason: reason})
			dropLink()
			retry = time.After(natBackoffMin)
		case w := <-msgs:
			lastRx = time.Now()
			c.handle(ctx, w)
		case cmd := <-cmds:
			c.command(ctx, cmd)
		case <-ping:
			// A pong answers every ping, so silence for a whole ping interval on top of
			// the timeout the server gave means the link is dead.
			if time.Since(lastRx) > c.liveFor+c.heartbeat {
				c.emit.emit(natEvent{Ev: "closed", Name: c.name, Code: -1, Reason: "heartbeat timeout"})
				dropLink()
				retry = time.After(natBackoffMin)
				continue
			}
			c.send(ctx, map[string]any{"type": "ping", "ack": c.lastSeq})
		}
	}
}

// errNATResumeRefused: the server answered a resuming hello with an error.
var errNATResumeRefused = errors.New("resume refused")

// natDial dials, sends hello and reads the first message, which must be welcome.
func natDial(ctx context.Context, url string, hello map[string]any) (*websocket.Conn, natWire, error) {
	ctx, cancel := context.WithTimeout(ctx, natIOTimeout)
	defer cancel()
	// No proxy, whatever the environment says: the hub is on the simulated network.
	noProxy := &http.Client{Transport: &http.Transport{Proxy: nil}}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: noProxy})
	if err != nil {
		return nil, natWire{}, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20) // a welcome is a few KiB; be generous, the server is trusted
	var w natWire
	if err := natWrite(ctx, conn, hello); err != nil {
		conn.CloseNow()
		return nil, w, err
	}
	if err := natRead(ctx, conn, &w); err != nil {
		conn.CloseNow()
		return nil, w, fmt.Errorf("waiting for welcome: %w", err)
	}
	if w.Type != "welcome" {
		conn.CloseNow()
		err := fmt.Errorf("first message is %q (%s %s), want welcome", w.Type, w.Code, w.Message)
		if w.Type == "error" && hello["resume"] != nil {
			// A refused resume is an error, then close 4002: start fresh next time.
			err = fmt.Errorf("%w: %w", errNATResumeRefused, err)
		}
		return nil, w, err
	}
	return conn, w, nil
}

// welcome adopts a new connection and its welcome, and starts its reader.
func (c *natClient) welcome(ctx context.Context, conn *websocket.Conn, w natWire) *natLink {
	if !w.Resumed {
		c.lastSeq = w.Seq // 0 for a fresh session
		clear(c.peers)
	}
	c.id = w.ID
	if w.Resume != "" {
		c.resume = w.Resume
	}
	c.ice = natToPion(w.ICEServers)
	var hb wire.Heartbeat
	if w.Heartbeat != nil {
		hb = *w.Heartbeat
	}
	c.heartbeat = time.Duration(hb.Interval) * time.Millisecond
	if c.heartbeat <= 0 {
		c.heartbeat = natDefaultHeartbeat
	}
	c.liveFor = time.Duration(hb.Timeout) * time.Millisecond
	if c.liveFor <= 0 {
		c.liveFor = 2 * c.heartbeat
	}
	for _, p := range w.Peers {
		if p.ID != c.id {
			c.peers[p.ID] = p.Name
		}
	}
	c.connN++
	c.connMu.Lock()
	c.conn = conn
	c.connMu.Unlock()

	rctx, cancel := context.WithCancel(ctx)
	l := &natLink{conn: conn, msgs: make(chan natWire), err: make(chan error, 1), cancel: cancel}
	l.reader.Go(func() {
		for {
			var w natWire
			if err := natRead(rctx, conn, &w); err != nil {
				l.err <- err
				return
			}
			select {
			case l.msgs <- w:
			case <-rctx.Done():
				l.err <- rctx.Err()
				return
			}
		}
	})

	urls := []string{}
	for _, s := range c.ice {
		urls = append(urls, s.URLs...)
	}
	fmt.Fprintf(os.Stderr, "welcome id=%s resumed=%v iceServers=%v\n", c.id, w.Resumed, urls)
	c.emit.emit(natEvent{Ev: "ready", Name: c.name, ID: c.id, Resumed: w.Resumed, Conn: c.connN, ICE: urls})
	c.emitPeers()
	return l
}

// handle acts on one server message.
func (c *natClient) handle(ctx context.Context, w natWire) {
	if w.Seq != 0 {
		if w.Seq <= c.lastSeq { // a replay of what we already processed, after a resume
			return
		}
		c.lastSeq = w.Seq
	}
	switch w.Type {
	case "pong", "ringing":
	case "peer-joined":
		p, err := w.PeerInfo()
		if err != nil {
			c.fail("peer-joined without peer object: %v", err)
			return
		}
		c.peers[p.ID] = p.Name
		c.emitPeers()
	case "peer-left":
		delete(c.peers, w.ID)
		c.emitPeers()
	case "joined":
		clear(c.peers)
		for _, p := range w.Peers {
			if p.ID != c.id {
				c.peers[p.ID] = p.Name
			}
		}
		c.emitPeers()
	case "ice-servers":
		c.ice = natToPion(w.ICEServers)
	case "call": // incoming: accept every call
		name := w.Name
		if name == "" {
			name = c.peers[w.From]
		}
		c.calls[w.Call] = &natCall{id: w.Call, peerID: w.From, peerName: name}
		c.send(ctx, map[string]any{"type": "accept", "call": w.Call})
	case "accepted":
		call := c.calls[w.Call]
		if call == nil {
			c.fail("accepted for unknown call %q", w.Call)
			return
		}
		if w.Polite != nil && *w.Polite {
			// The callee waits for the offer: the caller's signals say whether the call
			// uses TURN (natSignal.Direct), so its PeerConnection is made on the first.
			return
		}
		// The impolite side (the caller) makes the offer.
		if err := c.startPC(call); err != nil {
			c.fail("call %s: %v", call.id, err)
			return
		}
		if err := c.offer(ctx, call); err != nil {
			c.fail("call %s: offer: %v", call.id, err)
		}
	case "signal":
		c.signal(ctx, w)
	case "hangup", "declined", "cancelled", "busy", "timeout":
		if call := c.calls[w.Call]; call != nil {
			c.endCall(call, w.Type+" "+w.Reason)
		}
	case "error":
		c.fail("server error %s: %s", w.Code, w.Message)
	default:
		fmt.Fprintf(os.Stderr, "ignoring %q message\n", w.Type)
	}
}

// command acts on one command from the test.
func (c *natClient) command(ctx context.Context, cmd natCommand) {
	switch cmd.Cmd {
	case "call":
		id := ""
		for pid, name := range c.peers {
			if name == cmd.To {
				id = pid
			}
		}
		if id == "" {
			c.fail("call %s: no peer named %q", cmd.Call, cmd.To)
			return
		}
		c.calls[cmd.Call] = &natCall{id: cmd.Call, peerID: id, peerName: cmd.To, direct: cmd.Direct}
		c.send(ctx, map[string]any{"type": "call", "to": id, "call": cmd.Call})
	case "hangup":
		if call := c.calls[cmd.Call]; call != nil {
			c.send(ctx, map[string]any{"type": "hangup", "call": cmd.Call})
			c.endCall(call, "local hangup")
		}
	case "stats":
		call := c.calls[cmd.Call]
		if call == nil {
			c.fail("stats: no call %q", cmd.Call)
			return
		}
		c.emit.emit(natEvent{Ev: "stats", Name: c.name, Call: call.id, RTP: int(call.rtp.Load())})
	case "probe":
		conn, err := net.DialTimeout("tcp", cmd.Addr, 2*time.Second)
		if err == nil {
			conn.Close()
		} else {
			fmt.Fprintf(os.Stderr, "probe %s: %v\n", cmd.Addr, err)
		}
		c.emit.emit(natEvent{Ev: "probe", Name: c.name, Addr: cmd.Addr, OK: err == nil})
	default:
		c.fail("unknown command %q", cmd.Cmd)
	}
}

// startPC creates the call's PeerConnection with a synthetic audio track and a receiver
// that reports once natMediaPackets RTP packets have arrived.
func (c *natClient) startPC(call *natCall) error {
	if call.pc != nil {
		return nil
	}
	api, servers := c.api, c.ice
	if call.direct {
		api, servers = c.apiDirect, nil
		for _, s := range c.ice {
			for _, u := range s.URLs {
				if strings.HasPrefix(u, "stun:") {
					servers = append(servers, webrtc.ICEServer{URLs: []string{u}})
				}
			}
		}
	}
	call.types = map[string]bool{}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: servers})
	if err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		"audio", "nat-"+c.name)
	if err != nil {
		pc.Close()
		return fmt.Errorf("track: %w", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		pc.Close()
		return fmt.Errorf("add track: %w", err)
	}
	call.pc = pc
	mctx, stop := context.WithCancel(context.Background())
	call.stop = stop

	// RTCP must be read for pion's interceptors to make progress; ends when pc closes.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	// The synthetic media: one 20 ms "Opus" frame of filler bytes per tick (the peers
	// count packets, they do not decode). Ends with the call.
	go func() {
		tick := time.NewTicker(natFrame)
		defer tick.Stop()
		frame := make([]byte, 80)
		for {
			select {
			case <-mctx.Done():
				return
			case <-tick.C:
				frame[0]++ // vary the payload a little; its content is irrelevant
				// Errors before the transport is up or after it is closed are expected;
				// what matters is what the other side receives.
				_ = track.WriteSample(media.Sample{Data: frame, Duration: natFrame})
			}
		}
	}()

	peerID, callID, peerName, direct := call.peerID, call.id, call.peerName, call.direct
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		call.typesMu.Lock()
		call.types[cand.Typ.String()] = true
		call.typesMu.Unlock()
		init := cand.ToJSON()
		c.send(mctx, map[string]any{"type": "signal", "to": peerID,
			"data": natSignal{Call: callID, Direct: direct, Candidate: &init}})
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		fmt.Fprintf(os.Stderr, "call %s: ice %s\n", callID, s)
		if s != webrtc.ICEConnectionStateFailed {
			return
		}
		call.typesMu.Lock()
		types := slices.Sorted(maps.Keys(call.types))
		call.typesMu.Unlock()
		c.emit.emit(natEvent{Ev: "ice-failed", Name: c.name, Call: callID, Peer: peerName, Local: strings.Join(types, ",")})
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		n := 0
		for {
			if _, _, err := remote.ReadRTP(); err != nil {
				fmt.Fprintf(os.Stderr, "call %s: track ended after %d packets: %v\n", callID, n, err)
				return
			}
			n++
			call.rtp.Store(int64(n))
			if n != natMediaPackets {
				continue
			}
			ev := natEvent{Ev: "media", Name: c.name, Call: callID, Peer: peerName, RTP: n}
			if pair, err := rcv.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				ev.Local, ev.Remote = pair.Local.Typ.String(), pair.Remote.Typ.String()
				ev.LocalAddr = net.JoinHostPort(pair.Local.Address, fmt.Sprint(pair.Local.Port))
				ev.RemoteAddr = net.JoinHostPort(pair.Remote.Address, fmt.Sprint(pair.Remote.Port))
			} else {
				ev.Err = fmt.Sprintf("no selected candidate pair: %v", err)
			}
			c.emit.emit(ev)
		}
	})
	return nil
}

func (c *natClient) offer(ctx context.Context, call *natCall) error {
	offer, err := call.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := call.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	c.send(ctx, map[string]any{"type": "signal", "to": call.peerID, "data": natSignal{Call: call.id, Direct: call.direct, SDP: &offer}})
	return nil
}

// signal applies a description or candidate from the peer. Candidates that arrive before
// the description (the sender's gathering races its own offer/answer) wait in pending.
func (c *natClient) signal(ctx context.Context, w natWire) {
	var s natSignal
	if err := json.Unmarshal(w.Data, &s); err != nil {
		c.fail("signal from %s: %v", w.From, err)
		return
	}
	call := c.calls[s.Call]
	if call == nil {
		fmt.Fprintf(os.Stderr, "signal for unknown call %q (ended?)\n", s.Call)
		return
	}
	if call.pc == nil {
		call.direct = s.Direct // the callee learns it from the caller's first signal
	}
	if err := c.startPC(call); err != nil {
		c.fail("call %s: %v", call.id, err)
		return
	}
	switch {
	case s.SDP != nil:
		if err := call.pc.SetRemoteDescription(*s.SDP); err != nil {
			c.fail("call %s: set remote %s: %v", call.id, s.SDP.Type, err)
			return
		}
		for _, cand := range call.pending {
			if err := call.pc.AddICECandidate(cand); err != nil {
				c.fail("call %s: add candidate: %v", call.id, err)
			}
		}
		call.pending = nil
		if s.SDP.Type == webrtc.SDPTypeOffer {
			answer, err := call.pc.CreateAnswer(nil)
			if err == nil {
				err = call.pc.SetLocalDescription(answer)
			}
			if err != nil {
				c.fail("call %s: answer: %v", call.id, err)
				return
			}
			c.send(ctx, map[string]any{"type": "signal", "to": call.peerID, "data": natSignal{Call: call.id, Direct: call.direct, SDP: &answer}})
		}
	case s.Candidate != nil:
		if call.pc.RemoteDescription() == nil {
			call.pending = append(call.pending, *s.Candidate)
			return
		}
		if err := call.pc.AddICECandidate(*s.Candidate); err != nil {
			c.fail("call %s: add candidate: %v", call.id, err)
		}
	}
}

func (c *natClient) endCall(call *natCall, reason string) {
	delete(c.calls, call.id)
	if call.stop != nil {
		call.stop()
	}
	if call.pc != nil {
		if err := call.pc.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "call %s: close: %v\n", call.id, err)
		}
	}
	c.emit.emit(natEvent{Ev: "ended", Name: c.name, Call: call.id, Peer: call.peerName, Reason: reason})
}

// send writes one message on the current connection; a message sent between connections
// is lost, like a browser's would be, and reported on stderr.
func (c *natClient) send(ctx context.Context, msg any) {
	c.connMu.Lock()
	conn := c.conn
	c.connMu.Unlock()
	if conn == nil {
		fmt.Fprintf(os.Stderr, "not connected, dropped %v\n", msg)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, natIOTimeout)
	defer cancel()
	if err := natWrite(ctx, conn, msg); err != nil {
		fmt.Fprintf(os.Stderr, "send: %v\n", err)
	}
}

func (c *natClient) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, msg)
	c.emit.emit(natEvent{Ev: "error", Name: c.name, Err: msg})
}

func (c *natClient) emitPeers() {
	names := []string{}
	for _, n := range c.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	c.emit.emit(natEvent{Ev: "peers", Name: c.name, Peers: names})
}

func natToPion(servers []wire.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

func natWrite(ctx context.Context, conn *websocket.Conn, msg any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func natRead(ctx context.Context, conn *websocket.Conn, v any) error {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %q: %w", b, err)
	}
	return nil
}
