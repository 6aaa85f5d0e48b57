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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/signaling"
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
	cluster *clusterNode // nil: single node (cluster.go)

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

	if a.cluster, err = startCluster(a.cfg, log, a.reg); err != nil {
		return nil, err
	}
	hub, err := signaling.New(signaling.Config{
		Router:         a.cluster.hubRouter(),
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
		a.cluster.close()
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
		OtherAddr:        a.cfg.STUNAltAddr,
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
	a.cluster.announceRelay(ep)
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
	a.handOver(ctx)

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

const (
	drainEndDone    drainEnd = iota // no allocation left
	drainEndIdle                    // allocations left, but none relayed anything for drainIdle
	drainEndTimeout                 // ctx ended (DRAIN_TIMEOUT, or the stop's own deadline)
)

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
		a.cluster.close()
		if a.relay != nil {
			errs = append(errs, a.relay.Close())
		}
		a.serving.Wait()
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// Address ranges the start-up warnings name.
var (
	docRanges = []netip.Prefix{ // RFC 5737, RFC 3849: examples, .env.example's placeholder
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
	cgnatRange = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598: the carrier's NAT, not yours
)

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, jsonLogOptions(opts)))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
