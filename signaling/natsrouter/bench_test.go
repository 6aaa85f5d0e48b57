package natsrouter

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/routertest"
)

// counter counts deliveries and says when it has want.
type counter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (c *counter) Deliver(signaling.Envelope) error {
	if c.n.Add(1) == c.want {
		close(c.done)
	}
	return nil
}

// echo sends every client envelope back to its sender.
type echo struct{ r signaling.Router }

func (e echo) Deliver(env signaling.Envelope) error {
	if env.Kind == signaling.KindClient {
		e.r.Send(signaling.Envelope{Kind: signaling.KindClient, From: env.To, To: env.From, Body: env.Body})
	}
	return nil
}

type ch chan struct{}

func (c ch) Deliver(signaling.Envelope) error { c <- struct{}{}; return nil }

var benchBody = []byte(`{"type":"signal","from":"0123456789abcdef","data":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"}}`)

// BenchmarkClusterSend: envelopes from a session on one node to a session on
// another, one way (throughput: ns/op is the time per message).
func BenchmarkClusterSend(b *testing.B) {
	nodes := startCluster(b, 3, nil)
	c := &counter{want: int64(b.N), done: make(chan struct{})}
	nodes[0].router.Register("s", &counter{})
	nodes[1].router.Register("r", c)
	settleID(b, nodes[0].router, "r")
	b.ResetTimer()
	for range b.N {
		nodes[0].router.Send(signaling.Envelope{Kind: signaling.KindClient, From: "s", To: "r", Body: benchBody})
	}
	select {
	case <-c.done:
	case <-time.After(routertest.WaitFor):
		// A flood beyond the server's per-client pending limit (64 MiB) makes
		// NATS cut the receiving node as a slow consumer: messages are lost.
		b.Fatalf("%d of %d delivered", c.n.Load(), b.N)
	}
}

// BenchmarkClusterRoundTrip: a message to a session on another node and its
// answer (ns/op is the round trip).
func BenchmarkClusterRoundTrip(b *testing.B) {
	nodes := startCluster(b, 3, nil)
	back := make(ch, 1)
	nodes[0].router.Register("s", back)
	nodes[1].router.Register("r", echo{nodes[1].router})
	settleID(b, nodes[0].router, "r")
	b.ResetTimer()
	for range b.N {
		nodes[0].router.Send(signaling.Envelope{Kind: signaling.KindClient, From: "s", To: "r", Body: benchBody})
		select {
		case <-back:
		case <-time.After(routertest.WaitFor):
			b.Fatal("no answer")
		}
	}
}

func settleID(b *testing.B, r *Router, id string) {
	b.Helper()
	routertest.Eventually(b, id+" known", func() bool {
		r.mu.RLock()
		defer r.mu.RUnlock()
		_, ok := r.entries[id]
		return ok
	})
}
