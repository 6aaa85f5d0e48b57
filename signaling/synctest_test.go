package signaling

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
)

// pipeListener serves in-memory connections, so a whole hub (HTTP server,
// WebSocket, ticker) runs inside a synctest bubble with virtual time.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.ch <- s:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// bubble starts a hub on a pipe listener; stop shuts everything down so the
// bubble can end.
func bubble(t *testing.T, cfg Config) (ln *pipeListener, hub *Hub, stop func(), client *http.Client) {
	t.Helper()
	if cfg.ICE == nil {
		cfg.ICE = &fakeICE{}
	}
	var ar *asyncRouter
	if cfg.Router == nil && asyncRouting {
		ar = newAsyncRouter() // inside the bubble: stopped by stop
		cfg.Router = ar
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln = newPipeListener()
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	client = &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
	stop = func() {
		srv.Close()
		h.Close()
		client.CloseIdleConnections()
		if ar != nil {
			ar.close()
		}
	}
	return ln, h, stop, client
}

// bubbleHub is bubble with a dial that says hello in room "s" and reads the welcome.
func bubbleHub(t *testing.T, cfg Config) (dial func(name string) *websocket.Conn, hub *Hub, stop func()) {
	t.Helper()
	_, h, stopHub, client := bubble(t, cfg)
	var conns []*websocket.Conn
	dial = func(name string) *websocket.Conn {
		t.Helper()
		ctx := context.Background()
		c, _, err := websocket.Dial(ctx, "ws://hub/ws", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","name":"`+name+`","room":"s"}`)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil { // welcome
			t.Fatal(err)
		}
		return c
	}
	stop = func() {
		for _, c := range conns {
			c.CloseNow()
		}
		stopHub()
	}
	return dial, h, stop
}

// TestKeepaliveVirtualTime runs the default timers (20 s ping, 20 s pong timeout,
// 30 s grace) in virtual time: a client that stops answering pings is detached
// after at most ping interval + pong timeout and gone after the grace; its peer,
// which keeps reading, stays attached for minutes and sees peer-left at the end.
func TestKeepaliveVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, h, stop := bubbleHub(t, Config{})
		defer stop()
		peer := dial("peer")
		start := time.Now()
		dial("mute") // reads its welcome, then nothing: no pong ever
		got := make(chan srvMsg, 16)
		go func() {
			defer close(got)
			for {
				_, b, err := peer.Read(context.Background())
				if err != nil {
					return
				}
				var w srvMsg
				_ = json.Unmarshal(b, &w)
				got <- w
			}
		}()
		if w := <-got; w.Type != "peer-joined" {
			t.Fatalf("first message = %+v, want peer-joined", w)
		}
		if w := <-got; w.Type != "peer-left" || w.Reason != "timeout" {
			t.Fatalf("second message = %+v, want peer-left (timeout)", w)
		}
		left := time.Since(start)
		// Detached at most 20 s (first ping) + 20 s (pong timeout) + tick, then 30 s grace.
		if left < 30*time.Second || left > 72*time.Second {
			t.Fatalf("peer-left after %v, want between 30 s and 72 s", left)
		}
		time.Sleep(5 * time.Minute) // the reading peer answers every ping
		synctest.Wait()
		st := h.Stats()
		// Over a pipe the unanswered ping's write itself blocks, and coder/websocket
		// cuts the link at the ping's deadline, which the reader may report first.
		if st.Sessions != 1 || st.Connections != 1 || st.Disconnects["pong-timeout"]+st.Disconnects["read-error"] != 1 {
			t.Fatalf("after 5 min: %+v, want the reading peer alone and the mute one cut at its ping deadline", st)
		}
	})
}

// TestCredentialRefreshVirtualTime: with hour-long credentials the push comes at
// 48 minutes (80 %), then every 48 minutes.
func TestCredentialRefreshVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, _, stop := bubbleHub(t, Config{ICE: &fakeICE{ttl: time.Hour}})
		defer stop()
		start := time.Now()
		c := dial("a")
		for i := 1; i <= 3; i++ {
			_, b, err := c.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var w srvMsg
			_ = json.Unmarshal(b, &w)
			if w.Type != "ice-servers" || w.TTL != 3600 {
				t.Fatalf("got %s, want ice-servers with ttl 3600", b)
			}
			want := time.Duration(i) * 48 * time.Minute
			// Each refresh starts on a tick (1 s): allow a tick of drift per cycle.
			if el := time.Since(start); el < want || el > want+time.Duration(i)*2*time.Second {
				t.Fatalf("push %d after %v, want %v", i, el, want)
			}
		}
	})
}

// TestShutdownVirtualTime: Shutdown does not wait on a client beyond closeWait.
// Clients that answer the close handshake let it return at once; a client that
// never reads holds it for closeWait, when its socket is cut, and no longer. In
// virtual time, so the bounds are exact whatever the machine's load.
func TestShutdownVirtualTime(t *testing.T) {
	tests := []struct {
		name string
		mute bool
		max  time.Duration
	}{
		{name: "responsive", max: 0},
		{name: "mute client", mute: true, max: closeWait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dial, h, stop := bubbleHub(t, Config{})
				defer stop()
				talker := dial("talker")
				read := make(chan error, 1)
				go func() {
					for {
						if _, _, err := talker.Read(context.Background()); err != nil {
							read <- err
							return
						}
					}
				}()
				if tt.mute {
					dial("mute") // reads its welcome, then nothing
				}
				synctest.Wait()
				start := time.Now()
				if err := h.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				el := time.Since(start)
				t.Logf("Shutdown took %v (virtual)", el)
				if el > tt.max {
					t.Fatalf("Shutdown took %v (virtual), want at most %v", el, tt.max)
				}
				if err := <-read; websocket.CloseStatus(err) != websocket.StatusServiceRestart {
					t.Fatalf("talker's read ended with %v, want 1012", err)
				}
			})
		})
	}
}

// TestSweepWithCoarseTickVirtualTime: with a Tick coarser than the 20 ms scan
// tick, a session past its grace still ends within a Tick after the grace (the
// real-time TestSweepWithCoarseTick can only check "not before").
func TestSweepWithCoarseTickVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace, tick = 300 * time.Millisecond, 100 * time.Millisecond
		dial, _, stop := bubbleHub(t, Config{ResumeGrace: grace, HelloTimeout: grace, Tick: tick})
		defer stop()
		a := dial("a")
		b := dial("b")
		next := func() srvMsg {
			t.Helper()
			_, raw, err := a.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var w srvMsg
			_ = json.Unmarshal(raw, &w)
			w.raw = raw
			return w
		}
		if w := next(); w.Type != "peer-joined" {
			t.Fatalf("got %s, want peer-joined", w.raw)
		}
		start := time.Now()
		b.CloseNow()
		if w := next(); w.Type != "peer-left" {
			t.Fatalf("got %s, want peer-left", w.raw)
		}
		took := time.Since(start)
		t.Logf("peer-left after %v (virtual)", took)
		if took < grace || took > grace+tick {
			t.Fatalf("peer-left after %v (virtual), want between %v and %v", took, grace, grace+tick)
		}
	})
}
