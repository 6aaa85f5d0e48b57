package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// fakeServer speaks just enough of both protocols to relay signals between
// sessions: Switchboard's hello/welcome/signal/ping with seq numbering, and
// PeerJS's OPEN/CANDIDATE/HEARTBEAT. refuse makes every hello fail.
type fakeServer struct {
	refuse string        // error code answered to hello; empty: accept
	stall  bool          // after the welcome, never read again (a wedged server)
	stop   chan struct{} // closed at cleanup: ends stalled handlers

	mu    sync.Mutex
	conns map[string]*websocket.Conn // guarded by mu
	seqs  map[string]*atomic.Uint64  // guarded by mu; per-session server seq

	acks       atomic.Uint64 // highest ack seen in any client message
	heartbeats atomic.Int64  // ping / HEARTBEAT messages
	relayed    atomic.Int64
	nextID     atomic.Int64
	wg         sync.WaitGroup
}

func startFake(t testing.TB, refuse string) (*fakeServer, *httptest.Server) {
	t.Helper()
	return startFakeServer(t, &fakeServer{refuse: refuse})
}

func startFakeServer(t testing.TB, f *fakeServer) (*fakeServer, *httptest.Server) {
	t.Helper()
	f.conns, f.seqs, f.stop = map[string]*websocket.Conn{}, map[string]*atomic.Uint64{}, make(chan struct{})
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		close(f.stop) // a hijacked connection's request context is never done
		f.wg.Wait()
	})
	return f, srv
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil) // same-origin check on: the client must send a matching Origin
	if err != nil {
		return
	}
	f.wg.Add(1)
	defer f.wg.Done()
	defer c.CloseNow()
	ctx := r.Context()
	id := ""
	if strings.HasSuffix(r.URL.Path, "/peerjs") {
		id = r.URL.Query().Get("id")
		f.register(id, c)
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"OPEN"}`))
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if id != "" {
				f.mu.Lock()
				delete(f.conns, id)
				f.mu.Unlock()
			}
			return
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		if a, ok := m["ack"].(float64); ok {
			for {
				old := f.acks.Load()
				if uint64(a) <= old || f.acks.CompareAndSwap(old, uint64(a)) {
					break
				}
			}
		}
		switch m["type"] {
		case "hello":
			if f.refuse != "" {
				c.Write(ctx, websocket.MessageText, []byte(`{"type":"error","code":"`+f.refuse+`","message":"no"}`))
				c.Close(websocket.StatusPolicyViolation, "")
				return
			}
			id = "p" + strconv.FormatInt(f.nextID.Add(1), 10)
			f.register(id, c)
			c.Write(ctx, websocket.MessageText, []byte(`{"type":"welcome","id":"`+id+`","heartbeat":{"interval":60000,"timeout":60000},"seq":0}`))
			if f.stall {
				<-f.stop
				return
			}
		case "ping":
			f.heartbeats.Add(1)
			c.Write(ctx, websocket.MessageText, []byte(`{"type":"pong","ack":0}`))
		case "HEARTBEAT":
			f.heartbeats.Add(1)
		case "signal":
			to, _ := m["to"].(string)
			out, _ := json.Marshal(map[string]any{"type": "signal", "from": id, "data": m["data"], "seq": f.seq(to)})
			f.send(ctx, to, out)
		case "CANDIDATE":
			to, _ := m["dst"].(string)
			out, _ := json.Marshal(map[string]any{"type": "CANDIDATE", "src": id, "dst": to, "payload": m["payload"]})
			f.send(ctx, to, out)
		}
	}
}

func (f *fakeServer) register(id string, c *websocket.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[id] = c
	f.seqs[id] = new(atomic.Uint64)
}

func (f *fakeServer) seq(id string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.seqs[id]; s != nil {
		return s.Add(1)
	}
	return 0
}

func (f *fakeServer) send(ctx context.Context, to string, b []byte) {
	f.mu.Lock()
	c := f.conns[to]
	f.mu.Unlock()
	if c != nil && c.Write(ctx, websocket.MessageText, b) == nil {
		f.relayed.Add(1)
	}
}

// checkLeaks verifies, after every later cleanup (servers, runners) has run,
// that the test left no goroutine behind.
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

func TestRelayDelivers(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name  string
		proto Protocol
		path  string
	}{
		{"switchboard", Switchboard, "/ws"},
		{"peerjs", PeerJS, "/peerjs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := startFake(t, "")
			r, err := New(Config{
				URL: wsURL(srv, tt.path), Protocol: tt.proto, Sessions: 20,
				ConnectRate: 2000, Heartbeat: 20 * time.Millisecond, AckEvery: 4,
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { r.Close() })
			cres, err := r.Connect(t.Context())
			if err != nil || cres.Connected != 20 {
				t.Fatalf("Connect = %+v, %v; want 20 connected", cres, err)
			}
			res, err := r.Relay(t.Context(), 2000, 300*time.Millisecond)
			if err != nil {
				t.Fatalf("Relay: %v", err)
			}
			// How many are sent depends on how much CPU the senders get; that
			// all of them arrive does not.
			if res.Sent == 0 || res.Delivered != res.Sent || res.Lost != 0 {
				t.Errorf("Relay sent %d delivered %d lost %d; want some sent, all delivered", res.Sent, res.Delivered, res.Lost)
			}
			if got := f.relayed.Load(); got < int64(res.Sent) {
				t.Errorf("server relayed %d, client sent %d", got, res.Sent)
			}
			if res.Latency.Count != res.Delivered || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P99 {
				t.Errorf("Latency = %+v; want one sample per delivery, 0 < p50 <= p99 <= max", res.Latency)
			}
			if res.Rate <= 0 || res.Senders != 20 {
				t.Errorf("Rate %v Senders %d; want > 0 and 20", res.Rate, res.Senders)
			}
			if f.heartbeats.Load() == 0 {
				t.Error("server saw no client heartbeat")
			}
			if tt.proto == Switchboard && f.acks.Load() == 0 {
				t.Error("server saw no ack")
			}
			// A second run on the same sessions starts from zero.
			res2, err := r.Relay(t.Context(), 1000, 100*time.Millisecond)
			if err != nil || res2.Delivered != res2.Sent || res2.Sent == 0 {
				t.Errorf("second Relay = sent %d delivered %d, %v", res2.Sent, res2.Delivered, err)
			}
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := r.Active(); n != 0 {
				t.Errorf("Active after Close = %d, want 0", n)
			}
		})
	}
}

// TestStuckWriteCut: against a server that stops reading, writes block once
// the socket buffers are full; the watchdog must cut those links after
// WriteTimeout so that Relay ends, reporting the damage.
func TestStuckWriteCut(t *testing.T) {
	checkLeaks(t)
	_, srv := startFakeServer(t, &fakeServer{stall: true})
	r, err := New(Config{
		URL: wsURL(srv, "/ws"), Sessions: 2, Heartbeat: -1,
		PayloadSize: 64 << 10, WriteTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if res, err := r.Connect(t.Context()); err != nil || res.Connected != 2 {
		t.Fatalf("Connect = %+v, %v; want 2 connected", res, err)
	}
	// Schedule 1 s + write bound + drain 5 s at worst; a Relay that hangs
	// on the stuck writes runs into this generous deadline instead.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := r.Relay(ctx, 1000, time.Second)
	if err != nil {
		t.Fatalf("Relay against a stalled server: %v; want it to end by cutting the stuck links", err)
	}
	if res.Dropped == 0 || res.WriteErrors == 0 {
		t.Errorf("Relay = dropped %d write errors %d; want the stuck links cut", res.Dropped, res.WriteErrors)
	}
	if res.Delivered != 0 || res.Lost != res.Sent {
		t.Errorf("Relay delivered %d lost %d of %d; want nothing delivered", res.Delivered, res.Lost, res.Sent)
	}
}

func TestConnectRefused(t *testing.T) {
	checkLeaks(t)
	_, srv := startFake(t, "unauthorized")
	r, err := New(Config{URL: wsURL(srv, "/ws"), Sessions: 4, ConnectRate: 1000})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	res, err := r.Connect(t.Context())
	if err == nil || res.Connected != 0 || res.Errors["server error unauthorized"] != 4 {
		t.Fatalf("Connect = %+v, %v; want 4 × server error unauthorized and an error", res, err)
	}
	if _, err := r.Relay(t.Context(), 100, 10*time.Millisecond); err == nil {
		t.Error("Relay with no pair: want an error")
	}
}

func TestConnectBadOrigin(t *testing.T) {
	_, srv := startFake(t, "")
	r, err := New(Config{URL: wsURL(srv, "/ws"), Sessions: 2, Origin: "http://evil.example"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer r.Close()
	res, err := r.Connect(t.Context())
	if err == nil || res.Failed != 2 {
		t.Fatalf("Connect with a foreign Origin = %+v, %v; want 2 failures", res, err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"odd sessions", Config{URL: "ws://127.0.0.1:1/ws", Sessions: 3}, "even"},
		{"one session", Config{URL: "ws://127.0.0.1:1/ws", Sessions: 1}, "even"},
		{"not loopback", Config{URL: "ws://192.0.2.1:8080/ws"}, "loopback"},
		{"hostname", Config{URL: "ws://example.com/ws"}, "loopback"},
		{"scheme", Config{URL: "wss://127.0.0.1/ws"}, "scheme"},
		{"protocol", Config{URL: "ws://127.0.0.1/ws", Protocol: "sip"}, "protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
	for _, u := range []string{"ws://127.0.0.1:9/ws", "ws://[::1]:9/ws", "ws://localhost:9/ws", "http://127.0.0.2:9/ws"} {
		if _, err := New(Config{URL: u}); err != nil {
			t.Errorf("New(%q) = %v, want ok", u, err)
		}
	}
}

func TestHistogram(t *testing.T) {
	tests := []struct {
		name     string
		samples  []time.Duration
		p50, p99 time.Duration
		max      time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []time.Duration{1500 * time.Microsecond}, 1500 * time.Microsecond, 1500 * time.Microsecond, 1500 * time.Microsecond},
		{"fine", ramp(100, time.Microsecond, 10*time.Microsecond), 492 * time.Microsecond, 982 * time.Microsecond, 991 * time.Microsecond},
		{"coarse", []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}, 20100 * time.Microsecond, 30 * time.Millisecond, 30 * time.Millisecond},
		{"huge", []time.Duration{5 * time.Second, 5 * time.Second, 7 * time.Second}, 5010 * time.Millisecond, 7 * time.Second, 7 * time.Second},
		{"overflow", []time.Duration{time.Millisecond, 90 * time.Second}, time.Millisecond + time.Microsecond, 90 * time.Second, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := new(histogram)
			for _, d := range tt.samples {
				h.record(d)
			}
			s := h.summary()
			if s.Count != uint64(len(tt.samples)) || s.P50 != tt.p50 || s.P99 != tt.p99 || s.Max != tt.max {
				t.Errorf("summary() = count %d p50 %v p99 %v max %v; want %d %v %v %v",
					s.Count, s.P50, s.P99, s.Max, len(tt.samples), tt.p50, tt.p99, tt.max)
			}
		})
	}
}

// ramp returns n samples first, first+step, ...
func ramp(n int, first, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = first + time.Duration(i)*step
	}
	return out
}

func TestShortReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&codeError{code: "server-full", msg: "x"}, "server error server-full"},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("dial: %w", context.Canceled), "canceled"},
		{errors.New("failed to get reader: failed to read frame header: read tcp 127.0.0.1:60692->127.0.0.1:46609: read: connection reset by peer"), "read: connection reset by peer"},
		{errors.New("plain"), "plain"},
		{errors.New(strings.Repeat("y", 300)), strings.Repeat("y", 100)},
	}
	for _, tt := range tests {
		if got := shortReason(tt.err); got != tt.want {
			t.Errorf("shortReason(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
