package relay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/logging"
	"golang.org/x/time/rate"
)

// pionLogs adapts pion's leveled logging to slog. pion logs at Debug and Info for every
// STUN message and every datagram it relays (one line per packet: 224 MB in 50 minutes of
// tests), and at Error for conditions a remote client can trigger at will (unknown
// attributes, failed sends). So: Trace is dropped; Debug and Info go to levelPionDetail,
// below Debug, where no operator's debug setting reaches (a test handler at that level
// still sees them); Warn and Error become Warn, at most warnRate lines a second across
// pion, so a hostile client cannot fill the log.
type pionLogs struct {
	log  *slog.Logger
	warn *rate.Limiter // shared by every scope; nil: newPionLogs not used (tests)
}

// levelPionDetail is where pion's Debug and Info lines go: four steps below Debug, the
// same distance as Debug from Info.
const levelPionDetail = slog.LevelDebug - 4

// warnRate and warnBurst bound pion's warnings: a real problem (a relay socket failing)
// shows in the first lines; what comes at more than 5 a second is one client's noise.
const (
	warnRate  = 5
	warnBurst = 20
)

func newPionLogs(log *slog.Logger) pionLogs {
	return pionLogs{log: log, warn: rate.NewLimiter(warnRate, warnBurst)}
}

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("component", "pion-"+scope), warn: f.warn}
}

type pionLogger struct {
	log  *slog.Logger
	warn *rate.Limiter
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	// Checked before formatting so per-packet Debugf calls cost no Sprintf.
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	if level >= slog.LevelWarn && l.warn != nil && !l.warn.Allow() {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(msg string)      { l.logf(levelPionDetail, "%s", msg) }
func (l pionLogger) Debugf(f string, a ...any) {
	l.logf(levelPionDetail, f, a...)
}
func (l pionLogger) Info(msg string)          { l.logf(levelPionDetail, "%s", msg) }
func (l pionLogger) Infof(f string, a ...any) { l.logf(levelPionDetail, f, a...) }
func (l pionLogger) Warn(msg string)          { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(f string, a ...any) { l.logf(slog.LevelWarn, f, a...) }
func (l pionLogger) Error(msg string)         { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Errorf(f string, a ...any) {
	l.logf(slog.LevelWarn, f, a...)
}

// logGate makes sure nothing is logged once Close has returned, so a caller may close the
// log's destination (a test's t.Output, a file) right after.
//
// Close waits for every goroutine it can observe: each of pion's loops ends with a last call
// into our code (a read or accept error, a Close, an allocation event) and Close waits for
// all of those. But pion/turn v5 offers no way to wait for its goroutines themselves, and
// after that last call they still run a few lines: log "Exit read loop on error",
// close their allocation manager, return. Those tails never block on I/O, yet they may
// log after Close returns. Every log line, pion's and ours, goes through one gatedHandler;
// Close shuts the gate under mu's write lock, which waits for a Handle in progress, and no
// Handle writes after that.
type logGate struct {
	mu     sync.RWMutex
	closed bool // guarded by mu
}

func (g *logGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// gatedHandler passes records to inner until its gate closes.
type gatedHandler struct {
	inner slog.Handler
	gate  *logGate
}

func (h gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	h.gate.mu.RLock()
	defer h.gate.mu.RUnlock()
	if h.gate.closed {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return gatedHandler{inner: h.inner.WithAttrs(attrs), gate: h.gate}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{inner: h.inner.WithGroup(name), gate: h.gate}
}
