// Command switchboard serves WebRTC signaling, STUN and TURN, and a call app.
package main

import (
	"bufio"
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
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

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
	case "invite":
		return cmdInvite(args, environ, stdout, stderr)
	case "passcode-hash":
		return cmdPasscodeHash(args, os.Stdin, stdout, stderr)
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
  switchboard invite [flags]           print an invite link that signs people in (needs SWITCHBOARD_AUTH_SECRET)
  switchboard passcode-hash            read a passcode on stdin, print SWITCHBOARD_PASSCODE_HASH for it
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
		log.Info("stopping; a second Ctrl-C exits now", "reason", "signal", "drain_timeout", cfg.DrainTimeout)
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
		log.Error("shutdown", append([]any{"err", err}, a.summary.attrs()...)...)
		return exitFailure
	}
	log.Info("stopped", a.summary.attrs()...)
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

// defaultInviteTTL is how long a link works when --ttl is not given: a link
// sent to a family or team chat is opened over the following days, not
// within the hour.
const defaultInviteTTL = 7 * 24 * time.Hour

// cmdInvite prints an invite link: the URL people open with a signed invite
// in the fragment (#invite=...), which browsers never send to the server or in
// a Referer. With --revoke-all it revokes every link issued so far.
func cmdInvite(args []string, environ []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return exitUsage
	}
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	room := fs.String("room", "", "room the link signs people into (empty: any room, starting in the lobby)")
	name := fs.String("name", "", "display name suggested to the person (they may change it)")
	ttl := fs.Duration("ttl", defaultInviteTTL, "how long the link can be opened (people signed in stay signed in while they use the app)")
	uses := fs.Int("uses", 0, "how many people may sign in with the link (0: no limit); counted by the server in SWITCHBOARD_DATA_DIR")
	revoke := fs.Bool("revoke-all", false, "revoke every invite link issued so far instead of making one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "switchboard: invite takes flags only (got %q); see switchboard invite -h\n", fs.Args())
		return exitUsage
	}
	if cfg.AuthSecret == "" {
		fmt.Fprintln(stderr, "switchboard: SWITCHBOARD_AUTH_SECRET is not set: the server runs open and needs no invite; set the same value for the server and this command")
		return exitUsage
	}
	store := signaling.NewInviteStore(cfg.dataDir())
	if *revoke {
		cut, err := store.RevokeAll(time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "switchboard: revoke invite links in SWITCHBOARD_DATA_DIR (%s): %v\n", cfg.dataDir(), err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "Every invite link issued before %s is revoked; new links work.\n"+
			"People already signed in stay signed in; to sign everyone out, change SWITCHBOARD_AUTH_SECRET.\n",
			cut.Format(time.RFC3339))
		return exitOK
	}
	switch {
	case *ttl <= 0:
		fmt.Fprintf(stderr, "switchboard: --ttl %s: must be positive (e.g. 24h or 168h)\n", *ttl)
		return exitUsage
	case *uses < 0:
		fmt.Fprintf(stderr, "switchboard: --uses %d: want 0 (no limit) or more\n", *uses)
		return exitUsage
	}
	now := time.Now()
	// A link made in the second of a revocation would be revoked with it
	// (issue times are whole seconds): issue it at the cut-off.
	if cut, err := store.RevokedBefore(); err == nil && cut.After(now) {
		now = cut
	}
	tok, err := signaling.MintInvite([]byte(cfg.AuthSecret), signaling.Invite{Room: *room, Name: *name, TTL: *ttl, Uses: *uses}, now)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %s\n", strings.TrimPrefix(err.Error(), "signaling: mint invite: "))
		return exitUsage
	}
	if cfg.Domain == "" && cfg.TLSCert != "" && cfg.PublicURL == "" {
		// The link names the certificate's domain, as the server's banner does.
		cs, err := newCertSource(&cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintf(stderr, "switchboard: %v\n", err)
			return exitUsage
		}
		cfg.Domain = cs.domain
	}
	fmt.Fprintln(stdout, publicURL(&cfg, configuredPort(cfg.HTTPAddr), configuredPort(cfg.HTTPSAddr))+"#invite="+tok)
	what := "any room"
	if *room != "" {
		what = "room " + *room
	}
	limit := "no use limit"
	if *uses > 0 {
		limit = fmt.Sprintf("%d sign-in(s)", *uses)
	}
	fmt.Fprintf(stderr, "switchboard: invite link for %s, %s, valid until %s\n", what, limit, now.Add(*ttl).UTC().Format(time.RFC3339))
	return exitOK
}

// minPasscode is the shortest passcode accepted (validate says why).
const minPasscode = 8

// cmdPasscodeHash reads a passcode from stdin (not from the command line,
// where it would land in the shell history and the process list) and prints
// the SWITCHBOARD_PASSCODE_HASH line for it.
func cmdPasscodeHash(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if isHelp(args) {
		fmt.Fprintln(stdout, "usage: switchboard passcode-hash   (type the passcode and Enter, or pipe it in; prints SWITCHBOARD_PASSCODE_HASH=...)")
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintln(stderr, "switchboard: passcode-hash reads the passcode from stdin, not from arguments (they end up in the shell history)")
		return exitUsage
	}
	fmt.Fprintln(stderr, "Passcode (then Enter):")
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "switchboard: read passcode: %v\n", err)
		return exitFailure
	}
	p := strings.TrimRight(line, "\r\n")
	if utf8.RuneCountInString(p) < minPasscode {
		fmt.Fprintf(stderr, "switchboard: the passcode needs at least %d characters\n", minPasscode)
		return exitUsage
	}
	h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintf(stderr, "switchboard: %v\n", err)
		return exitUsage
	}
	// Single quotes: docker compose's env files and shells expand "$2a$..."
	// otherwise; systemd's EnvironmentFile strips them too.
	fmt.Fprintf(stdout, "SWITCHBOARD_PASSCODE_HASH='%s'\n", h)
	return exitOK
}
