package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

// recordHandler keeps every log record's message and notes which arrived after mark.
type recordHandler struct {
	mu     sync.Mutex
	msgs   []string // guarded by mu
	marked int      // len(msgs) when mark was called; -1 before; guarded by mu
}

func newRecordHandler() *recordHandler { return &recordHandler{marked: -1} }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}

func (h *recordHandler) mark() {
	h.mu.Lock()
	h.marked = len(h.msgs)
	h.mu.Unlock()
}

// counts returns how many records arrived before and after mark.
func (h *recordHandler) counts() (before int, after []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.marked < 0 {
		return len(h.msgs), nil
	}
	return h.marked, slices.Clone(h.msgs[h.marked:])
}

// TestCloseStopsEverything closes a server with live allocations relaying data and checks
// that no goroutine of the server outlives it (goleak, once the clients are gone too) and
// that nothing is logged after Close returns: pion's read loops log as they exit, and a
// caller (cmd's tests log to t.Output) may close the log's destination right after Close.
func TestCloseStopsEverything(t *testing.T) {
	tests := []struct {
		name       string
		transports []string // one allocation relaying data per entry
		shutdown   bool     // Shutdown with an expired context instead of Close
		// evenPort adds a raw Allocate with EVEN-PORT: pion then opens and closes relay
		// sockets that no read loop ever reads (GetRandomEvenPort), which Close must not
		// wait for.
		evenPort bool
	}{
		{name: "idle"},
		{name: "udp allocation", transports: []string{"udp"}},
		{name: "tcp allocation", transports: []string{"tcp"}},
		{name: "udp and tcp allocations", transports: []string{"udp", "tcp", "udp"}},
		{name: "shutdown cut short", transports: []string{"udp", "tcp"}, shutdown: true},
		{name: "even-port allocation", transports: []string{"udp"}, evenPort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			rec := newRecordHandler()
			// Registered first, so it runs last: after the clients and the echo peer closed.
			t.Cleanup(func() {
				goleak.VerifyNone(t, ignore)
				// Every goroutine of the server has ended, so any late line is in by now.
				before, after := rec.counts()
				if before == 0 {
					t.Errorf("nothing logged before Close: the recording logger is not wired")
				}
				if len(after) > 0 {
					t.Errorf("%d lines logged after Close returned, first %q", len(after), after[0])
				}
			})
			cfg := baseConfig(t)
			cfg.Logger = slog.New(rec)
			// More read loops than cores, so some of pion's exiting loops are still queued
			// for a core when Close returns.
			cfg.Sockets = 8
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Listen(t.Context()); err != nil {
				t.Fatal(err)
			}
			peer := echoPeer(t, "udp4", "127.0.0.1:0")
			for i, tr := range tt.transports {
				cred := s.Mint("user"+strconv.Itoa(i), time.Minute)
				cl := turnClient(t, s, tr, turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
				rc, err := cl.Allocate()
				if err != nil {
					t.Fatalf("Allocate over %s: %v", tr, err)
				}
				t.Cleanup(func() { _ = rc.Close() })
				exchange(t, rc, peer, 5)
			}
			wantAllocs := len(tt.transports)
			if tt.evenPort {
				cred := s.Mint("even", time.Minute)
				sess := newRawClient(t, s).login(stun.MethodAllocate, cred.Username, cred.Password)
				evenPort := stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}
				if got := errorCode(sess.signed(stun.MethodAllocate, requestedTransportUDP, evenPort)); got != 0 {
					t.Fatalf("Allocate with EVEN-PORT = %d, want success", got)
				}
				wantAllocs++
			}
			if got := s.Allocations(); got != wantAllocs {
				t.Fatalf("Allocations() = %d before Close, want %d", got, wantAllocs)
			}
			if tt.shutdown {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				err = s.Shutdown(ctx)
				if len(tt.transports) > 0 && !errors.Is(err, context.Canceled) {
					t.Errorf("Shutdown(cancelled ctx) = %v, want context.Canceled", err)
				}
			} else {
				// Close waits only for loops that are ending. Had it given up waiting for
				// them (closeWait, a hang guard thousands of times what they take), it
				// would say so in its error; how long it took is the machine's business.
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			rec.mark()
			if got := s.Allocations(); got != 0 {
				t.Errorf("Allocations() = %d after Close, want 0", got)
			}
			// A second Close is a no-op and logs nothing either.
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestListenBusyPort covers a port 0 listen address whose port turns out to be taken on the
// TCP or the UDP side: Listen must move on to a fresh port, up to maxBindAttempts times, and
// leave nothing bound when it gives up. bindHints stands in for the kernel's choice of
// port, so each case meets exactly the busy ports it names.
func TestListenBusyPort(t *testing.T) {
	tests := []struct {
		name    string
		side    string // "tcp" or "udp": which side of each busy port is held
		busy    int    // ports held and handed to Listen as its first choices
		fixed   bool   // ListenAddr names the first busy port instead of port 0
		wantErr bool
	}{
		{name: "no busy port", side: "tcp"},
		{name: "tcp: first port busy", side: "tcp", busy: 1},
		{name: "tcp: five ports busy", side: "tcp", busy: 5},
		{name: "tcp: one free attempt left", side: "tcp", busy: maxBindAttempts - 1},
		{name: "tcp: every attempt busy", side: "tcp", busy: maxBindAttempts, wantErr: true},
		{name: "tcp: fixed port busy, no retry", side: "tcp", busy: 1, fixed: true, wantErr: true},
		{name: "udp: first port busy", side: "udp", busy: 1},
		{name: "udp: one free attempt left", side: "udp", busy: maxBindAttempts - 1},
		{name: "udp: every attempt busy", side: "udp", busy: maxBindAttempts, wantErr: true},
		{name: "udp: fixed port busy, no retry", side: "udp", busy: 1, fixed: true, wantErr: true},
		// A reuseport UDP socket of the same user, as another server would hold: our sockets
		// must not join its group.
		{name: "udp reuseport: first port busy", side: "udp-reuseport", busy: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy := holdPorts(t, tt.side, tt.busy)
			other := "udp4"
			if tt.side != "tcp" {
				other = "tcp4"
			}
			// The other side of a held port may be busy anyway (loopback TCP connections in
			// TIME-WAIT hold many ports): only ports free there now are checked after a failure.
			var otherFree []int
			for _, p := range busy {
				if bindOnce(other, p) == nil {
					otherFree = append(otherFree, p)
				}
			}
			cfg := baseConfig(t)
			if tt.fixed {
				cfg.ListenAddr = "127.0.0.1:" + strconv.Itoa(busy[0])
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.fixed {
				s.bindHints = busy
			}
			err = s.Listen(t.Context())
			t.Cleanup(func() { _ = s.Close() })
			if tt.wantErr {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Fatalf("Listen = %v, want EADDRINUSE", err)
				}
				// Nothing stays bound: the other side of every port tried is free again.
				for _, p := range otherFree {
					if err := bindOnce(other, p); err != nil {
						t.Fatalf("%s port %d still bound after the failed Listen: %v", other, p, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen: %v (busy %v)", err, busy)
			}
			udp, tcp := s.UDPAddr().(*net.UDPAddr).Port, s.TCPAddr().(*net.TCPAddr).Port
			if udp != tcp || slices.Contains(busy, udp) {
				t.Fatalf("bound udp %d, tcp %d; want one port outside the busy %v", udp, tcp, busy)
			}
			// The server serves on the port it found.
			cl := newRawClient(t, s)
			if got := errorCode(cl.do(stun.MustBuild(stun.TransactionID, stun.BindingRequest))); got != 0 {
				t.Fatalf("Binding on the found port = %d, want success", got)
			}
		})
	}
}

// holdPorts binds n ports on 127.0.0.1 on one side ("tcp", "udp", or "udp-reuseport") until
// the test ends and returns their numbers. UDP ports are picked with their TCP side free,
// so Listen meets them busy for UDP only.
func holdPorts(t testing.TB, side string, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	// Bounded: loopback TIME-WAIT sockets hold about half the ports for TCP.
	for try := 0; len(ports) < n; try++ {
		if try == 100*n {
			t.Fatalf("found only %d of %d %s ports", len(ports), n, side)
		}
		var c io.Closer
		var port int
		switch side {
		case "tcp":
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, port = ln, ln.Addr().(*net.TCPAddr).Port
		case "udp", "udp-reuseport":
			lc := net.ListenConfig{}
			if side == "udp-reuseport" {
				lc.Control = reusePort
			}
			pc, err := lc.ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, port = pc, pc.LocalAddr().(*net.UDPAddr).Port
			if bindOnce("tcp4", port) != nil {
				_ = c.Close()
				continue
			}
		}
		t.Cleanup(func() { _ = c.Close() })
		ports = append(ports, port)
	}
	return ports
}

// bindOnce binds 127.0.0.1:port on network and closes it at once.
func bindOnce(network string, port int) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var c io.Closer
	var err error
	if network == "tcp4" {
		c, err = net.Listen(network, addr)
	} else {
		c, err = net.ListenPacket(network, addr)
	}
	if err != nil {
		return err
	}
	return c.Close()
}
