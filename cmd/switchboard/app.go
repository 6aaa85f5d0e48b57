package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
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
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	hub   *signaling.Hub
	certs *certSource // nil: TLS off

	// Set by start before any listener serves; read-only afterwards.
	relay     *relay.Server
	publicHow string
	httpSrv   *http.Server
	httpsSrv  *http.Server // nil: TLS off
	metricSrv *http.Server // nil: /metrics is on the main listeners
	httpLn    net.Listener
	httpsLn   net.Listener
	metricLn  net.Listener

	started atomic.Pointer[startedState] // non-nil once the relay is listening
	ready   atomic.Bool                  // /readyz: listeners up and not draining

	serving sync.WaitGroup // one goroutine per http.Server.Serve
	failed  chan error     // unexpected Serve errors; one slot per server, so a send never blocks

	closeOnce sync.Once
	closeErr  error
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
		cfg:    cfg,
		log:    log,
		reg:    prometheus.NewRegistry(),
		failed: make(chan error, 3),
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
	rs, err := relay.New(rcfg)
	if err != nil {
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
	mux.Handle("/", web.Handler())
	return mux
}

// plainHandler is the HTTP listener when TLS is on: ACME HTTP-01, health
// checks for Docker and load balancers, and a redirect to HTTPS for the rest.
func (a *app) plainHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	a.healthRoutes(mux, metrics)
	mux.HandleFunc("/", a.redirectHTTPS)
	if a.certs.acme == nil {
		return mux
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
		mux.Handle("GET /metrics", metrics)
	}
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
	if a.httpsLn != nil {
		host := a.cfg.Domain
		if host == "" {
			host = "localhost"
		}
		if p := portOf(a.httpsLn.Addr()); p != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(p))
		}
		return "https://" + host + "/"
	}
	host, _, _ := net.SplitHostPort(a.cfg.HTTPAddr)
	ip, err := netip.ParseAddr(host)
	if host == "" || (err == nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		// localhost is a secure context, so cameras work over plain HTTP.
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(portOf(a.httpLn.Addr()))) + "/"
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
	err := a.hub.Shutdown(ctx)

	if a.relay != nil {
		if n := a.relay.Allocations(); n > 0 {
			a.log.Info("draining turn allocations", "allocations", n, "timeout", a.cfg.DrainTimeout)
		}
		dctx, cancel := context.WithDeadline(ctx, drainUntil)
		derr := a.relay.Shutdown(dctx)
		cancel()
		if derr != nil && ctx.Err() == nil && errors.Is(derr, context.DeadlineExceeded) {
			// Running out of drain time is the normal end of a long call,
			// not a failed stop.
			a.log.Info("drain timeout; closing remaining allocations", "allocations", a.relay.Allocations())
			derr = nil
		}
		err = errors.Join(err, derr)
	}

	var g errgroup.Group
	for _, s := range []*http.Server{a.httpSrv, a.httpsSrv, a.metricSrv} {
		if s != nil {
			g.Go(func() error { return s.Shutdown(ctx) })
		}
	}
	err = errors.Join(err, g.Wait())
	return errors.Join(err, a.close())
}

// close stops everything now. It is idempotent.
func (a *app) close() error {
	a.closeOnce.Do(func() {
		a.ready.Store(false)
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
// IP it advertises and why, and the URL to open.
func (a *app) banner(w io.Writer) {
	st := a.started.Load()
	var b strings.Builder
	fmt.Fprintf(&b, "switchboard %s\n", version())
	fmt.Fprintf(&b, "  open       %s  (two tabs or two devices to try a call)\n", a.openURL())
	fmt.Fprintf(&b, "  http       %s\n", a.httpLn.Addr())
	if a.httpsLn != nil {
		fmt.Fprintf(&b, "  https      %s  (certificate: %s)\n", a.httpsLn.Addr(), a.certKind())
	}
	fmt.Fprintf(&b, "  stun/turn  udp %s, tcp %s\n", a.relay.UDPAddr(), a.relay.TCPAddr())
	for _, t := range a.relay.TLSAddrs() {
		fmt.Fprintf(&b, "  turns      tls %s\n", t)
	}
	fmt.Fprintf(&b, "  relay      udp ports %s\n", a.cfg.RelayPorts)
	fmt.Fprintf(&b, "  public ip  %s (%s)\n", st.endpoints.Host, a.publicHow)
	if a.metricLn != nil {
		fmt.Fprintf(&b, "  metrics    http://%s/metrics\n", a.metricLn.Addr())
	} else {
		fmt.Fprintf(&b, "  metrics    /metrics on the http listener\n")
	}
	if a.relay.GeneratedSecret() {
		fmt.Fprintf(&b, "  WARNING    TURN secret generated at start: it changes on restart and `switchboard credentials` cannot mint for it; set SWITCHBOARD_TURN_SECRET\n")
	}
	if a.cfg.AuthSecret == "" {
		fmt.Fprintf(&b, "  WARNING    open mode: anyone who reaches this server can sign in and get TURN credentials; set SWITCHBOARD_AUTH_SECRET to require tokens\n")
	}
	io.WriteString(w, b.String())
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
