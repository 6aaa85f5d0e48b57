package signaling

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

type iceResponse struct {
	ICEServers []ICEServer `json:"iceServers"`
	TTL        int64       `json:"ttl"`
}

// ICEServersHandler serves GET /api/ice-servers: {"iceServers":[...],"ttl":<s>} for
// clients with their own signaling. With AuthSecret it needs "Authorization: Bearer
// <jwt>" (401 otherwise); in open mode it is rate-limited per client IP (429).
func (h *Hub) ICEServersHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store") // credentials: never cache
		now := time.Now()
		var user string
		if len(h.cfg.AuthSecret) > 0 {
			cl, err := verifyToken(h.cfg.AuthSecret, bearer(r))
			if err != nil {
				h.st.authRefused.Add(1)
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
				http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
				return
			}
			user = cl.Subject
		} else {
			ip := clientIP(r, h.cfg.TrustedProxies)
			if !h.creds.allow(ip, now) {
				h.st.rateLimited.Add(1)
				secs := max(1, int(1/h.cfg.CredentialRate+0.5))
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				http.Error(w, "too many requests", http.StatusTooManyRequests)
				return
			}
			user = newID(9) // a fresh TURN user per request: quotas are per credential set
		}
		servers, exp, err := h.cfg.ICE.ICEServers(r.Context(), user)
		if err != nil {
			h.log.Error("mint ice servers", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "cannot issue ICE servers", http.StatusServiceUnavailable)
			return
		}
		h.st.credentialsIssued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(iceResponse{ICEServers: servers, TTL: ttlSeconds(now, exp)})
	})
}
