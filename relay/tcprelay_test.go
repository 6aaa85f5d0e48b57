package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// tcpEchoPeer accepts TCP connections and echoes what they send.
func tcpEchoPeer(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr)
}

func echoOver(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(rawTimeout))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("echo %q (%v), want %q", got, err, msg)
	}
}

// TestTCPRelay: RFC 6062 TCP allocations with pion's client: Connect and ConnectionBind to
// a TCP peer, a peer's connection to the relayed address, and the peer policy on both.
func TestTCPRelay(t *testing.T) {
	cfg := baseConfig(t)
	s := startServer(t, cfg)
	peer := tcpEchoPeer(t)
	cred := s.Mint("tcprelay", time.Minute)
	cl := turnClient(t, s, "tcp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	alloc, err := cl.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()
	ra := alloc.Addr().(*net.TCPAddr)
	if ra.IP.String() != cfg.PublicIPv4.String() || ra.Port < int(cfg.RelayPortMin) || ra.Port > int(cfg.RelayPortMax) {
		t.Errorf("relayed address %v, want %v:%d-%d", ra, cfg.PublicIPv4, cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if s.Allocations() != 1 {
		t.Errorf("Allocations = %d, want 1 (TCP allocations count against the quotas)", s.Allocations())
	}
	conn, err := alloc.Dial("tcp4", peer.String())
	if err != nil {
		t.Fatalf("Dial peer through the relay: %v", err)
	}
	defer conn.Close()
	echoOver(t, conn, "hello over a TCP relay")
	echoOver(t, conn, string(bytes.Repeat([]byte("x"), 20000)))

	// The peer connects to the relayed port (bound on 127.0.0.1; 127.0.0.2 is advertised
	// only) and the client accepts it: the permission for 127.0.0.1 exists from Dial.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := alloc.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	in, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", itoa(int64(ra.Port))))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	c, ok := <-accepted
	if !ok {
		t.Fatal("Accept failed")
	}
	defer c.Close()
	if _, err := in.Write([]byte("from the peer")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(rawTimeout))
	got := make([]byte, 13)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "from the peer" {
		t.Fatalf("accepted connection read %q (%v)", got, err)
	}

	// The streams count in the relayed bytes, as datagrams do: 22+20,000 bytes each way
	// through the Connect, and 13 from the peer that connected in. (Polled: a Write's count
	// lands just after its bytes leave, so the echo can overtake it.)
	const toPeer, fromPeer = 22 + 20000, 22 + 20000 + 13
	waitFor(t, "TCP relay bytes counted", func() bool {
		st := s.Stats()
		return st.BytesToPeer == toPeer && st.BytesFromPeer == fromPeer
	})
	if st := s.Stats(); st.PacketsToPeer != 0 || st.PacketsFromPeer != 0 {
		t.Errorf("PacketsToPeer, PacketsFromPeer = %d, %d with TCP relays only, want 0, 0 (datagrams)", st.PacketsToPeer, st.PacketsFromPeer)
	}
}

func TestTCPRelayPolicy(t *testing.T) {
	cfg := baseConfig(t)
	cfg.PeerAllow = nil // loopback peers refused
	s := startServer(t, cfg)
	peer := tcpEchoPeer(t)
	cred := s.Mint("tcppolicy", time.Minute)
	cl := turnClient(t, s, "tcp", turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
	alloc, err := cl.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()
	if c, err := alloc.Dial("tcp4", peer.String()); err == nil {
		_ = c.Close()
		t.Fatal("Dial to a denied peer succeeded")
	}
	if s.Stats().PermissionsRefused == 0 {
		t.Error("PermissionsRefused = 0, want the refusal counted")
	}
}

// TestTCPPeerConnsCap: a user holds at most maxTCPPeerConns outgoing TCP relay
// connections; closing one frees its slot, once.
func TestTCPPeerConnsCap(t *testing.T) {
	var p tcpPeerConns
	for i := range maxTCPPeerConns {
		if !p.take("alice") {
			t.Fatalf("take %d refused, want %d allowed", i, maxTCPPeerConns)
		}
	}
	if p.take("alice") {
		t.Fatal("take over the cap allowed")
	}
	if !p.take("bob") {
		t.Fatal("another user refused")
	}
	a, b := net.Pipe()
	defer b.Close()
	c := &countedConn{Conn: a, release: func() { p.release("alice") }}
	_ = c.Close()
	_ = c.Close()
	if !p.take("alice") || p.take("alice") {
		t.Fatal("closing one connection (twice) must free exactly one slot")
	}
}

// gatedListener hands out the connections sent on conns. Close does not end an Accept in
// progress: that Accept still returns the next connection, as a kernel accept that
// completed just before the close does.
type gatedListener struct {
	entered chan struct{} // receives when Accept starts waiting
	conns   chan net.Conn
	addr    net.Addr
}

func (g *gatedListener) Accept() (net.Conn, error) {
	g.entered <- struct{}{}
	c, ok := <-g.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (g *gatedListener) Close() error   { return nil }
func (g *gatedListener) Addr() net.Addr { return g.addr }

// TestConnListenerAcceptAfterClose: a connection accepted while the listener closes (an
// RFC 6062 data connection the client gave up on, still in the backlog, is the usual one)
// is closed, and pion's accept loop is still counted out of Server.loops. It used to stay
// counted, and Server.Close waited closeWait for it, then failed ("goroutines did not stop
// in time"); TestTCPRelayPolicy hit it about 3 times in 20.
func TestConnListenerAcceptAfterClose(t *testing.T) {
	s, err := New(baseConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}

	g := &gatedListener{entered: make(chan struct{}, 1), conns: make(chan net.Conn, 1), addr: ln.Addr()}
	s.loops.Add(1) // pion's accept loop, as Listen counts it
	cl := newConnListener(s, g, nil)
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := cl.Accept()
		res <- result{c, err}
	}()
	<-g.entered
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	g.conns <- raw // the accept completes after Close
	r := <-res
	if r.c != nil || !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, %v; want nil, net.ErrClosed", r.c, r.err)
	}
	// The connection was closed: the client reads EOF.
	_ = client.SetReadDeadline(time.Now().Add(rawTimeout))
	if n, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read %d, %v after the late accept; want EOF (connection closed)", n, err)
	}
	if n := s.tcpConns.Load(); n != 0 {
		t.Errorf("tcpConns = %d after the late accept, want 0", n)
	}
	loopsDone := make(chan struct{})
	go func() { s.loops.Wait(); close(loopsDone) }()
	select {
	case <-loopsDone:
	case <-time.After(rawTimeout):
		s.loops.Done() // let the waiter end, so the leak check reports only this failure
		<-loopsDone
		t.Fatal("Server.loops still counts the accept loop after Accept returned net.ErrClosed")
	}
}
