package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
	"golang.org/x/crypto/bcrypt"
)

// envPrefix is the prefix of every variable Config reads.
const envPrefix = "SWITCHBOARD_"

// Config is every setting of the switchboard binary. Each field is one
// environment variable (SWITCHBOARD_ + the env tag); the help tag is what
// `switchboard --help` and the README print, so it documents the default.
//
// Beware: caarlos0/env treats a variable that is set but empty like an unset
// one, so every default below also applies to VAR="". Fields whose default
// depends on other settings (HTTPS_ADDR, TURNS_ADDR, DOMAIN) carry no envDefault
// and are filled in by validate.
type Config struct {
	// Listeners.
	HTTPAddr     string   `env:"HTTP_ADDR" envDefault:":8080" help:"HTTP listen address: the call app, /ws, /api/ice-servers, /healthz, /readyz, /metrics. With TLS on it serves only ACME HTTP-01, /healthz, /readyz, /metrics (to this host, see METRICS_TOKEN) and a redirect to HTTPS."`
	HTTPSAddr    string   `env:"HTTPS_ADDR" help:"HTTPS listen address, used only when TLS is configured. Default :8443 when TLS is on (forward 443 to it), or :443 to serve directly (needs CAP_NET_BIND_SERVICE)."`
	TURNAddr     string   `env:"TURN_ADDR" envDefault:":3478" help:"STUN and TURN listen address, UDP and TCP."`
	TURNSAddrs   addrList `env:"TURNS_ADDR" help:"TURN-over-TLS listen addresses, comma-separated (e.g. :5349,:443). Default :5349 when TLS is on; \"off\" disables. A port may not be shared with HTTPS_ADDR."`
	MetricsAddr  string   `env:"METRICS_ADDR" help:"Separate listen address for /metrics (e.g. 127.0.0.1:9090), open to whoever reaches it. Empty: /metrics is served on the HTTP(S) listeners, to this host (loopback) only unless METRICS_TOKEN is set."`
	MetricsToken secret   `env:"METRICS_TOKEN" help:"Bearer token (Authorization: Bearer ...) that lets a scraper on another host read /metrics on the HTTP(S) listeners. Empty: only loopback clients may."`

	// TLS.
	TLSCert          string  `env:"TLS_CERT" help:"PEM certificate chain file for HTTPS, WSS and TURN over TLS; reloaded when the file changes. Needs TLS_KEY."`
	TLSKey           string  `env:"TLS_KEY" help:"PEM private key file for TLS_CERT; reloaded when the file changes."`
	ACMEDomains      strList `env:"ACME_DOMAINS" help:"Domains to get certificates for automatically over ACME (HTTP-01 on HTTP_ADDR, TLS-ALPN-01 on HTTPS_ADDR), comma-separated. Exclusive with TLS_CERT."`
	ACMEEmail        string  `env:"ACME_EMAIL" help:"Contact e-mail given to the ACME CA (expiry notices). Optional."`
	ACMECache        string  `env:"ACME_CACHE" envDefault:"acme-cache" help:"Directory caching ACME account key and certificates across restarts."`
	ACMEDirectoryURL string  `env:"ACME_DIRECTORY_URL" envDefault:"https://acme-v02.api.letsencrypt.org/directory" help:"ACME directory URL (Let's Encrypt production by default; use the staging URL while testing)."`
	ACMECAFile       string  `env:"ACME_CA_FILE" help:"PEM file of extra CAs trusted for the ACME directory's own HTTPS (private ACME servers such as step-ca or pebble)."`
	Domain           string  `env:"DOMAIN" help:"Public DNS name put in turns: URLs and shown as the URL to open. Default: the first ACME domain, else the first DNS name of TLS_CERT."`

	// TURN relay.
	TURNSecrets      secretList     `env:"TURN_SECRET" help:"TURN REST shared secrets, comma-separated: the first mints credentials, all verify (rotation). Empty: a random secret is generated at start (changes on restart)."`
	PublicIP         netip.Addr     `env:"PUBLIC_IP" help:"IPv4 address advertised to clients (relayed addresses, iceServers URLs): the router's outside address behind NAT. Empty: detected at start."`
	PublicIPv6       netip.Addr     `env:"PUBLIC_IPV6" help:"IPv6 address advertised for IPv6 relays. Empty: IPv6 relays only where the host has IPv6."`
	PublicIPSTUN     strList        `env:"PUBLIC_IP_STUN" help:"STUN servers (host:port, comma-separated) asked for the public IPv4 when PUBLIC_IP is unset. Empty: use the primary interface's address."`
	RelayPorts       portRange      `env:"RELAY_PORTS" envDefault:"49152-65535" help:"UDP port range of relayed sockets (MIN-MAX); forward exactly this range on the router."`
	RelayOffload     offloadMode    `env:"RELAY_OFFLOAD" envDefault:"auto" help:"Kernel fast path (eBPF, Linux) for relayed UDP: auto uses it when it loads and logs why not otherwise; off never; require refuses to start without it. Needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or root."`
	STUNAltAddr      netip.AddrPort `env:"STUN_ALT_ADDR" help:"Second STUN address (IP:port) for RFC 5780 NAT behaviour discovery (turnutils_stunclient -f, stunclient): IP and port both differ from TURN_ADDR's, which must then name a specific IP of the same family. Empty: off."`
	PeerAllow        prefixList     `env:"PEER_ALLOW" help:"CIDRs (or IPs) relaying is allowed to although the built-in deny list covers them, comma-separated (e.g. 192.168.1.0/24 for a LAN)."`
	PeerDeny         prefixList     `env:"PEER_DENY" help:"Extra CIDRs (or IPs) relaying is refused to, comma-separated. Checked before PEER_ALLOW."`
	CredentialTTL    time.Duration  `env:"CREDENTIAL_TTL" envDefault:"12h" help:"Lifetime of TURN credentials handed to sessions and by \"switchboard credentials\"; sessions get fresh ones before expiry."`
	MaxCredentialTTL time.Duration  `env:"MAX_CREDENTIAL_TTL" envDefault:"24h" help:"TURN credentials expiring further ahead than this are refused."`
	MaxAllocationAge time.Duration  `env:"MAX_ALLOCATION_AGE" envDefault:"4h" help:"An allocation may be refreshed past its credential's expiry up to this age (calls outlive credentials)."`
	UserQuota        int            `env:"USER_QUOTA" envDefault:"48" help:"Concurrent TURN allocations per user (per signaling session). 48 covers a full mesh room of 8 over udp, tcp and tls through an ICE restart."`
	TotalQuota       int            `env:"TOTAL_QUOTA" envDefault:"0" help:"Concurrent TURN allocations in total. 0: one per relay port (16384 with the default RELAY_PORTS)."`
	Realm            string         `env:"REALM" envDefault:"switchboard" help:"TURN realm (long-term credential realm); clients learn it from the server."`

	// Signaling hub.
	Lobby          bool          `env:"LOBBY" envDefault:"true" help:"true: sessions without a room share a lobby; false: only named rooms exist."`
	MaxRoomSize    int           `env:"MAX_ROOM_SIZE" envDefault:"8" help:"Members per room (calls are a full mesh, so keep it small)."`
	MaxSessions    int           `env:"MAX_SESSIONS" envDefault:"15000" help:"Concurrent signaling sessions; more get server-full."`
	PingInterval   time.Duration `env:"PING_INTERVAL" envDefault:"20s" help:"WebSocket ping interval; below common 30-60 s NAT and proxy idle timeouts."`
	ResumeGrace    time.Duration `env:"RESUME_GRACE" envDefault:"30s" help:"How long a dropped session stays reserved for a resume."`
	RingTimeout    time.Duration `env:"RING_TIMEOUT" envDefault:"30s" help:"How long a call rings unanswered before both sides are told there was no answer (like a phone; at most 5m)."`
	AllowedOrigins strList       `env:"ALLOWED_ORIGINS" help:"Origin host patterns allowed to open /ws, comma-separated (e.g. app.example.com,*.example.com). Empty: same origin as the request's Host."`
	AuthSecret     secret        `env:"AUTH_SECRET" help:"HS256 secret for the tokens hello and /api/ice-servers require: sign-ins from invite links (\"switchboard invite\") or the passcode, or JWTs from your own app (\"switchboard token\"). Changing it signs everyone out and revokes every link. Empty: open mode, anyone reaching the server may use it."`
	TrustedProxies prefixList    `env:"TRUSTED_PROXIES" help:"CIDRs of reverse proxies whose X-Forwarded-For is believed, comma-separated. Empty: the socket address is the client IP."`

	// Sign-in (needs AUTH_SECRET): invite links and an optional passcode.
	Passcode     secret `env:"PASSCODE" help:"Shared passcode that lets people without an invite link sign in (needs AUTH_SECRET; at least 8 characters). Empty: invite links only."`
	PasscodeHash secret `env:"PASSCODE_HASH" help:"bcrypt hash of the passcode, instead of PASSCODE itself (make one with \"switchboard passcode-hash\")."`
	DataDir      string `env:"DATA_DIR" help:"Directory for state kept across restarts: invite links' use counts and their revocation. Empty: the directory that holds ACME_CACHE (/var/lib/switchboard in the Docker image and the systemd unit)."`
	PublicURL    string `env:"PUBLIC_URL" help:"The URL people open, printed at start and in invite links (e.g. https://call.example.com/). Empty: https://DOMAIN/ with TLS (the router forwards 443 to HTTPS_ADDR), else http://localhost:PORT/."`

	// Cluster mode (cluster.go): several nodes as one service over NATS.
	ClusterMode       clusterMode `env:"CLUSTER" envDefault:"off" help:"off: one node, no NATS, no extra port. embedded: run a NATS server inside each node, clustered over CLUSTER_LISTEN and CLUSTER_ROUTES. external: connect to your NATS at NATS_URL."`
	NodeName          string      `env:"NODE_NAME" help:"This node's name in the cluster: letters, digits, - and _, unique per node. Default: the host name (dots become -)."`
	ClusterName       string      `env:"CLUSTER_NAME" envDefault:"switchboard" help:"Cluster name, the prefix of every NATS subject it uses (letters, digits, - and _): two clusters may share one NATS under different names."`
	ClusterListen     string      `env:"CLUSTER_LISTEN" envDefault:":6222" help:"embedded: the NATS route listener (host:port) the other nodes connect to; authenticated with CLUSTER_SECRET."`
	ClusterRoutes     strList     `env:"CLUSTER_ROUTES" help:"embedded: every node's route URL, comma-separated (nats://host:port), the same list on every node, this node's own included."`
	ClusterAdvertise  string      `env:"CLUSTER_ADVERTISE" help:"embedded: the route address (host:port) given to the other nodes when CLUSTER_LISTEN is not reachable as such (NAT, containers). Empty: CLUSTER_LISTEN."`
	ClusterTURNBackup bool        `env:"CLUSTER_TURN_BACKUP" help:"Cluster mode: iceServers list, after this node's relay, one other node's relay (chosen per session), so that a call can keep a relay while its node dies. One TURN_SECRET: the same credential works on every node."`
	ClusterSecret     secret      `env:"CLUSTER_SECRET" help:"Required in cluster mode, at least 16 characters, the same on every node: authenticates the NATS routes (embedded) and lets nodes detect a peer with a different TURN_SECRET or AUTH_SECRET (it is refused)."`
	NATSURL           secret      `env:"NATS_URL" help:"external: the NATS server URLs, comma-separated (nats://user:password@host:4222, tls://host:4222 for TLS)."`
	NATSCreds         string      `env:"NATS_CREDS" help:"external: NATS credentials file (.creds: a user JWT and its nkey seed, as nsc writes it) for servers in operator/JWT mode; read again at each reconnect."`
	NATSCA            string      `env:"NATS_CA" help:"external: PEM CA bundle that verifies the NATS servers' certificates; turns TLS on. Empty: the system's roots, when the server offers TLS."`
	NATSCert          string      `env:"NATS_CERT" help:"external: PEM client certificate for NATS servers that verify clients (mTLS); needs NATS_KEY. Read again at each reconnect."`
	NATSKey           string      `env:"NATS_KEY" help:"external: PEM private key of NATS_CERT."`

	// Operation.
	DrainTimeout time.Duration `env:"DRAIN_TIMEOUT" envDefault:"25s" help:"On SIGTERM, how long running TURN allocations may go on before exit; the wait ends sooner once nothing has been relayed for 10s (the browsers are gone). Docker's stop grace must be longer."`
	LogLevel     slog.Level    `env:"LOG_LEVEL" envDefault:"info" help:"Log level: debug, info, warn or error."`
	LogFormat    string        `env:"LOG_FORMAT" envDefault:"text" help:"Log format: text or json."`
}

// maxRingTimeout caps SWITCHBOARD_RING_TIMEOUT (see validate).
const maxRingTimeout = 5 * time.Minute

// dataDir is where state kept across restarts lives (DATA_DIR).
func (c *Config) dataDir() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return filepath.Dir(filepath.Clean(c.ACMECache))
}

// tlsOn reports whether HTTPS and TURN over TLS are configured.
func (c *Config) tlsOn() bool { return c.TLSCert != "" || len(c.ACMEDomains) > 0 }

// configError is a bad setting: start-up stops with one line naming it.
type configError struct {
	Var string // full variable name, SWITCHBOARD_...
	Msg string
}

func (e *configError) Error() string { return e.Var + ": " + e.Msg }

func badVar(name, format string, args ...any) error {
	return &configError{Var: envPrefix + name, Msg: oneLine(fmt.Sprintf(format, args...))}
}

// parseConfig reads cfg from environ (KEY=VALUE strings, like os.Environ)
// and validates it. Errors are *configError.
func parseConfig(environ []string) (Config, error) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return parseConfigMap(m)
}

func parseConfigMap(m map[string]string) (Config, error) {
	var cfg Config
	err := env.ParseWithOptions(&cfg, env.Options{Environment: m, Prefix: envPrefix})
	if err != nil {
		return Config{}, explainEnvError(err, m)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// explainEnvError turns env's error (which names the Go field) into a
// configError naming the variable, keeping only the first problem so the
// operator gets one line. m is the environment, for the offending value.
func explainEnvError(err error, m map[string]string) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		if f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name); ok {
			name := envName(f)
			return &configError{Var: envPrefix + name, Msg: oneLine(plainParseError(f.Type, m[envPrefix+name], pe.Err))}
		}
	}
	return &configError{Var: envPrefix + "*", Msg: oneLine(err.Error())}
}

// plainParseError says what was expected in words. The parsers of the
// standard types (strconv, time, slog, netip) speak Go ("strconv.ParseInt:
// parsing \"abc\": invalid syntax"); the list types of this file already speak
// plainly and keep their message.
func plainParseError(t reflect.Type, val string, err error) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return fmt.Sprintf("%q is not a duration: write a number with a unit, e.g. 30s, 5m or 12h", val)
	case reflect.TypeFor[slog.Level]():
		return fmt.Sprintf("%q is not a log level: use debug, info, warn or error", val)
	case reflect.TypeFor[netip.Addr]():
		return fmt.Sprintf("%q is not an IP address (e.g. 203.0.113.7 or 2001:db8::7)", val)
	case reflect.TypeFor[netip.AddrPort]():
		return fmt.Sprintf("%q is not an IP address with a port (e.g. 203.0.113.8:3479 or [2001:db8::8]:3479)", val)
	}
	switch t.Kind() {
	case reflect.Bool:
		return fmt.Sprintf("%q is not true or false", val)
	case reflect.Int, reflect.Int64, reflect.Int32:
		return fmt.Sprintf("%q is not a whole number", val)
	}
	return err.Error()
}

func envName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return name
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// validate checks cross-field rules and fills defaults that depend on other
// fields. It does no I/O.
func (c *Config) validate() error {
	for _, a := range []struct{ name, addr string }{
		{"HTTP_ADDR", c.HTTPAddr}, {"TURN_ADDR", c.TURNAddr},
		{"HTTPS_ADDR", c.HTTPSAddr}, {"METRICS_ADDR", c.MetricsAddr},
	} {
		if a.addr == "" && (a.name == "HTTPS_ADDR" || a.name == "METRICS_ADDR") {
			continue
		}
		if err := checkAddr(a.addr); err != nil {
			return badVar(a.name, "%v", err)
		}
	}
	for _, a := range c.TURNSAddrs.addrs {
		if err := checkAddr(a); err != nil {
			return badVar("TURNS_ADDR", "%v", err)
		}
	}

	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return badVar("TLS_KEY", "must be set when SWITCHBOARD_TLS_CERT is")
	case c.TLSKey != "" && c.TLSCert == "":
		return badVar("TLS_CERT", "must be set when SWITCHBOARD_TLS_KEY is")
	case c.TLSCert != "" && len(c.ACMEDomains) > 0:
		return badVar("ACME_DOMAINS", "cannot be used together with SWITCHBOARD_TLS_CERT: pick one")
	}
	for _, d := range c.ACMEDomains {
		if !validDomain(d) {
			return badVar("ACME_DOMAINS", "%q is not a DNS name", d)
		}
	}
	if c.Domain != "" && !validDomain(c.Domain) {
		return badVar("DOMAIN", "%q is not a DNS name", c.Domain)
	}
	if c.Domain == "" && len(c.ACMEDomains) > 0 {
		c.Domain = c.ACMEDomains[0]
	}
	if c.tlsOn() {
		if c.HTTPSAddr == "" {
			c.HTTPSAddr = ":8443"
		}
		if !c.TURNSAddrs.off && len(c.TURNSAddrs.addrs) == 0 {
			c.TURNSAddrs.addrs = []string{":5349"}
		}
	} else {
		if c.HTTPSAddr != "" {
			return badVar("HTTPS_ADDR", "needs TLS: set SWITCHBOARD_TLS_CERT/TLS_KEY or SWITCHBOARD_ACME_DOMAINS")
		}
		if len(c.TURNSAddrs.addrs) > 0 {
			return badVar("TURNS_ADDR", "needs TLS: set SWITCHBOARD_TLS_CERT/TLS_KEY or SWITCHBOARD_ACME_DOMAINS")
		}
	}
	if c.HTTPSAddr != "" {
		_, hp, _ := net.SplitHostPort(c.HTTPSAddr)
		for _, a := range c.TURNSAddrs.addrs {
			_, tp, _ := net.SplitHostPort(a)
			if tp == hp && tp != "0" && sameHost(a, c.HTTPSAddr) {
				return badVar("TURNS_ADDR", "%s collides with SWITCHBOARD_HTTPS_ADDR %s: give HTTPS another port or IP", a, c.HTTPSAddr)
			}
		}
	}

	for _, s := range c.TURNSecrets {
		if len(s) < 16 {
			return badVar("TURN_SECRET", "each secret needs at least 16 characters (use e.g. `openssl rand -hex 32`)")
		}
	}
	if c.AuthSecret != "" && len(c.AuthSecret) < 32 {
		return badVar("AUTH_SECRET", "needs at least 32 characters for HS256 (use e.g. `openssl rand -hex 32`)")
	}
	switch {
	case c.Passcode != "" && c.PasscodeHash != "":
		return badVar("PASSCODE_HASH", "cannot be used together with SWITCHBOARD_PASSCODE: pick one")
	case (c.Passcode != "" || c.PasscodeHash != "") && c.AuthSecret == "":
		return badVar("AUTH_SECRET", "must be set for a passcode: without it the server is open and nobody signs in")
	case c.Passcode != "" && utf8.RuneCountInString(string(c.Passcode)) < minPasscode:
		// Failed sign-ins are rate-limited per address, but an attacker with
		// many addresses tries a 4-digit code in an afternoon.
		return badVar("PASSCODE", "needs at least %d characters (a short one is guessed from many addresses)", minPasscode)
	case c.PasscodeHash != "":
		if _, err := bcrypt.Cost([]byte(c.PasscodeHash)); err != nil {
			return badVar("PASSCODE_HASH", "is not a bcrypt hash (it starts with $2a$ or $2b$); make one with `switchboard passcode-hash`")
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			return badVar("PUBLIC_URL", "%q: want the address people open, like https://call.example.com/ (no path, query or fragment)", c.PublicURL)
		}
		if u.Path == "" {
			c.PublicURL += "/"
		}
	}
	if c.PublicIP.IsValid() && !c.PublicIP.Unmap().Is4() {
		return badVar("PUBLIC_IP", "%s is not an IPv4 address (use SWITCHBOARD_PUBLIC_IPV6 for IPv6)", c.PublicIP)
	}
	c.PublicIP = c.PublicIP.Unmap()
	if c.PublicIP.IsValid() && (c.PublicIP.IsUnspecified() || c.PublicIP.IsMulticast()) {
		return badVar("PUBLIC_IP", "%s cannot be advertised", c.PublicIP)
	}
	if c.PublicIPv6.IsValid() && (!c.PublicIPv6.Is6() || c.PublicIPv6.Is4In6() || c.PublicIPv6.IsUnspecified() || c.PublicIPv6.IsMulticast()) {
		return badVar("PUBLIC_IPV6", "%s is not a usable IPv6 address", c.PublicIPv6)
	}
	if c.STUNAltAddr.IsValid() {
		host, port, _ := net.SplitHostPort(c.TURNAddr)
		ip, err := netip.ParseAddr(host)
		alt := netip.AddrPortFrom(c.STUNAltAddr.Addr().Unmap(), c.STUNAltAddr.Port())
		switch {
		case err != nil || ip.IsUnspecified():
			return badVar("STUN_ALT_ADDR", "needs SWITCHBOARD_TURN_ADDR with a specific IP (e.g. 203.0.113.7:3478), not %q", c.TURNAddr)
		case ip.Unmap().Is4() != alt.Addr().Is4():
			return badVar("STUN_ALT_ADDR", "%s is not of SWITCHBOARD_TURN_ADDR's address family", alt)
		case ip.Unmap() == alt.Addr() || port == strconv.Itoa(int(alt.Port())) || alt.Port() == 0:
			return badVar("STUN_ALT_ADDR", "%s must differ from SWITCHBOARD_TURN_ADDR in both IP and port", alt)
		}
	}
	for _, s := range c.PublicIPSTUN {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return badVar("PUBLIC_IP_STUN", "%q is not host:port", s)
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CREDENTIAL_TTL", c.CredentialTTL}, {"MAX_CREDENTIAL_TTL", c.MaxCredentialTTL},
		{"MAX_ALLOCATION_AGE", c.MaxAllocationAge}, {"PING_INTERVAL", c.PingInterval},
		{"RESUME_GRACE", c.ResumeGrace}, {"RING_TIMEOUT", c.RingTimeout},
	} {
		if d.v <= 0 {
			return badVar(d.name, "must be positive, got %s", d.v)
		}
	}
	if c.DrainTimeout < 0 {
		return badVar("DRAIN_TIMEOUT", "must not be negative, got %s", c.DrainTimeout)
	}
	// Sessions get fresh credentials a while before expiry; a TTL under a
	// minute would have the hub pushing credentials constantly.
	if c.CredentialTTL < time.Minute {
		return badVar("CREDENTIAL_TTL", "must be at least 1m, got %s", c.CredentialTTL)
	}
	if c.CredentialTTL > c.MaxCredentialTTL {
		return badVar("CREDENTIAL_TTL", "%s exceeds SWITCHBOARD_MAX_CREDENTIAL_TTL %s", c.CredentialTTL, c.MaxCredentialTTL)
	}
	if c.PingInterval < time.Second {
		return badVar("PING_INTERVAL", "must be at least 1s, got %s", c.PingInterval)
	}
	// A call that rings for minutes is a forgotten tab, not a callee about to
	// answer, and while it rings the hub reports both peers busy to anyone
	// else; the cap also catches typos like 30m for 30s.
	if c.RingTimeout > maxRingTimeout {
		return badVar("RING_TIMEOUT", "must be at most %s, got %s", maxRingTimeout, c.RingTimeout)
	}
	for _, n := range []struct {
		name string
		v    int
		min  int
	}{
		{"USER_QUOTA", c.UserQuota, 0}, {"TOTAL_QUOTA", c.TotalQuota, 0},
		{"MAX_ROOM_SIZE", c.MaxRoomSize, 2}, {"MAX_SESSIONS", c.MaxSessions, 1},
	} {
		if n.v < n.min {
			return badVar(n.name, "must be at least %d, got %d", n.min, n.v)
		}
	}
	if c.UserQuota > 0 && c.TotalQuota > 0 && c.UserQuota > c.TotalQuota {
		return badVar("USER_QUOTA", "%d exceeds SWITCHBOARD_TOTAL_QUOTA %d", c.UserQuota, c.TotalQuota)
	}
	for _, o := range c.AllowedOrigins {
		if strings.Contains(o, "://") || strings.ContainsAny(o, "/ ") {
			return badVar("ALLOWED_ORIGINS", "%q: give host patterns like app.example.com or *.example.com, not URLs", o)
		}
	}
	if c.Realm == "" || strings.ContainsAny(c.Realm, "\"\\") {
		return badVar("REALM", "%q is not a usable realm", c.Realm)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return badVar("LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	return c.validateNATSAuth()
}

// checkAddr accepts host:port with a numeric port (0 picks a free one).
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", a)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return fmt.Errorf("%q: port %q is not a number 0-65535", a, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: bad host", a)
	}
	return nil
}

func sameHost(a, b string) bool {
	ha, _, _ := net.SplitHostPort(a)
	hb, _, _ := net.SplitHostPort(b)
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasSuffix(d, ".") {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// secret is a configured secret; it never prints.
type secret string

func (secret) String() string               { return "REDACTED" }
func (secret) GoString() string             { return "REDACTED" }
func (secret) LogValue() slog.Value         { return slog.StringValue("REDACTED") }
func (secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// secretList is a comma-separated list of secrets.
type secretList []secret

func (l *secretList) UnmarshalText(b []byte) error {
	*l = nil
	for _, s := range splitList(string(b)) {
		*l = append(*l, secret(s))
	}
	return nil
}

func (l secretList) String() string               { return "REDACTED" }
func (l secretList) GoString() string             { return "REDACTED" }
func (l secretList) LogValue() slog.Value         { return slog.StringValue("REDACTED") }
func (l secretList) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

func (l secretList) strings() []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = string(s)
	}
	return out
}

// strList is a comma-separated list; blanks around items are trimmed and
// empty items dropped.
type strList []string

func (l *strList) UnmarshalText(b []byte) error {
	*l = splitList(string(b))
	return nil
}

// addrList is a comma-separated list of listen addresses, or "off".
type addrList struct {
	addrs []string
	off   bool
}

func (l *addrList) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	*l = addrList{}
	if strings.EqualFold(s, "off") {
		l.off = true
		return nil
	}
	l.addrs = splitList(s)
	return nil
}

// prefixList is a comma-separated list of CIDRs; a bare IP means a /32 or /128.
type prefixList []netip.Prefix

func (l *prefixList) UnmarshalText(b []byte) error {
	*l = nil
	for _, s := range splitList(string(b)) {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)", s)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR or IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Zone() != "" {
			return fmt.Errorf("%q: zones are not allowed", s)
		}
		*l = append(*l, p.Masked())
	}
	return nil
}

// portRange is MIN-MAX.
type portRange struct{ min, max uint16 }

func (r *portRange) UnmarshalText(b []byte) error {
	lo, hi, ok := strings.Cut(strings.TrimSpace(string(b)), "-")
	if !ok {
		return fmt.Errorf("%q: want MIN-MAX, e.g. 49152-65535", b)
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	z, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	switch {
	case err1 != nil || err2 != nil:
		return fmt.Errorf("%q: ports must be numbers 1-65535", b)
	case a == 0 || a > z:
		return fmt.Errorf("%q: want 1 <= MIN <= MAX <= 65535", b)
	case a < 1024:
		return fmt.Errorf("%q: relay ports below 1024 would need privileges and collide with services", b)
	}
	*r = portRange{uint16(a), uint16(z)}
	return nil
}

func (r portRange) String() string { return fmt.Sprintf("%d-%d", r.min, r.max) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// configVar describes one variable for --help and the README table.
type configVar struct {
	Name, Default, Help string
}

func configVars() []configVar {
	var out []configVar
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := envName(f)
		if name == "" || name == "-" {
			continue
		}
		out = append(out, configVar{Name: envPrefix + name, Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	}
	return out
}

// unknownVars lists SWITCHBOARD_ variables in m that Config does not read
// (typos like SWITCHBOARD_PUBLICIP would otherwise be silently ignored).
func unknownVars(m map[string]string) []string {
	known := map[string]bool{
		// Read by the test suite and .ci/run, not by the server.
		"SWITCHBOARD_E2E": true,
	}
	for _, v := range configVars() {
		known[v.Name] = true
	}
	var out []string
	for k := range m {
		if strings.HasPrefix(k, envPrefix) && !known[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
