package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// fakeICE mints fake credentials with a configurable lifetime.
type fakeICE struct {
	ttl   time.Duration // 0: a day
	fail  atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	users []string
}

func (f *fakeICE) ICEServers(_ context.Context, user string) ([]ICEServer, time.Time, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return nil, time.Time{}, errors.New("fake ICE failure")
	}
	f.mu.Lock()
	f.users = append(f.users, user)
	f.mu.Unlock()
	ttl := f.ttl
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	exp := time.Now().Add(ttl)
	return []ICEServer{
		{URLs: []string{"stun:127.0.0.1:3478"}},
		{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u:" + user, Credential: "pw"},
	}, exp, nil
}

type testServer struct {
	hub *Hub
	srv *httptest.Server
	ice *fakeICE
	url string // ws://.../ws
}

// newServer starts a hub behind httptest with cfg (ICE filled in when nil). The
// cleanup closes the hub and checks that none of its goroutines outlived it.
func newServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	ice, _ := cfg.ICE.(*fakeICE)
	if cfg.ICE == nil {
		ice = &fakeICE{}
		cfg.ICE = ice
	}
	if cfg.Router == nil {
		cfg.Router = testRouter(t)
	}
	if asyncRouting {
		t.Logf("router: asynchronous (asyncRouter)")
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.Handle("/api/ice-servers", h.ICEServersHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
		// An asyncRouter is stopped by its own cleanup, after this one.
		if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("github.com/switchboard-rtc/switchboard/signaling.(*asyncRouter).loop")); err != nil {
			t.Errorf("goroutines outlived the hub: %v", err)
		}
	})
	return &testServer{hub: h, srv: srv, ice: ice, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}
}

// srvMsg is any server message, decoded loosely for assertions, with its bytes.
type srvMsg struct {
	wire.Any
	raw []byte
}

func (w srvMsg) peerInfo(t testing.TB) peerInfo {
	t.Helper()
	var p peerInfo
	if err := json.Unmarshal(w.Peer, &p); err != nil {
		t.Fatalf("peer %s: %v", w.Peer, err)
	}
	return p
}

// client is a test peer. A goroutine reads frames into in; seq continuity is
// checked on every sequenced message (no gap, no duplicate).
type client struct {
	t        testing.TB
	c        *websocket.Conn
	in       chan srvMsg
	done     chan struct{}
	closeErr error // valid after done
	id       string
	resume   string

	mu      sync.Mutex
	lastSeq uint64
}

type dialOpt struct {
	header http.Header
}

func dial(t testing.TB, url string, opt *dialOpt) *client {
	t.Helper()
	c, err := dialErr(t, url, opt)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func dialErr(t testing.TB, url string, opt *dialOpt) (*client, error) {
	t.Helper()
	o := &websocket.DialOptions{}
	if opt != nil {
		o.HTTPHeader = opt.header
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, o)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	cl := &client{t: t, c: c, in: make(chan srvMsg, 4096), done: make(chan struct{})}
	go cl.readLoop()
	t.Cleanup(func() {
		c.CloseNow()
		<-cl.done
	})
	return cl, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.c.Read(context.Background())
		if err != nil {
			c.closeErr = err
			return
		}
		var w srvMsg
		if err := json.Unmarshal(b, &w); err != nil {
			c.t.Errorf("server sent invalid JSON %q: %v", b, err)
			continue
		}
		w.raw = b
		if w.Seq != 0 {
			c.mu.Lock()
			if w.Seq != c.lastSeq+1 {
				c.t.Errorf("client %s: seq %d after %d (%s)", c.id, w.Seq, c.lastSeq, b)
			}
			c.lastSeq = w.Seq
			c.mu.Unlock()
		}
		select {
		case c.in <- w:
		default:
			c.t.Errorf("client %s: inbox full", c.id)
		}
	}
}

func (c *client) seq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSeq
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write %s: %v", b, err)
	}
}

const waitFor = 5 * time.Second

// next returns the next message, failing after waitFor.
func (c *client) next() srvMsg {
	c.t.Helper()
	select {
	case w := <-c.in:
		return w
	case <-time.After(waitFor):
		c.t.Fatalf("client %s: no message within %v", c.id, waitFor)
	}
	return srvMsg{}
}

// expect skips messages until one of type typ arrives (skipped ones must be in skip).
func (c *client) expect(typ string, skip ...string) srvMsg {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case w := <-c.in:
			if w.Type == typ {
				return w
			}
			ok := false
			for _, s := range skip {
				ok = ok || s == w.Type
			}
			if !ok {
				c.t.Fatalf("client %s: got %s, want %s", c.id, w.raw, typ)
			}
		case <-deadline:
			c.t.Fatalf("client %s: no %q within %v", c.id, typ, waitFor)
		}
	}
}

func (c *client) expectError(code string) srvMsg {
	c.t.Helper()
	w := c.expect("error")
	if w.Code != code {
		c.t.Fatalf("client %s: error %s, want code %q", c.id, w.raw, code)
	}
	return w
}

// quiet asserts nothing arrives for d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case w := <-c.in:
		c.t.Fatalf("client %s: unexpected %s", c.id, w.raw)
	case <-time.After(d):
	}
}

// nothingBefore asserts that c gets nothing more from what happened so far: a
// marker signal from peer (in c's room) is the next message c receives. The
// hub delivers in order (the routers are FIFO), so whatever earlier actions
// caused for c would come first. A positive marker instead of a quiet window,
// which proves less the slower the machine.
func (c *client) nothingBefore(peer *client) {
	c.t.Helper()
	peer.send(map[string]any{"type": "signal", "to": c.id, "data": "marker"})
	if w := c.next(); w.Type != "signal" || w.From != peer.id || string(w.Data) != `"marker"` {
		c.t.Fatalf("client %s: got %s, want nothing before %s's marker", c.id, w.raw, peer.id)
	}
}

// closed waits for the connection to end and returns its close code.
func (c *client) closed() websocket.StatusCode {
	c.t.Helper()
	for {
		select {
		case <-c.in:
		case <-c.done:
			return websocket.CloseStatus(c.closeErr)
		case <-time.After(waitFor):
			c.t.Fatalf("client %s: still open after %v", c.id, waitFor)
			return 0
		}
	}
}

// hello sends hello and returns the welcome.
func (c *client) hello(fields map[string]any) srvMsg {
	c.t.Helper()
	m := map[string]any{"type": "hello", "name": "anon"}
	for k, v := range fields {
		m[k] = v
	}
	c.send(m)
	w := c.expect("welcome")
	c.id, c.resume = w.ID, w.Resume
	return w
}

// join dials and says hello as name in room.
func join(t testing.TB, ts *testServer, name, room string) *client {
	t.Helper()
	c := dial(t, ts.url, nil)
	c.hello(map[string]any{"name": name, "room": room})
	return c
}

// eventually polls cond for up to waitFor.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
