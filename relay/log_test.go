package relay

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// countingHandler counts records at or above its level, remembering their messages.
type countingHandler struct {
	level slog.Level
	mu    *sync.Mutex
	msgs  *[]string
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func (h countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(*h.msgs)
}

// TestNoPerPacketLogs: at Debug, the most an operator turns on, relaying writes no log line
// per packet (pion's per-packet lines sit below Debug); its Warn lines are rate-limited.
func TestNoPerPacketLogs(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			h := countingHandler{level: slog.LevelDebug, mu: &sync.Mutex{}, msgs: new([]string)}
			cfg := baseConfig(t)
			cfg.Logger = slog.New(h)
			s := startServer(t, cfg)
			peer := echoPeer(t, "udp4", "127.0.0.1:0")
			cred := s.Mint("quiet", time.Minute)
			cl := turnClient(t, s, transport, turn.RequestedAddressFamilyIPv4, cred.Username, cred.Password)
			rc, err := cl.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			exchange(t, rc, peer, 3) // permission and channel set up
			before := h.count()
			exchange(t, rc, peer, 100)
			if d := h.count() - before; d != 0 {
				h.mu.Lock()
				t.Errorf("relaying 100 packets logged %d lines at Debug: %q", d, (*h.msgs)[before:])
				h.mu.Unlock()
			}
		})
	}
	t.Run("pion warnings are rate-limited", func(t *testing.T) {
		h := countingHandler{level: slog.LevelDebug, mu: &sync.Mutex{}, msgs: new([]string)}
		l := newPionLogs(slog.New(h)).NewLogger("turn")
		start := time.Now()
		for range 1000 {
			l.Errorf("failed to send to %s", "client")
		}
		// The bucket refills while the loop runs, however slowly the machine runs it.
		limit := warnBurst + int(time.Since(start).Seconds()*warnRate) + 1
		if got := h.count(); got < 1 || got > limit {
			t.Errorf("1000 pion errors in a burst logged %d lines, want 1..%d", got, limit)
		}
	})
}
