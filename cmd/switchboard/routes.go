package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/web"
)

// mainHandler serves the app: web client, signaling, health and metrics.
func (a *app) mainHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	a.healthRoutes(mux, metrics)
	mux.Handle("/ws", a.hub)
	mux.Handle("/api/ice-servers", a.hub.ICEServersHandler())
	mux.Handle("/api/signin", a.signin)
	mux.Handle("/", web.Handler())
	return noReferrer(mux)
}

// noReferrer keeps the page's URL out of Referer headers on every answer
// (pages, API, redirects): an invite link's token lives in the fragment,
// which browsers never send, but a query token (/check?token=) would leak.
func noReferrer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// plainHandler is the HTTP listener when TLS is on: ACME HTTP-01, health
// checks for Docker and load balancers, and a redirect to HTTPS for the rest.
func (a *app) plainHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	a.healthRoutes(mux, metrics)
	mux.HandleFunc("/", a.redirectHTTPS)
	if a.certs.acme == nil {
		return noReferrer(mux)
	}
	acmeHandler := a.certs.acme.HTTPHandler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// autocert checks its host policy against r.Host verbatim; a
		// validator reaching a non-default port sends "name:port", which
		// would never match the domain list.
		if h, _, err := net.SplitHostPort(r.Host); err == nil && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			r = r.Clone(r.Context())
			r.Host = h
		}
		w.Header().Set("Referrer-Policy", "no-referrer")
		acmeHandler.ServeHTTP(w, r)
	})
}

func (a *app) healthRoutes(mux *http.ServeMux, metrics http.Handler) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if a.cluster.fenced() {
			// Cut off from its cluster's majority: the others serve its
			// sessions now, the load balancer must send clients there.
			http.Error(w, "not ready: cut off from the cluster", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if a.cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", a.metricsGuard(metrics))
	}
}

// metricsGuard keeps /metrics on the public listeners to this host: with TLS
// the documented port-80 forward exposes the plain listener to the internet, and
// the counters tell a stranger how busy the server is and when. A scraper
// elsewhere sends METRICS_TOKEN, or gets its own METRICS_ADDR listener.
func (a *app) metricsGuard(h http.Handler) http.Handler {
	var want [32]byte
	if a.cfg.MetricsToken != "" {
		want = sha256.Sum256([]byte(a.cfg.MetricsToken))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if localRequest(r, []netip.Prefix(a.cfg.TrustedProxies)) {
			h.ServeHTTP(w, r)
			return
		}
		if a.cfg.MetricsToken != "" {
			if tok := bearerToken(r); tok != "" {
				got := sha256.Sum256([]byte(tok))
				if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
					h.ServeHTTP(w, r)
					return
				}
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics need Authorization: Bearer SWITCHBOARD_METRICS_TOKEN", http.StatusUnauthorized)
			return
		}
		http.Error(w, "metrics are served to this host only: set SWITCHBOARD_METRICS_TOKEN or SWITCHBOARD_METRICS_ADDR to scrape from elsewhere", http.StatusForbidden)
	})
}

// localRequest reports whether r comes from this host: a loopback client
// address, and not relayed by a local reverse proxy that is not trusted
// (its forwarding headers then name someone else).
func localRequest(r *http.Request, trusted []netip.Prefix) bool {
	if !signaling.ClientIP(r, trusted).IsLoopback() {
		return false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil && slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(peer.Addr().Unmap()) }) {
		return true // a trusted proxy's X-Forwarded-For was believed above
	}
	return r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("Forwarded") == "" && r.Header.Get("X-Real-Ip") == ""
}

// bearerToken extracts the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// redirectHTTPS sends a browser to HTTPS. A request to the default port 80
// (no port in Host) goes to the default port 443: behind a router that
// forwards 80->8080 and 443->8443 the bound port is not the public one. A
// request naming a port (localhost:8080) goes to the bound HTTPS port.
func (a *app) redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	explicitPort := err == nil
	if !explicitPort {
		host = strings.Trim(r.Host, "[]")
	}
	if host == "" {
		host = a.cfg.Domain
	}
	if p := portOf(a.httpsLn.Addr()); explicitPort && p != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
}
