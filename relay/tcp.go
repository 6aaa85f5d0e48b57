package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// TURN over TCP and TLS. pion's listener loop wraps each accepted net.Conn in its own
// STUN framer and reads whole frames from it. To put the filter in front, the conn pion
// gets is a tcpConn whose Read returns exactly one filtered frame, taken from a second
// STUN framer (turn.NewSTUNConn) over the real connection. pion's framer, seeing one whole
// frame per Read, passes it through unchanged.

// tcpWriteTimeout bounds every write to a TCP/TLS client: one that cannot take a write for
// 10 s is gone or hostile, and a stuck write would block pion's loop for that connection.
const tcpWriteTimeout = 10 * time.Second

// connListener wraps a TCP or TLS listener: it caps concurrent connections, wraps each in
// a tcpConn, tracks them so Close can end them, and survives temporary accept errors
// (pion's loop would otherwise stop accepting for good).
type connListener struct {
	net.Listener
	s      *Server
	tlsCfg *tls.Config

	mu     sync.Mutex
	conns  map[*tcpConn]struct{} // guarded by mu
	closed bool                  // guarded by mu
	done   chan struct{}
	once   sync.Once
}

func newConnListener(s *Server, ln net.Listener, tlsCfg *tls.Config) *connListener {
	return &connListener{Listener: ln, s: s, tlsCfg: tlsCfg, conns: map[*tcpConn]struct{}{}, done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.once.Do(l.s.loops.Done)
				return nil, err
			}
			// EMFILE and friends: wait and retry, as net/http does (5 ms doubling to 1 s).
			l.s.log.Warn("relay accept failed", "err", err)
			select {
			case <-time.After(backoff):
			case <-l.done:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		src := sourceKey(addrPortOf(raw.RemoteAddr()).Addr())
		if !l.s.unauth.take(src, l.s.cfg.TCPUnauthPerSource) {
			l.s.stats.tcpRefused.Add(1)
			_ = raw.Close()
			continue
		}
		if l.s.tcpConns.Add(1) > int64(l.s.cfg.MaxTCPConns) {
			l.s.tcpConns.Add(-1)
			l.s.unauth.release(src)
			l.s.stats.tcpRefused.Add(1)
			_ = raw.Close()
			continue
		}
		var nc net.Conn = raw
		if l.tlsCfg != nil {
			nc = tls.Server(raw, l.tlsCfg)
		}
		c := &tcpConn{Conn: nc, l: l, src: src, dw: &deadlineWriter{Conn: nc}}
		// The TLS handshake (lazy, on first Read) and the first authenticated request must
		// both fit in TCPAuthTimeout.
		_ = nc.SetReadDeadline(time.Now().Add(l.s.cfg.TCPAuthTimeout))
		// Cannot fail: only UDP sockets need setting up.
		c.filter, _ = newFilterConn(l.s, turn.NewSTUNConn(c.dw), c)
		c.buf = make([]byte, maxFrame)
		l.mu.Lock()
		if l.closed {
			// Close ran between the accept and here (a client's connection still in the
			// backlog, e.g. an RFC 6062 data connection it gave up on): pion's loop ends on
			// this error as on any other close, so its count ends here too.
			l.mu.Unlock()
			l.s.tcpConns.Add(-1)
			l.s.unauth.release(src)
			_ = nc.Close()
			l.once.Do(l.s.loops.Done)
			return nil, net.ErrClosed
		}
		l.conns[c] = struct{}{}
		l.s.loops.Add(1) // pion's per-connection goroutine; Done when it closes the conn
		l.mu.Unlock()
		return c, nil
	}
}

// Close stops accepting and closes every open connection, ending pion's loops for them.
func (l *connListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	conns := make([]*tcpConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	for _, c := range conns {
		_ = c.Conn.Close() // pion's loop sees the error and calls c.Close
	}
	return err
}

// tcpConn is what pion reads one TURN-over-TCP/TLS client from.
type tcpConn struct {
	net.Conn // the TCP or TLS connection
	l        *connListener
	filter   *filterConn
	buf      []byte     // owned by pion's read goroutine
	src      netip.Addr // the source's unauthSources key, held until authenticated or closed

	dw *deadlineWriter
	// raw: an RFC 6062 data connection after its ConnectionBind succeeded carries the
	// peer's bytes, no more STUN: Read and Write pass them through.
	raw atomic.Bool

	authed     atomic.Bool
	lastReadDL atomic.Int64 // unix nanos when the idle deadline was last moved
	closeOnce  sync.Once
}

// Read returns exactly one filtered frame.
func (c *tcpConn) Read(b []byte) (int, error) {
	if c.authed.Load() {
		c.refreshReadDeadline()
	}
	if c.raw.Load() {
		return c.Conn.Read(b)
	}
	n, _, err := c.filter.ReadFrom(c.buf)
	if err != nil {
		return 0, err
	}
	if n > len(b) {
		return 0, errors.New("relay: frame larger than read buffer")
	}
	return copy(b, c.buf[:n]), nil
}

// Write is pion writing a response or relayed data: the filter may rewrite challenges.
func (c *tcpConn) Write(b []byte) (int, error) {
	if c.raw.Load() {
		return c.dw.Write(b)
	}
	n, err := c.filter.WriteTo(b, c.Conn.RemoteAddr())
	if err == nil && len(b) >= 2 && c.authed.Load() &&
		binary.BigEndian.Uint16(b) == stun.NewType(stun.MethodConnectionBind, stun.ClassSuccessResponse).Value() {
		// pion answered ConnectionBind and now copies between this connection and the
		// peer's, in both directions (RFC 6062 §5.4).
		c.raw.Store(true)
	}
	return n, err
}

// authenticated switches from the short pre-auth deadline to the idle deadline.
func (c *tcpConn) authenticated() {
	if !c.authed.Swap(true) {
		c.l.s.unauth.release(c.src)
		c.refreshReadDeadline()
	}
}

// refreshReadDeadline moves the idle deadline forward at most every eighth of it, so the
// per-frame cost is a clock read, not a timer update.
func (c *tcpConn) refreshReadDeadline() {
	idle := c.l.s.cfg.TCPIdleTimeout
	now := time.Now()
	if now.UnixNano()-c.lastReadDL.Load() < int64(idle/8) {
		return
	}
	c.lastReadDL.Store(now.UnixNano())
	_ = c.Conn.SetReadDeadline(now.Add(idle))
}

// deadlineWriter keeps a write deadline at least tcpWriteTimeout/2 ahead of every write
// (moved at most every half timeout, so the per-frame cost is a clock read). Every write to
// a TCP/TLS client goes through it.
type deadlineWriter struct {
	net.Conn
	last atomic.Int64 // unix nanos when the deadline was last moved
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	now := time.Now()
	if now.UnixNano()-w.last.Load() >= int64(tcpWriteTimeout/2) {
		w.last.Store(now.UnixNano())
		_ = w.Conn.SetWriteDeadline(now.Add(tcpWriteTimeout))
	}
	return w.Conn.Write(b)
}

// Close is called by pion when its loop for this connection ends.
func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.s.tcpConns.Add(-1)
		if !c.authed.Swap(true) {
			c.l.s.unauth.release(c.src)
		}
		c.l.s.loops.Done()
	})
	return err
}

// unauthSources counts, per source, the TCP/TLS connections that have not authenticated
// yet (see Config.TCPUnauthPerSource). Touched twice per connection (accept, then
// authentication or close), never per frame.
type unauthSources struct {
	mu sync.Mutex
	n  map[netip.Addr]int // guarded by mu; only sources with connections pending
}

// sourceKey is the address a source is counted by: the IPv4 address, or the IPv6 /64 (one
// host holds a whole /64 and could otherwise spread its connections over it).
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// take counts one more pending connection for src, unless it already has limit.
func (u *unauthSources) take(src netip.Addr, limit int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == nil {
		u.n = map[netip.Addr]int{}
	}
	if u.n[src] >= limit {
		return false
	}
	u.n[src]++
	return true
}

func (u *unauthSources) release(src netip.Addr) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[src]--; u.n[src] <= 0 {
		delete(u.n, src)
	}
}
