package natsrouter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

func (r *Router) beat() {
	defer close(r.done)
	t := time.NewTicker(r.opt.Heartbeat)
	defer t.Stop()
	r.sendHeartbeat()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.sweep(now)
			r.sendHeartbeat()
		}
	}
}

func (r *Router) sendHeartbeat() {
	r.mu.RLock()
	hb := heartbeat{Node: r.self, Inc: r.inc, Marks: r.marks, Info: r.info}
	for name, p := range r.peers {
		if !p.refused {
			hb.Heard = append(hb.Heard, name)
		}
	}
	r.mu.RUnlock()
	b, _ := json.Marshal(hb)
	if err := r.nc.Publish(r.prefix+".hb", b); err != nil {
		r.log.Warn("cluster heartbeat", "err", err)
	}
}

// sweep declares peers silent for DeadAfter gone (their sessions adopted),
// ends moves that took too long, and fences this node when it has lost the
// cluster's majority (fence.go).
func (r *Router) sweep(now time.Time) {
	var ch changes
	defer r.apply(&ch)
	r.mu.Lock()
	r.sweepMovesLocked(now, &ch)
	ch.senders = r.sweepSendersLocked(now)
	// Fencing first: a node about to fence must not adopt the sessions of
	// the nodes it lost (they adopt its own).
	r.fenceCheckLocked(now, &ch)
	for id, t := range r.tombs {
		if now.Sub(t.at) > tombTTL {
			delete(r.tombs, id)
		}
	}
	for room, a := range r.admitted {
		for id, at := range a {
			if now.Sub(at) > admissionTTL {
				delete(a, id)
			}
		}
		if len(a) == 0 {
			delete(r.admitted, room)
		}
	}
	for name, p := range r.peers {
		if now.Sub(p.last) < r.opt.DeadAfter {
			continue
		}
		delete(r.peers, name)
		if !p.refused {
			r.gone.Add(1)
			r.log.Warn("cluster: node gone (no heartbeat)", "peer", name, "silent", now.Sub(p.last).Round(time.Millisecond))
		}
		r.nodeGoneLocked(name, &ch)
		r.notifyLocked()
	}
	r.mu.Unlock()
}

// changes are what a change of the cluster asks of the hub and the local
// sessions, done without r.mu (apply).
type changes struct {
	left  []departure // peer-left to tell
	adopt [][]byte    // states to adopt
	drain []string    // arrivals that may deliver now
	fence bool        // this node lost the majority
	// arrivals never imported: what they hold goes where the session is
	abandon map[string]*arrival
	senders map[string]*senderWait // waits to let go
}

// nodeGoneLocked forgets a node that died, left or restarted: its sessions
// are adopted where their state was kept.
func (r *Router) nodeGoneLocked(name string, ch *changes) {
	if r.fenced {
		r.dropNodeLocked(name) // the majority adopts; there is nobody here to tell
		return
	}
	mine, left, drain := r.adoptLocked(name)
	ch.adopt = append(ch.adopt, mine...)
	ch.left = append(ch.left, left...)
	ch.drain = append(ch.drain, drain...)
}

func (r *Router) apply(ch *changes) {
	if ch.fence {
		r.mu.RLock()
		s := r.sessions
		r.mu.RUnlock()
		if s != nil {
			s.Fence()
		}
	}
	for id, a := range ch.abandon {
		r.abandon(id, a)
	}
	for id, w := range ch.senders {
		r.releaseSender(id, w, true)
	}
	r.tellLeft(ch.left)
	if len(ch.adopt) > 0 {
		r.mu.RLock()
		s := r.sessions
		r.mu.RUnlock()
		for _, st := range ch.adopt {
			if s != nil {
				s.Adopt(st)
				r.adopted.Add(1)
			}
		}
	}
	for _, id := range ch.drain {
		r.mu.RLock()
		a := r.incoming[id]
		r.mu.RUnlock()
		if a != nil {
			r.drain(id, a)
		}
	}
}

// tellLeft gives local members the peer-left of sessions whose node went.
func (r *Router) tellLeft(left []departure) {
	for _, d := range left {
		_ = d.to.ep.Deliver(signaling.Envelope{Kind: signaling.KindClient, To: d.to.m.ID, Room: d.to.room,
			Body: peerLeftBody(d.id)})
	}
}

func peerLeftBody(id string) []byte {
	b, _ := json.Marshal(wire.PeerLeft{Type: wire.TypePeerLeft, ID: id, Reason: wire.ReasonLeft})
	return b
}

func (r *Router) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Router) onHeartbeat(m *nats.Msg) {
	hb, err := parseHeartbeat(m.Data)
	if err != nil {
		r.bad.Add(1)
		return
	}
	if hb.Node == r.self {
		r.mu.RLock()
		other := hb.Inc != r.inc && hb.Inc != r.oldInc
		r.mu.RUnlock()
		if other {
			r.log.Error("cluster: another node uses this node's name", "name", r.self)
		}
		return
	}
	answer := false
	var ch changes
	defer r.apply(&ch)
	r.mu.Lock()
	p, ok := r.peers[hb.Node]
	if hb.Bye {
		if ok && p.inc == hb.Inc {
			delete(r.peers, hb.Node)
			delete(r.known, hb.Node) // left on purpose: no longer part of the majority
			r.nodeGoneLocked(hb.Node, &ch)
			r.notifyLocked()
			r.log.Info("cluster: node left", "peer", hb.Node)
		}
		r.mu.Unlock()
		return
	}
	if !ok || p.inc != hb.Inc {
		if ok { // restarted: what it had is gone
			delete(r.peers, hb.Node) // adopted by the nodes linked now
			r.nodeGoneLocked(hb.Node, &ch)
		}
		p = &peer{inc: hb.Inc}
		r.peers[hb.Node] = p
		answer = true // let it hear us without waiting a period
		if bad := r.mismatch(hb.Marks); bad != "" {
			p.refused = true
			r.refused.Add(1)
			r.log.Error("cluster: refusing node: its "+bad+" differs from this node's", "peer", hb.Node)
		} else {
			r.log.Info("cluster: node seen", "peer", hb.Node)
		}
		r.notifyLocked()
	}
	p.last = time.Now()
	if hb.Info != nil {
		p.info = hb.Info
	}
	if !p.refused {
		linked := slices.Contains(hb.Heard, r.self)
		if linked && !p.linked {
			r.nodesSeen.Add(1)
			// From now on this peer gets every change, after this snapshot.
			r.sendSnapshotLocked(hb.Node)
			r.log.Info("cluster: linked", "peer", hb.Node)
		}
		if linked != p.linked {
			p.linked = linked
			r.notifyLocked()
		}
		if linked {
			r.known[hb.Node] = p.last
		}
	}
	r.mu.Unlock()
	if answer {
		r.sendHeartbeat()
	}
}

// marks keys each named secret's HMAC with the cluster secret.
func marks(key []byte, named map[string][]byte) map[string]string {
	out := map[string]string{"SWITCHBOARD_CLUSTER_SECRET": mac(key, "cluster", nil)}
	for name, v := range named {
		out[name] = mac(key, name, v)
	}
	return out
}

func mac(key []byte, name string, v []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("switchboard cluster mark v1\x00" + name + "\x00"))
	h.Write(v)
	return hex.EncodeToString(h.Sum(nil))
}

// mismatch names the first secret whose mark differs ("" if none): the
// cluster secret first, as a different one changes every mark.
func (r *Router) mismatch(theirs map[string]string) string {
	const cs = "SWITCHBOARD_CLUSTER_SECRET"
	if !hmac.Equal([]byte(theirs[cs]), []byte(r.marks[cs])) {
		return cs
	}
	names := make([]string, 0, len(r.marks))
	for n := range r.marks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !hmac.Equal([]byte(theirs[n]), []byte(r.marks[n])) {
			return n
		}
	}
	return ""
}
