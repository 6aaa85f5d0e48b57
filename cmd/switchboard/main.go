// Command switchboard serves WebRTC signaling, STUN and TURN, and a call app.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/signaling"
)

// buildVersion is set with -ldflags "-X main.buildVersion=v1.2.3"; without
// it the module version or VCS revision from the build info is used.
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	// Two slots: the first signal and the impatient second ^C; signal.Notify
	// drops rather than blocks, and more than two carry no new meaning.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go handleSignals(sigs, cancel, os.Exit, os.Stderr)
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// handleSignals turns the first SIGINT or SIGTERM into a graceful stop
// (cancel). A second SIGINT (an impatient ^C) exits at once with 130; a
// repeated SIGTERM lets the drain go on. It returns when sigs is closed.
func handleSignals(sigs <-chan os.Signal, cancel func(), exit func(int), stderr io.Writer) {
	first := true
	for s := range sigs {
		if first {
			first = false
			cancel()
			continue
		}
		if s == syscall.SIGINT {
			fmt.Fprintln(stderr, "switchboard: second interrupt, exiting now")
			exit(130)
			return
		}
	}
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad configuration or usage
)

// run is the whole program: tests and the NAT test's re-executed binary
// call it directly. ctx cancel is a graceful stop.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, environ, stdout, stderr)
	case "credentials":
		return cmdCredentials(ctx, args, environ, stdout, stderr)
	case "token":
		return cmdToken(args, environ, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, args, environ, stdout, stderr)
	case "bench":
		return cmdBench(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "switchboard %s\n", version())
		return exitOK
	case "help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

const usageHead = `Switchboard: WebRTC signaling hub, STUN/TURN relay and call app in one binary.

Usage:
  switchboard [serve]                  run the server (default)
  switchboard credentials [flags]      print TURN credentials and an iceServers config
  switchboard token [flags]            print a signaling JWT (needs SWITCHBOARD_AUTH_SECRET)
  switchboard healthcheck              exit 0 if the server on SWITCHBOARD_HTTP_ADDR is alive
  switchboard bench turn|signaling ... load tools (see "switchboard bench turn -h")
  switchboard version                  print the version
  switchboard help                     this text

Every setting is an environment variable. An empty value means the default.
A bad value stops start-up with one line naming the variable (exit status 2).
Go's GOGC defaults to 50 here, not 100 (idle sessions cost less memory), with a
heap goal of at least 16 MiB (fewer GC cycles while relaying); GOGC set wins.

`

// usage prints the commands and every variable with its default and meaning.
func usage(w io.Writer) {
	io.WriteString(w, usageHead)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range configVars() {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Help)
	}
	tw.Flush()
}

func isHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// loadConfig parses the environment, printing the one-line error.
func loadConfig(environ []string, stderr io.Writer) (Config, bool) {
	cfg, err := parseConfig(environ)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return Config{}, false
	}
	return cfg, true
}

func cmdServe(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	if isHelp(args) {
		usage(stdout)
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "switchboard: serve takes no arguments (got %q); settings are environment variables, see switchboard --help\n", args)
		return exitUsage
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	m := make(map[string]string)
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	for _, k := range unknownVars(m) {
		log.Warn("unknown variable ignored; see switchboard --help", "var", k)
	}
	defer applyGCDefault(m)()

	a, err := newApp(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		var ce *configError
		if errors.As(err, &ce) {
			return exitUsage
		}
		return exitFailure
	}
	if err := a.start(ctx); err != nil {
		log.Error("start failed", "err", err)
		a.close()
		return exitFailure
	}
	a.banner(stdout)

	code := exitOK
	select {
	case <-ctx.Done():
		log.Info("stopping", "reason", "signal", "drain_timeout", cfg.DrainTimeout)
	case err := <-a.failed:
		log.Error("server failed", "err", err)
		code = exitFailure
	}
	// A fresh context: ctx is already cancelled. The stop may take the drain
	// time plus a margin for the hub's close handshakes (coder/websocket's
	// Close waits up to 5 s + 5 s) and HTTP shutdown.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+15*time.Second)
	defer cancel()
	if err := a.shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return exitFailure
	}
	log.Info("stopped")
	return code
}

// cmdCredentials prints REST credentials minted with the configured
// TURN_SECRET and the iceServers list for the configured addresses.
func cmdCredentials(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitUsage
	}
	fs := flag.NewFlagSet("credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "switchboard", "user part of the REST username (counted for the per-user quota)")
	ttl := fs.Duration("ttl", cfg.CredentialTTL, "lifetime of the credentials (at most SWITCHBOARD_MAX_CREDENTIAL_TTL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch {
	case len(cfg.TURNSecrets) == 0:
		fmt.Fprintln(stderr, "switchboard: SWITCHBOARD_TURN_SECRET is not set: a server without it generates a secret nobody else knows; set the same value for the server and this command")
		return exitUsage
	case *ttl <= 0 || *ttl > cfg.MaxCredentialTTL:
		fmt.Fprintf(stderr, "switchboard: --ttl %s: want between 0 and SWITCHBOARD_MAX_CREDENTIAL_TTL (%s)\n", *ttl, cfg.MaxCredentialTTL)
		return exitUsage
	case *user == "" || strings.ContainsAny(*user, ": \t"):
		fmt.Fprintf(stderr, "switchboard: --user %q: want a non-empty name without ':' or spaces\n", *user)
		return exitUsage
	}

	ip, how := cfg.PublicIP, "SWITCHBOARD_PUBLIC_IP"
	if !ip.IsValid() {
		dctx, cancel := context.WithTimeout(ctx, publicIPTimeout)
		defer cancel()
		var err error
		ip, how, err = relay.DetectPublicIP(dctx, cfg.PublicIPSTUN)
		if err != nil {
			fmt.Fprintf(stderr, "switchboard: detect public IP: %v (set SWITCHBOARD_PUBLIC_IP)\n", err)
			return exitFailure
		}
		ip = ip.Unmap()
	}
	if cfg.Domain == "" && cfg.TLSCert != "" {
		// turns: URLs name the certificate's domain, as the server does.
		cs, err := newCertSource(&cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintf(stderr, "switchboard: %v\n", err)
			return exitUsage
		}
		cfg.Domain = cs.domain
	}
	ep := iceEndpoints{
		Host:      ip,
		Host6:     cfg.PublicIPv6,
		UDPPort:   configuredPort(cfg.TURNAddr),
		TCPPort:   configuredPort(cfg.TURNAddr),
		TLSDomain: cfg.Domain,
	}
	if cfg.tlsOn() {
		for _, a := range cfg.TURNSAddrs.addrs {
			ep.TLSPorts = append(ep.TLSPorts, configuredPort(a))
		}
	}
	c := relay.NewCredential(string(cfg.TURNSecrets[0]), *user, time.Now().Add(*ttl).Truncate(time.Second))
	out, err := json.MarshalIndent(struct {
		ICEServers []signaling.ICEServer `json:"iceServers"`
	}{ep.servers(c)}, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "username: %s\npassword: %s\nexpires:  %s\nhost:     %s (%s)\n\n%s\n",
		c.Username, c.Password, c.Expires.UTC().Format(time.RFC3339), ip, how, out)
	return exitOK
}

// cmdToken prints an HS256 JWT for hello and /api/ice-servers.
func cmdToken(args []string, environ []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitUsage
	}
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "subject: who the token is for (required)")
	room := fs.String("room", "", "room the token is limited to (empty: any room)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch {
	case cfg.AuthSecret == "":
		fmt.Fprintln(stderr, "switchboard: SWITCHBOARD_AUTH_SECRET is not set: the server runs open and takes no tokens")
		return exitUsage
	case *sub == "":
		fmt.Fprintln(stderr, "switchboard: token needs --sub")
		return exitUsage
	case *ttl <= 0:
		fmt.Fprintf(stderr, "switchboard: --ttl %s: must be positive\n", *ttl)
		return exitUsage
	}
	tok, err := signaling.MintToken([]byte(cfg.AuthSecret), *sub, *room, *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

// healthcheckTimeout: Docker's HEALTHCHECK default timeout is 30 s; a
// healthy server answers in milliseconds, so 5 s only absorbs a busy host.
const healthcheckTimeout = 5 * time.Second

// cmdHealthcheck asks /healthz on SWITCHBOARD_HTTP_ADDR (always plain HTTP,
// even with TLS on), for Docker's HEALTHCHECK, which has no curl in a
// distroless image.
func cmdHealthcheck(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	if isHelp(args) {
		fmt.Fprintln(stdout, "usage: switchboard healthcheck  (GET /healthz on SWITCHBOARD_HTTP_ADDR; exit 0 if alive)")
		return exitOK
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitUsage
	}
	host, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		// Go's wildcard listeners ("", "::", "0.0.0.0") are dual-stack and
		// accept IPv4 loopback; ::1 may not exist in a container.
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: healthcheck: %v\n", err)
		return exitFailure
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: healthcheck: %v\n", err)
		return exitFailure
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "switchboard: healthcheck: %s: %s\n", url, resp.Status)
		return exitFailure
	}
	fmt.Fprintf(stdout, "ok %s\n", url)
	return exitOK
}

const benchUsage = `usage: switchboard bench turn [flags]        relayed packets/s and CPU per packet against a TURN server
       switchboard bench signaling [flags]   sessions, RSS per session, messages/s, relay latency
`

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[:1]) {
		io.WriteString(stderr, benchUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch args[0] {
	case "turn":
		err = benchTURN(ctx, args[1:], stdout)
	case "signaling":
		err = benchSignaling(ctx, args[1:], stdout)
	default:
		fmt.Fprintf(stderr, "switchboard: unknown bench %q\n", args[0])
		io.WriteString(stderr, benchUsage)
		return exitUsage
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "switchboard: bench %s: %v\n", args[0], err)
		return exitFailure
	}
	return exitOK
}
