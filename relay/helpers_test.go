package relay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testSecret = "test-secret-0123456789"

// testLogger logs to the test output when -v and RELAY_TEST_LOG=1, else discards. A fuzz
// target may not log through f, so fuzz tests always discard.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if _, fuzz := t.(*testing.F); fuzz || os.Getenv("RELAY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	w := &tWriter{t: t}
	// pion's clients run goroutines that Close does not wait for (a channel bind retry);
	// once the test has ended their lines are dropped, as t.Log would panic or race.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool // the test has ended; guarded by mu
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimSpace(p)))
	}
	return len(p), nil
}

// baseConfig is a loopback server: relays bind 127.0.0.1 and advertise 127.0.0.2, the
// "router-facing" address. Nothing listens on 127.0.0.2, so a datagram only reaches a relay
// through it by the hairpin path, and an echo peer on 127.0.0.1 is not the server's
// own address.
func baseConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		ListenAddr: "127.0.0.1:0",
		Secrets:    []string{testSecret},
		PublicIPv4: netip.MustParseAddr("127.0.0.2"),
		PublicIPv6: netip.MustParseAddr("2001:db8::2"), // advertised only, never sent to
		PeerAllow:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		// Below Linux's ephemeral range (32768-60999): with every package's tests running
		// at once, another process's ephemeral bind could take a port the test reserved
		// (RESERVATION-TOKEN holds no socket) and turn a correct server's answer into 508.
		RelayPortMin: 20000,
		RelayPortMax: 20999,
		Sockets:      2,
		UnauthRate:   10000,
		UnauthBurst:  10000,
		Logger:       testLogger(t),
	}
}

func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Listen(t.Context()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// echoPeer is a UDP peer that sends every datagram back.
func echoPeer(t testing.TB, network, addr string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("echo peer: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr)
}

type pionLogFactory struct{ t testing.TB }

func (f pionLogFactory) NewLogger(string) logging.LeveledLogger {
	return pionLogger{log: testLogger(f.t)}
}

// turnClient connects a pion TURN client to s over transport ("udp" or "tcp").
func turnClient(t testing.TB, s *Server, transport string, family turn.RequestedAddressFamily, username, password string) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	var addr string
	switch transport {
	case "udp":
		addr = s.UDPAddr().String()
		local := "127.0.0.1:0"
		if addrPortOf(s.UDPAddr()).Addr().Is6() {
			local = "[::1]:0"
		}
		c, err := net.ListenPacket("udp", local)
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		addr = s.TCPAddr().String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr:         addr,
		TURNServerAddr:         addr,
		Conn:                   conn,
		Username:               username,
		Password:               password,
		RequestedAddressFamily: family,
		LoggerFactory:          pionLogFactory{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); _ = conn.Close() })
	return cl
}

// exchange sends n datagrams through relay to peer and waits for each echo.
func exchange(t testing.TB, relay net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 1500)
	for i := range n {
		msg := []byte("hello " + string(rune('a'+i%26)))
		deadline := time.Now().Add(rawTimeout) // hang guard; the 300 ms reads resend
		for {
			if _, err := relay.WriteTo(msg, peer); err != nil {
				t.Fatalf("relay WriteTo %v: %v", peer, err)
			}
			_ = relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			m, from, err := relay.ReadFrom(buf)
			if err == nil && bytes.Equal(buf[:m], msg) {
				if from.String() != peer.String() {
					t.Fatalf("echo from %v, want %v", from, peer)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no echo for %q from %v: %v", msg, peer, err)
			}
		}
	}
}

// rawClient speaks hand-built STUN (built with pion/stun) to the server over UDP, for the
// conformance cases a well-behaved client never produces.
type rawClient struct {
	t       testing.TB
	conn    net.PacketConn
	srv     net.Addr
	timeout time.Duration // per request; default rawTimeout
}

// rawTimeout bounds the wait for one answer over loopback. It only ends a broken test: an
// answer takes well under a millisecond, so it is far above any load on a shared machine.
// A test expecting no answer does not wait for it but sends a marker after (see
// TestFingerprint).
const rawTimeout = 10 * time.Second

func newRawClient(t testing.TB, s *Server) *rawClient {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, srv: s.UDPAddr()}
}

// do sends m and returns the response with the same transaction ID (nil on timeout).
func (c *rawClient) do(m *stun.Message) *stun.Message {
	c.t.Helper()
	if _, err := c.conn.WriteTo(m.Raw, c.srv); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	timeout := c.timeout
	if timeout == 0 {
		timeout = rawTimeout
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			c.t.Fatal(err)
		}
		r := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if r.Decode() == nil && r.TransactionID == m.TransactionID {
			return r
		}
	}
}

func errorCode(m *stun.Message) int {
	if m == nil {
		return -1 // no answer
	}
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return -2
	}
	return int(ec.Code)
}

// Attributes pion/turn keeps internal, built with pion/stun for the raw client.
var (
	requestedTransportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	lifetimeZero          = stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}
)

type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

func channelAttr(n uint16) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

// session is a raw client that has been challenged: it holds realm and nonce.
type session struct {
	*rawClient
	username, password string
	realm, nonce       []byte
}

func (c *rawClient) challenge(method stun.Method) (realm, nonce []byte) {
	c.t.Helper()
	r := c.do(stun.MustBuild(stun.TransactionID, stun.NewType(method, stun.ClassRequest), requestedTransportUDP))
	if got := errorCode(r); got != 401 {
		c.t.Fatalf("unauthenticated %v = %d, want 401", method, got)
	}
	var rl stun.Realm
	var nn stun.Nonce
	if rl.GetFrom(r) != nil || nn.GetFrom(r) != nil {
		c.t.Fatal("challenge without realm or nonce")
	}
	return rl, nn
}

func (c *rawClient) login(method stun.Method, username, password string) *session {
	c.t.Helper()
	realm, nonce := c.challenge(method)
	return &session{rawClient: c, username: username, password: password, realm: realm, nonce: nonce}
}

// signed sends a request of method with attrs, signed with the session's credentials.
func (s *session) signed(method stun.Method, attrs ...stun.Setter) *stun.Message {
	s.t.Helper()
	return s.do(s.build(method, attrs...))
}

// build makes the request signed sends, for a test that sends it itself.
func (s *session) build(method stun.Method, attrs ...stun.Setter) *stun.Message {
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	setters = append(setters, stun.NewUsername(s.username), stun.NewRealm(string(s.realm)), stun.NewNonce(string(s.nonce)),
		stun.NewLongTermIntegrity(s.username, string(s.realm), s.password))
	return stun.MustBuild(setters...)
}

func (s *session) allocate() int {
	s.t.Helper()
	return errorCode(s.signed(stun.MethodAllocate, requestedTransportUDP))
}

// testClock is a clock that moves only when told (Server.now), safe for concurrent use.
type testClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// waitFor polls cond until it holds. Its 30 s limit is a hang guard, far above the
// milliseconds (or the configured sub-second timeouts) its callers wait for.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
