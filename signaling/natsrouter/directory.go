package natsrouter

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// The Router is the cluster's signaling.Directory too: a resume token may
// come back on any node. Each node keeps its own sessions' tokens and
// attempts (a local directory); the other nodes know a hash of each token,
// spread with the session's entry, which is enough to find the session and
// claim it (the claim moves the attempts along with the session).

var _ signaling.Directory = (*Router)(nil)

// tokHash is what other nodes learn of a resume token.
func tokHash(token string) string {
	h := sha256.Sum256([]byte("switchboard resume token\x00" + token))
	return hex.EncodeToString(h[:16])
}

// Add implements signaling.Directory.
func (r *Router) Add(token, id string) {
	r.local.Add(token, id)
	t := tokHash(token)
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || e.ep == nil {
		return
	}
	if e.tok != "" && e.tok != t {
		delete(r.toks, e.tok)
	}
	e.tok = t
	r.toks[t] = id
	r.tellLocked(memberOp{Op: opKeep, ID: id, Epoch: e.epoch, Tok: t})
}

// Lookup implements signaling.Directory: this node's sessions first, then
// every node's.
func (r *Router) Lookup(token string) (string, bool) {
	if id, ok := r.local.Lookup(token); ok {
		return id, true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.toks[tokHash(token)]
	return id, ok
}

// Accept implements signaling.Directory (local sessions; a claim checks the
// attempt on the session's node).
func (r *Router) Accept(token string, attempt uint64) bool { return r.local.Accept(token, attempt) }

// Remove implements signaling.Directory. The cluster forgets the token with
// the session (Unregister) or learns its new node (a move).
func (r *Router) Remove(token string) { r.local.Remove(token) }
