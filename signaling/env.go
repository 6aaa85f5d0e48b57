package signaling

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// env is what a session needs of the node it lives on: limits, the router,
// pools, counters and the owner of its goroutines. Sessions get a *env, never
// the Hub. Everything in it is static after New or safe for concurrent use.
type env struct {
	cfg    Config
	log    *slog.Logger
	router Router
	dir    Directory
	keeper Mover // router, when it moves sessions between nodes; nil on one node
	// epoch is (just before) New's time.Now(): per-session deadlines are stored as int64
	// nanoseconds since it (see mono), monotonic like time.Time's but a third of
	// the size, in structs the hub holds one of per idle session.
	epoch time.Time

	// ctx is cancelled by Shutdown/Close; wg owns every goroutine the hub starts
	// (readers, workers running handlers, writers, pings and refreshes, kicks,
	// the ticker).
	ctx  context.Context
	wg   sync.WaitGroup
	work chan func() // unbuffered: a send succeeds only when a worker is idle

	// seqBufs pools *[]byte scratch for withSeq, held by a writer while it runs.
	seqBufs sync.Pool
	// bodies pools the bodies sessions copy delivered envelopes into: each lives
	// from its delivery until the client's ack, and they were most of the hub's
	// garbage under load, so most of its GC cycles.
	bodies sync.Pool

	st    counters
	calls atomic.Int64 // caller halves of calls, ringing or active
	ring  ringSet      // caller halves waiting for an answer
}

// counters are the hub's monotonic counters; see Stats.
type counters struct {
	messagesIn, messagesOut, rateLimited, authRefused, credentialsIssued, tokensRenewed,
	resumed, staleResumes, replayed, undeliverable, slowConsumers, originRefused, pendingRefused,
	handedOff, handedIn, adopted, fenced atomic.Uint64
	disconnects [numReasons]atomic.Uint64
}

// mono is t as nanoseconds since e.epoch: monotonic when t has a monotonic
// reading (time.Now does), so a wall-clock step moves no deadline.
func (e *env) mono(t time.Time) int64 { return int64(t.Sub(e.epoch)) }

// refreshTime is when to replace something that expires at exp: RefreshAt of
// its remaining lifetime from now. 0 (never) for what does not expire.
func (e *env) refreshTime(now, exp time.Time) int64 {
	if exp.IsZero() || !exp.After(now) {
		return 0
	}
	return e.mono(now.Add(time.Duration(float64(exp.Sub(now)) * e.cfg.RefreshAt)))
}

func ttlSeconds(now, exp time.Time) int64 {
	if exp.IsZero() {
		return 0
	}
	return max(0, int64(exp.Sub(now)/time.Second))
}

// putBody gives m's pooled body back, if it has one; nothing may use m.Body after.
func (e *env) putBody(m outgoing) {
	if m.pooled != nil && cap(*m.pooled) <= maxPooledFrame {
		e.bodies.Put(m.pooled)
	}
}

// newID returns n random bytes, base64url: unguessable ids and resume tokens.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(b)
}
