package signaling

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

func TestHelloWelcome(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		room     any // nil: omit
		wantRoom string
	}{
		{name: "lobby", wantRoom: ""},
		{name: "named room", room: "demo", wantRoom: "demo"},
		{name: "explicit lobby", room: "", wantRoom: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, tt.cfg)
			a := dial(t, ts.url, nil)
			fields := map[string]any{"name": "Alice", "ref": 1}
			if tt.room != nil {
				fields["room"] = tt.room
			}
			w := a.hello(fields)
			if w.Resumed || w.ID == "" || w.Resume == "" || w.ID == w.Resume {
				t.Fatalf("welcome = %s, want fresh id and resume token", w.raw)
			}
			if w.Room == nil || *w.Room != tt.wantRoom || len(w.Peers) != 0 || w.Seq != 0 {
				t.Fatalf("welcome = %s, want room %q, no peers, seq 0", w.raw, tt.wantRoom)
			}
			if w.Heartbeat == nil || w.Heartbeat.Interval != 20000 || w.Heartbeat.Timeout != 20000 {
				t.Fatalf("welcome heartbeat = %+v, want 20000/20000", w.Heartbeat)
			}
			if len(w.ICEServers) != 2 || w.ICEServers[1].Username != "u:"+w.ID || w.TTL < 86000 {
				t.Fatalf("welcome iceServers = %+v ttl %d, want minted for %s", w.ICEServers, w.TTL, w.ID)
			}
			if string(w.Ref) != "1" {
				t.Fatalf("welcome ref = %s, want 1", w.Ref)
			}
			if len(w.ID) < 20 {
				t.Fatalf("id %q too short to be unguessable", w.ID)
			}

			b := dial(t, ts.url, nil)
			fields["name"] = "Bob"
			wb := b.hello(fields)
			if len(wb.Peers) != 1 || wb.Peers[0].ID != w.ID || wb.Peers[0].Name != "Alice" || !wb.Peers[0].Nearby {
				t.Fatalf("Bob's welcome peers = %+v, want Alice (nearby: same loopback IP)", wb.Peers)
			}
			pj := a.expect("peer-joined")
			if p := pj.peerInfo(t); p.ID != wb.ID || p.Name != "Bob" || !p.Nearby || pj.Seq != 1 {
				t.Fatalf("peer-joined = %s, want Bob with seq 1", pj.raw)
			}
			// Same names are fine; ids differ.
			c := dial(t, ts.url, nil)
			wc := c.hello(fields)
			if wc.ID == wb.ID {
				t.Fatalf("two sessions share id %s", wc.ID)
			}
			a.expect("peer-joined")
			b.expect("peer-joined")
			// A goodbye (1000) ends the session at once.
			c.c.Close(websocket.StatusNormalClosure, "bye")
			if pl := a.expect("peer-left"); pl.ID != wc.ID || pl.Reason != "left" {
				t.Fatalf("peer-left = %s, want %s left", pl.raw, wc.ID)
			}
			if st := ts.hub.Stats(); st.Rooms != 1 {
				t.Fatalf("Stats().Rooms = %d, want 1", st.Rooms)
			}
		})
	}
}

func TestRelay(t *testing.T) {
	ts := newServer(t, Config{})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	c := join(t, ts, "c", "r")
	other := join(t, ts, "o", "elsewhere")
	a.expect("peer-joined")
	a.expect("peer-joined")
	b.expect("peer-joined")

	tests := []struct {
		name string
		to   string
		data string
		want []*client
	}{
		{name: "by id", to: b.id, data: `{"sdp":{"type":"offer","sdp":"v=0\r\n"}}`, want: []*client{b}},
		{name: "star", to: "*", data: `{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host"}`, want: []*client{b, c}},
		{name: "scalar data", to: c.id, data: `42`, want: []*client{c}},
		{name: "null data", to: c.id, data: `null`, want: []*client{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.sendRaw([]byte(fmt.Sprintf(`{"type":"signal","to":%q,"data":%s}`, tt.to, tt.data)))
			for _, r := range tt.want {
				w := r.expect("signal")
				if w.From != a.id || string(w.Data) != tt.data {
					t.Fatalf("%s got %s, want from %s data %s", r.id, w.raw, a.id, tt.data)
				}
			}
			// The sender hears nothing on success: each recipient's answer is the
			// next thing it gets (deliveries are in order, so whatever the send
			// caused for a would come first) instead of a quiet window.
			for _, r := range tt.want {
				r.send(map[string]any{"type": "signal", "to": a.id, "data": "ack"})
				if w := a.expect("signal"); w.From != r.id || string(w.Data) != `"ack"` {
					t.Fatalf("sender got %s, want only the ack from %s", w.raw, r.id)
				}
			}
			other.quiet(0)
		})
	}
	// A peer in another room is not reachable even by id.
	a.send(map[string]any{"type": "signal", "to": other.id, "data": 1, "ref": "x"})
	if w := a.expectError(codePeerUnavailable); w.To != other.id || string(w.Ref) != `"x"` {
		t.Fatalf("error = %s, want to=%s ref x", w.raw, other.id)
	}
}

// TestErrorCodes drives every error code of PROTOCOL.md and checks whether the
// connection stays usable afterwards.
func TestErrorCodes(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name      string
		cfg       Config
		run       func(t *testing.T, ts *testServer) *client // returns the client that got the error
		code      string
		closeCode websocket.StatusCode // 0: the connection must stay usable
	}{
		{name: "bad json", code: codeBadMessage, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.sendRaw([]byte(`{"type":"signal",`))
			return a
		}},
		{name: "not an object", code: codeBadMessage, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.sendRaw([]byte(`[1,2]`))
			return a
		}},
		{name: "missing field", code: codeBadMessage, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.send(map[string]any{"type": "signal", "to": "x"})
			return a
		}},
		{name: "bad hello name", code: codeBadMessage, run: func(t *testing.T, ts *testServer) *client {
			a := dial(t, ts.url, nil)
			a.send(map[string]any{"type": "hello", "name": ""})
			return a
		}},
		{name: "unknown type", code: codeUnknownType, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.send(map[string]any{"type": "teleport"})
			return a
		}},
		{name: "hello required", code: codeHelloRequired, run: func(t *testing.T, ts *testServer) *client {
			a := dial(t, ts.url, nil)
			a.send(map[string]any{"type": "ping"})
			return a
		}},
		{name: "peer unavailable", code: codePeerUnavailable, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.send(map[string]any{"type": "signal", "to": "nobody", "data": 1})
			return a
		}},
		{name: "rate limited", cfg: Config{MessageRate: 0.001, MessageBurst: 2}, code: codeRateLimited,
			run: func(t *testing.T, ts *testServer) *client {
				a := join(t, ts, "a", "")
				for range 3 {
					a.send(map[string]any{"type": "ping"})
				}
				a.expect("pong")
				a.expect("pong")
				return a
			}},
		{name: "unauthorized", cfg: Config{AuthSecret: secret}, code: codeUnauthorized, closeCode: websocket.StatusPolicyViolation,
			run: func(t *testing.T, ts *testServer) *client {
				a := dial(t, ts.url, nil)
				a.send(map[string]any{"type": "hello", "name": "a", "token": "garbage"})
				return a
			}},
		{name: "too large", code: codeTooLarge, closeCode: websocket.StatusMessageTooBig,
			run: func(t *testing.T, ts *testServer) *client {
				a := join(t, ts, "a", "")
				a.sendRaw([]byte(`{"type":"signal","to":"*","data":"` + strings.Repeat("x", 70<<10) + `"}`))
				return a
			}},
		{name: "room full", cfg: Config{MaxRoomSize: 2}, code: codeRoomFull, run: func(t *testing.T, ts *testServer) *client {
			join(t, ts, "a", "r")
			join(t, ts, "b", "r")
			c := dial(t, ts.url, nil)
			c.send(map[string]any{"type": "hello", "name": "c", "room": "r"})
			return c
		}},
		{name: "room full on join", cfg: Config{MaxRoomSize: 2}, code: codeRoomFull, run: func(t *testing.T, ts *testServer) *client {
			join(t, ts, "a", "r")
			join(t, ts, "b", "r")
			c := join(t, ts, "c", "")
			c.send(map[string]any{"type": "join", "room": "r"})
			return c
		}},
		{name: "no such call", code: codeNoSuchCall, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "")
			a.send(map[string]any{"type": "accept", "call": "nope"})
			return a
		}},
		{name: "busy caller", code: codeBusy, run: func(t *testing.T, ts *testServer) *client {
			a := join(t, ts, "a", "r")
			b := join(t, ts, "b", "r")
			a.send(map[string]any{"type": "call", "to": b.id, "call": "c1"})
			a.expect("ringing", "peer-joined")
			a.send(map[string]any{"type": "call", "to": b.id, "call": "c2"})
			return a
		}},
		{name: "undeliverable", cfg: Config{SendQueue: 4, ReplayWindow: 4, ResumeGrace: time.Minute}, code: codeUndeliverable,
			run: func(t *testing.T, ts *testServer) *client {
				a := join(t, ts, "a", "r")
				b := join(t, ts, "b", "r")
				a.expect("peer-joined")
				b.c.CloseNow() // b drops into its grace; its window holds 4 unwritten messages
				eventually(t, "b detached", func() bool { return ts.hub.Stats().Detached == 1 })
				for i := range 5 {
					a.send(map[string]any{"type": "signal", "to": b.id, "data": i})
				}
				return a
			}},
		{name: "undeliverable at grace end", cfg: Config{ResumeGrace: 300 * time.Millisecond}, code: codeUndeliverable,
			run: func(t *testing.T, ts *testServer) *client {
				a := join(t, ts, "a", "r")
				b := join(t, ts, "b", "r")
				a.expect("peer-joined")
				b.c.CloseNow()
				eventually(t, "b detached", func() bool { return ts.hub.Stats().Detached == 1 })
				a.send(map[string]any{"type": "signal", "to": b.id, "data": "lost"})
				a.expect("peer-left")
				return a
			}},
		{name: "server full", cfg: Config{MaxSessions: 1}, code: codeServerFull, closeCode: websocket.StatusTryAgainLater,
			run: func(t *testing.T, ts *testServer) *client {
				join(t, ts, "a", "")
				return dial(t, ts.url, nil)
			}},
		{name: "forbidden room (no lobby)", cfg: Config{NoLobby: true}, code: codeForbiddenRoom, run: func(t *testing.T, ts *testServer) *client {
			a := dial(t, ts.url, nil)
			a.send(map[string]any{"type": "hello", "name": "a"})
			return a
		}},
		{name: "internal error", code: codeInternal, run: func(t *testing.T, ts *testServer) *client {
			ts.ice.fail.Store(true)
			a := dial(t, ts.url, nil)
			a.send(map[string]any{"type": "hello", "name": "a"})
			return a
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, tt.cfg)
			c := tt.run(t, ts)
			w := c.expectError(tt.code)
			if w.Message == "" {
				t.Errorf("error %s has no message", w.raw)
			}
			if tt.closeCode != 0 {
				if got := c.closed(); got != tt.closeCode {
					t.Fatalf("close code = %v, want %v", got, tt.closeCode)
				}
				return
			}
			// Still usable: a ping gets a pong (or, before hello, another answer).
			c.send(map[string]any{"type": "ping", "ref": 99})
			for {
				w := c.next()
				if w.Type == "pong" || w.Type == "error" && string(w.Ref) == "99" {
					break
				}
			}
		})
	}
}

func TestPingPongAck(t *testing.T) {
	ts := newServer(t, Config{})
	a := join(t, ts, "a", "")
	for i := uint64(1); i <= 3; i++ {
		a.send(map[string]any{"type": "ping", "seq": i})
		if w := a.expect("pong"); w.Ack == nil || *w.Ack != i || w.Seq != 0 {
			t.Fatalf("pong = %s, want ack %d and no seq", w.raw, i)
		}
	}
	a.send(map[string]any{"type": "ping", "seq": 2}) // duplicate: dropped
	a.send(map[string]any{"type": "ping"})
	if w := a.expect("pong"); *w.Ack != 3 {
		t.Fatalf("pong = %s, want ack 3", w.raw)
	}
	// Nothing else came for the duplicate: the next ping's pong is the next message.
	a.send(map[string]any{"type": "ping"})
	if w := a.expect("pong"); *w.Ack != 3 {
		t.Fatalf("pong = %s, want ack 3 again", w.raw)
	}
}

func TestJoin(t *testing.T) {
	ts := newServer(t, Config{})
	a := join(t, ts, "a", "one")
	b := join(t, ts, "b", "two")
	c := join(t, ts, "c", "one")
	a.expect("peer-joined")
	a.send(map[string]any{"type": "join", "room": "two", "ref": 5})
	w := a.expect("joined")
	if *w.Room != "two" || len(w.Peers) != 1 || w.Peers[0].ID != b.id || string(w.Ref) != "5" {
		t.Fatalf("joined = %s, want room two with b", w.raw)
	}
	if pl := c.expect("peer-left"); pl.ID != a.id || pl.Reason != "moved" {
		t.Fatalf("peer-left = %s, want a moved", pl.raw)
	}
	if pj := b.expect("peer-joined"); pj.peerInfo(t).ID != a.id {
		t.Fatalf("peer-joined = %s, want a", pj.raw)
	}
	a.send(map[string]any{"type": "join", "room": "bad room!"})
	a.expectError(codeBadMessage)
}

func TestOriginRejected(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		origin  string
		want    int // 0: upgrade succeeds
	}{
		{name: "foreign origin, default", origin: "https://evil.example", want: http.StatusForbidden},
		{name: "no origin header (non-browser)", origin: "", want: 0},
		{name: "allowed pattern", allowed: []string{"*.example.org"}, origin: "https://app.example.org", want: 0},
		{name: "not in patterns", allowed: []string{"*.example.org"}, origin: "https://example.net", want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, Config{AllowedOrigins: tt.allowed})
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			req, _ := http.NewRequest("GET", ts.srv.URL+"/ws", nil)
			req.Header = h
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			if tt.want == 0 {
				c := dial(t, ts.url, &dialOpt{header: h})
				c.hello(nil)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestOversizeOthersUnaffected(t *testing.T) {
	ts := newServer(t, Config{})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	a.expect("peer-joined")
	b.sendRaw([]byte(`{"type":"signal","to":"*","data":"` + strings.Repeat("x", 64<<10) + `"}`))
	b.expectError(codeTooLarge)
	if got := b.closed(); got != websocket.StatusMessageTooBig {
		t.Fatalf("close = %v, want 1009", got)
	}
	// a notices nothing: no peer-left (b is in its grace), and relaying still works.
	// The positive marker instead of a quiet window: a newcomer's peer-joined is
	// the next thing a gets, and the newcomer is told b is still in the room.
	a.send(map[string]any{"type": "ping"})
	a.expect("pong")
	late := dial(t, ts.url, nil)
	lw := late.hello(map[string]any{"name": "late", "room": "r"})
	if !slices.ContainsFunc(lw.Peers, func(p wire.Peer) bool { return p.ID == b.id }) {
		t.Fatalf("newcomer's welcome lists %+v, want b %s (in its grace)", lw.Peers, b.id)
	}
	if w := a.next(); w.Type != "peer-joined" || w.peerInfo(t).ID != late.id {
		t.Fatalf("a got %s, want only the newcomer's peer-joined", w.raw)
	}
	if st := ts.hub.Stats(); st.Disconnects["too-large"] != 1 {
		t.Fatalf("Disconnects = %v, want too-large 1", st.Disconnects)
	}
	// Just under the limit passes.
	c := join(t, ts, "c", "r")
	a.expect("peer-joined")
	data := `"` + strings.Repeat("y", 60<<10) + `"`
	c.sendRaw([]byte(`{"type":"signal","to":"` + a.id + `","data":` + data + `}`))
	if w := a.expect("signal"); string(w.Data) != data {
		t.Fatalf("big signal corrupted (%d bytes)", len(w.Data))
	}
}

func TestFloodRateLimited(t *testing.T) {
	ts := newServer(t, Config{MessageRate: 10, MessageBurst: 20})
	a := join(t, ts, "a", "r")
	b := join(t, ts, "b", "r")
	a.expect("peer-joined")
	const n = 100
	start := time.Now()
	for i := range n {
		a.send(map[string]any{"type": "signal", "to": b.id, "data": i})
	}
	got, limited := 0, 0
	deadline := time.After(waitFor)
	for got+limited < n {
		select {
		case w := <-b.in:
			if w.Type == "signal" {
				got++
			}
		case w := <-a.in:
			if w.Type == "error" && w.Code == codeRateLimited {
				limited++
			}
		case <-deadline:
			t.Fatalf("delivered %d + limited %d, want %d", got, limited, n)
		}
	}
	// The burst (20) gets through, plus what the rate (10/s) refilled meanwhile.
	refill := int(time.Since(start).Seconds()*10) + 1
	if got < 20 || got > 20+refill || limited != n-got {
		t.Fatalf("delivered %d, limited %d: want the burst of 20 (+ up to %d refilled) through and the rest refused", got, limited, refill)
	}
	if st := ts.hub.Stats(); st.RateLimited != uint64(limited) {
		t.Fatalf("Stats().RateLimited = %d, want %d", st.RateLimited, limited)
	}
	// The connection stays; after a pause messages flow again.
	time.Sleep(150 * time.Millisecond)
	a.send(map[string]any{"type": "signal", "to": b.id, "data": "after"})
	if w := b.expect("signal"); string(w.Data) != `"after"` {
		t.Fatalf("got %s", w.raw)
	}
}

func TestSlowConsumer(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		refused bool // the message that hit the bound comes back undeliverable
	}{
		// ReplayBytes out of the way in the first two (it is only a bound, nothing is
		// preallocated): they are about the SendQueue count and the write deadline.
		{name: "queue bound", cfg: Config{SendQueue: 16, ReplayWindow: 4096, ReplayBytes: 1 << 30, WriteTimeout: time.Minute}},
		{name: "write stalled", cfg: Config{SendQueue: 4096, ReplayWindow: 4096, ReplayBytes: 1 << 30, WriteTimeout: 200 * time.Millisecond, Tick: 10 * time.Millisecond}},
		{name: "byte bound", cfg: Config{SendQueue: 4096, ReplayWindow: 4096, ReplayBytes: 512 << 10, WriteTimeout: time.Minute}, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testSlowConsumer(t, tt.cfg, tt.refused) })
	}
}

// testSlowConsumer: a client that stops reading is cut into its grace while a
// peer sharing the sender keeps being served: every probe sent to the fast peer
// arrives, in order, before the next one is sent. Nothing here measures speed: a
// hub that waited on the slow peer would hold the fast one for the write timeout
// (a minute in the queue-bound case, longer than expect's hang guard).
func testSlowConsumer(t *testing.T, cfg Config, refused bool) {
	cfg.MessageRate, cfg.MessageBurst, cfg.ResumeGrace = 1e6, 1e6, time.Minute
	ts := newServer(t, cfg)
	sender := join(t, ts, "sender", "r")
	fast := join(t, ts, "fast", "r")
	// slow reads its welcome and then never reads again: the socket buffers fill,
	// then the hub's queue.
	ctx := t.Context()
	slowConn, _, err := websocket.Dial(ctx, ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slowConn.CloseNow()
	if err := slowConn.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","name":"slow","room":"r"}`)); err != nil {
		t.Fatal(err)
	}
	_, wb, err := slowConn.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var welcome srvMsg
	if err := json.Unmarshal(wb, &welcome); err != nil || welcome.Type != "welcome" {
		t.Fatalf("welcome = %s, %v", wb, err)
	}
	slow := &client{id: welcome.ID}
	sender.expect("peer-joined")
	sender.expect("peer-joined")
	fast.expect("peer-joined")
	big := `"` + strings.Repeat("z", 32<<10) + `"`
	probes := 0
	for i := 0; ts.hub.Stats().SlowConsumers == 0; i++ {
		if i > 4000 {
			t.Fatalf("no slow consumer after %d messages of 32 KiB", i)
		}
		sender.sendRaw([]byte(`{"type":"signal","to":"` + slow.id + `","data":` + big + `}`))
		if i%20 == 0 {
			sender.sendRaw([]byte(`{"type":"signal","to":"` + fast.id + `","data":` + strconv.Itoa(probes) + `}`))
			if w := fast.expect("signal"); string(w.Data) != strconv.Itoa(probes) {
				t.Fatalf("fast peer got probe %s, want %d: lost or reordered while another peer was slow", w.Data, probes)
			}
			probes++
		}
	}
	if probes == 0 {
		t.Fatal("no probe sent to the fast peer")
	}
	eventually(t, "slow detached", func() bool { return ts.hub.Stats().Detached == 1 })
	if st := ts.hub.Stats(); st.Disconnects["slow-consumer"] != 1 {
		t.Fatalf("Disconnects = %v, want slow-consumer 1", st.Disconnects)
	}
	// The refusals come back as bounces: with the local router before anything
	// the sender does next, through an asynchronous one whenever they arrive. A
	// join to its own room (answered with joined) shows the sender is served.
	sender.send(map[string]any{"type": "join", "room": "r"})
	undeliverable := func(w srvMsg) bool {
		return w.Type == "error" && w.Code == codeUndeliverable && w.To == slow.id
	}
	n, joined := 0, false
	for !joined || (refused && n == 0) {
		switch w := sender.next(); {
		case w.Type == "joined":
			joined = true
		case refused && undeliverable(w):
			n++
		default:
			t.Fatalf("sender got %s, want joined and undeliverable errors for %s", w.raw, slow.id)
		}
	}
	// slow is in its grace, not gone: a newcomer to the room is told about it,
	// and the sender's next message is that newcomer's peer-joined, with no
	// peer-left for slow before it. (Only more refusals may still come.)
	late := dial(t, ts.url, nil)
	lw := late.hello(map[string]any{"name": "late", "room": "r"})
	inRoom := false
	for _, p := range lw.Peers {
		inRoom = inRoom || p.ID == slow.id
	}
	if !inRoom {
		t.Fatalf("newcomer's welcome lists %+v, want slow %s (in its grace) among them", lw.Peers, slow.id)
	}
	for {
		w := sender.next()
		if w.Type == "peer-joined" && w.peerInfo(t).ID == late.id {
			return
		}
		if !refused || !undeliverable(w) {
			t.Fatalf("sender got %s while slow is in its grace, want the newcomer's peer-joined", w.raw)
		}
	}
}
