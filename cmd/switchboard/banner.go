package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

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
	if a.cluster != nil {
		fmt.Fprintf(&b, "  cluster    node %s of %q, %s\n", a.cfg.NodeName, a.cfg.ClusterName, a.cluster.how)
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
