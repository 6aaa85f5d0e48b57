package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/web"
)

// Timeouts of the HTTP servers. Headers must arrive within 10 s (slowloris);
// idle keep-alive connections are dropped after 2 min. No write timeout:
// /ws connections are hijacked and live for hours, and the hub puts its own
// deadline on every WebSocket write.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// publicIPTimeout bounds public IP detection at start: a STUN server
	// that does not answer must not hold start-up for long.
	publicIPTimeout = 5 * time.Second
)

// app is the whole server in one process: relay, hub, web app, health and
// metrics endpoints. newApp builds it without I/O; start binds everything.
type app struct {
	// Static after newApp.
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	hub     *signaling.Hub
	certs   *certSource // nil: TLS off
	invites *signaling.InviteStore
	signin  *signaling.SignIn

	// Set by start before any listener serves; read-only afterwards.
	relay     *relay.Server
	publicHow string
	httpSrv   *http.Server
	httpsSrv  *http.Server // nil: TLS off
	metricSrv *http.Server // nil: /metrics is on the main listeners
	httpLn    net.Listener
	httpsLn   net.Listener
	metricLn  net.Listener

	offloadHow string // set by start: the relay path in use, for the banner (offload.go)

	started atomic.Pointer[startedState] // non-nil once the relay is listening
	ready   atomic.Bool                  // /readyz: listeners up and not draining

	serving sync.WaitGroup // one goroutine per http.Server.Serve
	failed  chan error     // unexpected Serve errors; one slot per server, so a send never blocks

	closeOnce sync.Once
	closeErr  error

	summary stopSummary // set by shutdown, read after it returns

	// quiet tracks when the relay last relayed anything, so a stop after the
	// browsers left does not wait drainIdle again. Owned by watchTraffic
	// (and shutdown, after stopWatch).
	quiet     trafficClock
	stopWatch chan struct{} // closed by close: watchTraffic returns
}

// trafficClock remembers when a relayed-packet count last changed.
type trafficClock struct {
	mu   sync.Mutex // guards the fields below
	last uint64
	at   time.Time
}

// observe records count n seen at now and returns when it last changed.
func (c *trafficClock) observe(n uint64, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || n != c.last {
		c.last, c.at = n, now
	}
	return c.at
}

// trafficWatchEvery is how often the running server samples the relay's
// counters for the drain: a fraction of drainIdle, and a Stats call (a few
// atomic loads and small maps) every 2 s costs nothing.
const trafficWatchEvery = 2 * time.Second

// relayedPackets is the relay's relayed-packet count, both directions.
func (a *app) relayedPackets() uint64 {
	st := a.relay.Stats()
	return st.PacketsToPeer + st.PacketsFromPeer
}

// watchTraffic samples the relay's counters until close.
func (a *app) watchTraffic() {
	t := time.NewTicker(trafficWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stopWatch:
			return
		case now := <-t.C:
			a.quiet.observe(a.relayedPackets(), now)
		}
	}
}

// startedState is what the ICE provider and the metrics collector read.
type startedState struct {
	relay     *relay.Server
	endpoints iceEndpoints
}

// newApp validates the wiring of cfg and builds the hub; it binds nothing.
// Errors that come from a setting are *configError.
func newApp(cfg Config, log *slog.Logger) (*app, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &app{
		cfg:       cfg,
		log:       log,
		reg:       prometheus.NewRegistry(),
		failed:    make(chan error, 3),
		stopWatch: make(chan struct{}),
	}
	certs, err := newCertSource(&a.cfg, log)
	if err != nil {
		return nil, err
	}
	a.certs = certs
	if a.cfg.Domain == "" && certs != nil {
		a.cfg.Domain = certs.domain
	}

	hub, err := signaling.New(signaling.Config{
		ICE:            iceProvider{a: a},
		NoLobby:        !cfg.Lobby,
		MaxRoomSize:    cfg.MaxRoomSize,
		MaxSessions:    cfg.MaxSessions,
		PingInterval:   cfg.PingInterval,
		ResumeGrace:    cfg.ResumeGrace,
		RingTimeout:    cfg.RingTimeout,
		AllowedOrigins: []string(cfg.AllowedOrigins),
		AuthSecret:     []byte(cfg.AuthSecret),
		TrustedProxies: []netip.Prefix(cfg.TrustedProxies),
		Logger:         log.With("component", "signaling"),
	})
	if err != nil {
		return nil, err // already "signaling: ..."
	}
	a.hub = hub

	a.invites = signaling.NewInviteStore(a.cfg.dataDir())
	a.signin, err = signaling.NewSignIn(signaling.SignInConfig{
		Secret:         []byte(cfg.AuthSecret),
		Passcode:       []byte(cfg.Passcode),
		PasscodeHash:   []byte(cfg.PasscodeHash),
		Invites:        a.invites,
		TrustedProxies: []netip.Prefix(cfg.TrustedProxies),
		Logger:         log.With("component", "signin"),
	})
	if err != nil {
		return nil, err // validate has checked what a setting can get wrong
	}

	a.reg.MustRegister(
		newCollector(a),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return a, nil
}

// start detects the public IP, starts the relay and binds every listener.
// On error the caller still calls close.
func (a *app) start(ctx context.Context) error {
	ip, how, err := a.publicIP(ctx)
	if err != nil {
		return err
	}
	a.publicHow = how
	if a.cfg.AuthSecret != "" {
		// A damaged use-count file stops start-up: starting over would give
		// used-up links their uses back.
		if err := a.invites.Load(ctx); err != nil {
			return &configError{Var: envPrefix + "DATA_DIR", Msg: oneLine(err.Error())}
		}
	}

	var ip4 netip.Addr
	if ip.Is4() {
		ip4 = ip
	}
	rcfg := relay.Config{
		ListenAddr:       a.cfg.TURNAddr,
		Secrets:          a.cfg.TURNSecrets.strings(),
		PublicIPv4:       ip4,
		PublicIPv6:       a.cfg.PublicIPv6,
		RelayPortMin:     a.cfg.RelayPorts.min,
		RelayPortMax:     a.cfg.RelayPorts.max,
		MaxCredentialTTL: a.cfg.MaxCredentialTTL,
		MaxAllocationAge: a.cfg.MaxAllocationAge,
		UserQuota:        a.cfg.UserQuota,
		TotalQuota:       a.cfg.TotalQuota,
		PeerAllow:        []netip.Prefix(a.cfg.PeerAllow),
		PeerDeny:         []netip.Prefix(a.cfg.PeerDeny),
		Realm:            a.cfg.Realm,
		Logger:           a.log.With("component", "relay"),
	}
	if a.certs != nil {
		rcfg.TLSListenAddrs = a.cfg.TURNSAddrs.addrs
		rcfg.TLSConfig = a.certs.turnsConfig()
	}
	if rcfg.Offload, a.offloadHow, err = relayOffload(a.cfg.RelayOffload, a.cfg.TURNAddr, attachOffload, a.log); err != nil {
		return err
	}
	rs, err := relay.New(rcfg)
	if err != nil {
		if rcfg.Offload != nil {
			rcfg.Offload.Close() // the relay owns it only once New succeeds
		}
		return err // already "relay: ..."
	}
	a.relay = rs
	// The relay outlives ctx: stopping it is shutdown's job, which drains
	// allocations first.
	if err := rs.Listen(context.WithoutCancel(ctx)); err != nil {
		return err
	}

	ep := iceEndpoints{
		Host:      ip,
		Host6:     a.cfg.PublicIPv6,
		UDPPort:   portOf(rs.UDPAddr()),
		TCPPort:   portOf(rs.TCPAddr()),
		TLSDomain: a.cfg.Domain,
	}
	for _, t := range rs.TLSAddrs() {
		ep.TLSPorts = append(ep.TLSPorts, portOf(t))
	}
	a.started.Store(&startedState{relay: rs, endpoints: ep})
	a.quiet.observe(a.relayedPackets(), time.Now())
	a.serving.Go(a.watchTraffic)

	if err := a.listenHTTP(); err != nil {
		return err
	}
	a.ready.Store(true)
	return nil
}

// publicIP picks the advertised IPv4: the configured one, or detection.
func (a *app) publicIP(ctx context.Context) (netip.Addr, string, error) {
	if a.cfg.PublicIP.IsValid() {
		return a.cfg.PublicIP, "set by SWITCHBOARD_PUBLIC_IP", nil
	}
	// A TURN listener bound to one address (127.0.0.1 for a local-only
	// server, a LAN IP on a multi-homed host) has its relay sockets there
	// too: advertising another interface's address would be unreachable.
	host, _, _ := net.SplitHostPort(a.cfg.TURNAddr)
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() && len(a.cfg.PublicIPSTUN) == 0 {
		return ip.Unmap(), "the address SWITCHBOARD_TURN_ADDR is bound to", nil
	}
	ctx, cancel := context.WithTimeout(ctx, publicIPTimeout)
	defer cancel()
	ip, how, err := relay.DetectPublicIP(ctx, a.cfg.PublicIPSTUN)
	if err == nil && ip.IsValid() {
		return ip.Unmap(), "detected: " + how, nil
	}
	if len(a.cfg.PublicIPSTUN) > 0 {
		// The operator asked for STUN detection; advertising a guess would
		// hand out relayed addresses nobody can reach.
		return netip.Addr{}, "", fmt.Errorf("detect public IP via SWITCHBOARD_PUBLIC_IP_STUN: %w (set SWITCHBOARD_PUBLIC_IP)", err)
	}
	a.log.Warn("no usable interface address; advertising loopback, reachable from this host only", "err", err)
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), "fallback: no usable interface address, this host only", nil
}

func (a *app) listenHTTP() error {
	metrics := promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)})
	main := a.mainHandler(metrics)

	httpHandler := main
	if a.certs != nil {
		httpHandler = a.plainHandler(metrics)
	}
	var err error
	if a.httpLn, err = net.Listen("tcp", a.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http: listen %s: %w", a.cfg.HTTPAddr, err)
	}
	a.httpSrv = a.newServer(httpHandler)
	a.serve(a.httpSrv, a.httpLn, false)

	if a.certs != nil {
		if a.httpsLn, err = net.Listen("tcp", a.cfg.HTTPSAddr); err != nil {
			return fmt.Errorf("https: listen %s: %w", a.cfg.HTTPSAddr, err)
		}
		a.httpsSrv = a.newServer(main)
		a.httpsSrv.TLSConfig = a.certs.httpsConfig()
		a.serve(a.httpsSrv, a.httpsLn, true)
	}
	if a.cfg.MetricsAddr != "" {
		if a.metricLn, err = net.Listen("tcp", a.cfg.MetricsAddr); err != nil {
			return fmt.Errorf("metrics: listen %s: %w", a.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		a.metricSrv = a.newServer(mux)
		a.serve(a.metricSrv, a.metricLn, false)
	}
	return nil
}

func (a *app) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// serve runs srv on ln in a goroutine owned by a.serving.
func (a *app) serve(srv *http.Server, ln net.Listener, tls bool) {
	a.serving.Go(func() {
		var err error
		if tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case a.failed <- fmt.Errorf("http: serve %s: %w", ln.Addr(), err):
			default:
			}
		}
	})
}

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

// httpURL is the plain-HTTP base URL of the running app on loopback.
func (a *app) httpURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(a.httpLn.Addr())))
}

// httpsURL is the HTTPS base URL on loopback; empty when TLS is off.
func (a *app) httpsURL() string {
	if a.httpsLn == nil {
		return ""
	}
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(a.httpsLn.Addr())))
}

// openURL is the URL a person should open in the browser.
func (a *app) openURL() string {
	httpsPort := 0
	if a.httpsLn != nil {
		httpsPort = portOf(a.httpsLn.Addr())
	}
	return publicURL(&a.cfg, portOf(a.httpLn.Addr()), httpsPort)
}

// publicURL is the URL people open, given the bound (or configured) ports:
// PUBLIC_URL when set. With TLS and a domain, https://DOMAIN/ without a port:
// the documented setup has the router forward 443 to HTTPS_ADDR (:8443 by
// default), or HTTPS_ADDR is :443 itself; printing :8443 would send people to
// a port the router does not forward. Without a domain, https://localhost:PORT/.
// Without TLS, http:// on the HTTP listener's host, or localhost (a secure
// context, so cameras work over plain HTTP there).
func publicURL(c *Config, httpPort, httpsPort int) string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	if c.tlsOn() {
		if c.Domain != "" {
			return "https://" + c.Domain + "/"
		}
		host := "localhost"
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		}
		return "https://" + host + "/"
	}
	host, _, _ := net.SplitHostPort(c.HTTPAddr)
	ip, err := netip.ParseAddr(host)
	if host == "" || (err == nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(httpPort)) + "/"
}

// shutdown stops gracefully: /readyz turns false, no new sessions or
// allocations, sessions are told to reconnect (1012), running allocations
// get up to DRAIN_TIMEOUT, then the relay and the HTTP listeners close.
// ctx bounds the whole stop.
//
// The HTTP listeners close last, unlike the usual "HTTP first": during the
// drain /readyz answers 503 (and /healthz 200), so load balancers and
// orchestrators see "not ready" rather than "connection refused", while
// the closing hub already refuses new /ws sessions.
func (a *app) shutdown(ctx context.Context) error {
	// The drain clock starts now, not after the hub is done: DRAIN_TIMEOUT
	// bounds how long allocations outlive the stop signal.
	drainUntil := time.Now().Add(a.cfg.DrainTimeout)
	a.ready.Store(false)
	if a.relay != nil {
		a.relay.Drain()
	}
	hs := a.hub.Stats()
	sum := stopSummary{Sessions: hs.Sessions}
	err := a.hub.Shutdown(ctx)

	if a.relay != nil {
		sum.Allocations = a.relay.Allocations()
		if sum.Allocations > 0 {
			a.log.Info("draining turn allocations", "allocations", sum.Allocations,
				"timeout", a.cfg.DrainTimeout, "idle_after", drainIdle)
		}
		dctx, cancel := context.WithDeadline(ctx, drainUntil)
		// Quiet since the watcher last saw the count move: browsers that left
		// a minute ago do not hold the stop for drainIdle more.
		quietSince := a.quiet.observe(a.relayedPackets(), time.Now())
		sum.End = drainRelay(dctx, a.relay.Allocations, a.relayedPackets, quietSince, drainIdle, drainPoll)
		cancel()
		// Read before Close, which forgets every allocation.
		sum.Closed = a.relay.Allocations()
		sum.Ended = max(sum.Allocations-sum.Closed, 0)
		switch sum.End {
		case drainEndTimeout:
			// Running out of drain time is the normal end of a long call,
			// not a failed stop.
			a.log.Info("drain timeout; closing remaining allocations", "allocations", sum.Closed)
		case drainEndIdle:
			a.log.Info("no relayed traffic; closing idle allocations", "allocations", sum.Closed, "idle", drainIdle)
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		err = errors.Join(err, a.relay.Close())
	}
	a.summary = sum

	var g errgroup.Group
	for _, s := range []*http.Server{a.httpSrv, a.httpsSrv, a.metricSrv} {
		if s != nil {
			g.Go(func() error { return s.Shutdown(ctx) })
		}
	}
	err = errors.Join(err, g.Wait())
	return errors.Join(err, a.close())
}

// Drain tuning. drainIdle: a live call relays something at least every few
// seconds even with camera and microphone off (ICE consent checks every 4-6 s,
// RFC 7675, and RTCP reports), so 10 s without a relayed packet means the
// browsers are gone and their allocations would only hold the stop until
// DRAIN_TIMEOUT. drainPoll: allocations end on Refresh(0); half a second adds
// nothing noticeable to a stop.
const (
	drainIdle = 10 * time.Second
	drainPoll = 500 * time.Millisecond
)

// drainEnd is why the drain ended.
type drainEnd int

const (
	drainEndDone    drainEnd = iota // no allocation left
	drainEndIdle                    // allocations left, but none relayed anything for drainIdle
	drainEndTimeout                 // ctx ended (DRAIN_TIMEOUT, or the stop's own deadline)
)

// drainRelay waits until allocs() is 0, traffic() (a relayed-packet count)
// stays unchanged for idle, or ctx ends, checking every poll. quietSince is
// when the count last moved before the drain (zero: now).
func drainRelay(ctx context.Context, allocs func() int, traffic func() uint64, quietSince time.Time, idle, poll time.Duration) drainEnd {
	t := time.NewTicker(poll)
	defer t.Stop()
	last, since := traffic(), time.Now()
	if !quietSince.IsZero() && quietSince.Before(since) {
		since = quietSince
	}
	for {
		if allocs() == 0 {
			return drainEndDone
		}
		if n := traffic(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= idle {
			return drainEndIdle
		}
		select {
		case <-ctx.Done():
			return drainEndTimeout
		case <-t.C:
		}
	}
}

// stopSummary is what the closing log line reports.
type stopSummary struct {
	Sessions    int      // signaling sessions told to reconnect
	Allocations int      // TURN allocations when the drain began
	Ended       int      // of those, ended by their clients during the drain
	Closed      int      // closed by the stop (timeout or idle)
	End         drainEnd // why the drain ended
}

func (s stopSummary) attrs() []any {
	return []any{"sessions", s.Sessions, "allocations", s.Allocations,
		"allocations_ended", s.Ended, "allocations_closed", s.Closed}
}

// close stops everything now. It is idempotent.
func (a *app) close() error {
	a.closeOnce.Do(func() {
		a.ready.Store(false)
		close(a.stopWatch)
		var errs []error
		for _, s := range []*http.Server{a.httpSrv, a.httpsSrv, a.metricSrv} {
			if s != nil {
				errs = append(errs, s.Close())
			}
		}
		for _, ln := range []net.Listener{a.httpLn, a.httpsLn, a.metricLn} {
			// A listener whose server never started (start failed half way)
			// is closed here; closing twice only returns an error we drop.
			if ln != nil {
				ln.Close()
			}
		}
		errs = append(errs, a.hub.Close())
		if a.relay != nil {
			errs = append(errs, a.relay.Close())
		}
		a.serving.Wait()
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// banner is the one block printed at start: where it listens, what public
// IP it advertises and why, the URL to open, and warnings.
func (a *app) banner(w io.Writer) {
	st := a.started.Load()
	var b strings.Builder
	open := a.openURL()
	hint := "two devices, or two tabs, to try a call"
	if strings.HasPrefix(open, "http:") {
		hint = "two tabs on this computer to try a call"
	}
	fmt.Fprintf(&b, "switchboard %s\n", version())
	fmt.Fprintf(&b, "  open       %s  (%s)\n", open, hint)
	fmt.Fprintf(&b, "  http       %s\n", a.httpLn.Addr())
	if a.httpsLn != nil {
		fmt.Fprintf(&b, "  https      %s  (certificate: %s)\n", a.httpsLn.Addr(), a.certKind())
	}
	fmt.Fprintf(&b, "  stun/turn  udp %s, tcp %s\n", a.relay.UDPAddr(), a.relay.TCPAddr())
	for _, t := range a.relay.TLSAddrs() {
		fmt.Fprintf(&b, "  turns      tls %s\n", t)
	}
	fmt.Fprintf(&b, "  relay      udp ports %s\n", a.cfg.RelayPorts)
	fmt.Fprintf(&b, "  relay path %s\n", a.offloadHow)
	fmt.Fprintf(&b, "  public ip  %s (%s)\n", st.endpoints.Host, a.publicHow)
	switch {
	case a.metricLn != nil:
		fmt.Fprintf(&b, "  metrics    http://%s/metrics\n", a.metricLn.Addr())
	case a.cfg.MetricsToken != "":
		fmt.Fprintf(&b, "  metrics    /metrics on the http(s) listeners: this host, or with SWITCHBOARD_METRICS_TOKEN\n")
	default:
		fmt.Fprintf(&b, "  metrics    /metrics on the http(s) listeners, to this host only\n")
	}
	if a.cfg.AuthSecret != "" {
		how := "invite links (switchboard invite)"
		if a.cfg.Passcode != "" || a.cfg.PasscodeHash != "" {
			how += " or the passcode"
		}
		fmt.Fprintf(&b, "  sign-in    %s\n", how)
	}
	for _, warn := range startupWarnings(&a.cfg, st.endpoints.Host, a.relay.GeneratedSecret()) {
		fmt.Fprintf(&b, "  WARNING    %s\n", warn)
	}
	io.WriteString(w, b.String())
}

// Address ranges the start-up warnings name.
var (
	docRanges = []netip.Prefix{ // RFC 5737, RFC 3849: examples, .env.example's placeholder
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
	cgnatRange = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598: the carrier's NAT, not yours
)

// startupWarnings lists what will make calls fail for people elsewhere,
// in the banner's words: the common NAT mistakes, placeholders left from
// deploy/.env.example, plain HTTP, and missing secrets.
func startupWarnings(c *Config, public netip.Addr, generatedTURNSecret bool) []string {
	var out []string
	set := "set SWITCHBOARD_PUBLIC_IP to your router's public (WAN) address"
	switch ip := public.Unmap(); {
	case !ip.IsValid():
	case slices.ContainsFunc(docRanges, func(p netip.Prefix) bool { return p.Contains(ip) }):
		out = append(out, fmt.Sprintf("public ip %s is a documentation example (deploy/.env.example's placeholder?), nobody can reach it: %s", ip, set))
	case ip.IsLoopback():
		out = append(out, fmt.Sprintf("public ip %s is loopback: only this computer can use the relay; %s", ip, set))
	case cgnatRange.Contains(ip):
		out = append(out, fmt.Sprintf("public ip %s is in the carrier-grade NAT range (100.64.0.0/10): your provider's NAT sits in front of your router, so forwarded ports are not reachable from outside; ask for a public IPv4 or run the relay on a host that has one", ip))
	case ip.IsPrivate() || ip.IsLinkLocalUnicast():
		out = append(out, fmt.Sprintf("public ip %s is a private address: only devices on this network can use the relay; behind a router %s", ip, set))
	}
	if d := c.Domain; placeholderDomain(d) {
		out = append(out, fmt.Sprintf("domain %s is an example name (deploy/.env.example's placeholder?): set SWITCHBOARD_ACME_DOMAINS (or SWITCHBOARD_DOMAIN) to your own DNS name", d))
	}
	if u, err := url.Parse(c.PublicURL); err == nil && placeholderDomain(u.Hostname()) {
		out = append(out, fmt.Sprintf("SWITCHBOARD_PUBLIC_URL %s is an example name: put the address people really open", c.PublicURL))
	}
	if !c.tlsOn() && !loopbackOnly(c.HTTPAddr) {
		out = append(out, "no TLS: other devices can open the page over plain http but browsers give it no camera or microphone (only https or localhost); set SWITCHBOARD_ACME_DOMAINS or SWITCHBOARD_TLS_CERT")
	}
	if generatedTURNSecret {
		out = append(out, "TURN secret generated at start: it changes on restart and `switchboard credentials` cannot mint for it; set SWITCHBOARD_TURN_SECRET")
	}
	if c.AuthSecret == "" {
		out = append(out, "open mode: anyone who reaches this server can sign in and get TURN credentials; set SWITCHBOARD_AUTH_SECRET to require a sign-in (invite links, passcode)")
	}
	return out
}

// placeholderDomain reports names reserved for examples (RFC 2606, RFC 6761):
// example.com/.net/.org and below, and the .example, .test, .invalid and
// .localhost top-level domains.
func placeholderDomain(d string) bool {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	for _, s := range []string{"example.com", "example.net", "example.org", "example", "test", "invalid"} {
		if d == s || strings.HasSuffix(d, "."+s) {
			return true
		}
	}
	return false
}

// loopbackOnly reports whether a listen address accepts only this host.
func loopbackOnly(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (a *app) certKind() string {
	switch {
	case a.certs == nil:
		return "none"
	case a.certs.acme != nil:
		return "ACME for " + strings.Join(a.cfg.ACMEDomains, ",")
	default:
		return "files, reloaded on change"
	}
}

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, jsonLogOptions(opts)))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
