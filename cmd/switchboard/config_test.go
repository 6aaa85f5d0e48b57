package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfigMap(map[string]string{})
	if err != nil {
		t.Fatalf("parseConfigMap(empty) = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"HTTPAddr", cfg.HTTPAddr, ":8080"},
		{"HTTPSAddr", cfg.HTTPSAddr, ""},
		{"TURNAddr", cfg.TURNAddr, ":3478"},
		{"TURNSAddrs", len(cfg.TURNSAddrs.addrs), 0},
		{"RelayPorts", cfg.RelayPorts, portRange{49152, 65535}},
		{"TURNSecrets", len(cfg.TURNSecrets), 0},
		{"PublicIP", cfg.PublicIP, netip.Addr{}},
		{"CredentialTTL", cfg.CredentialTTL, 12 * time.Hour},
		{"MaxCredentialTTL", cfg.MaxCredentialTTL, 24 * time.Hour},
		{"MaxAllocationAge", cfg.MaxAllocationAge, 4 * time.Hour},
		{"UserQuota", cfg.UserQuota, 48},
		{"Lobby", cfg.Lobby, true},
		{"MaxRoomSize", cfg.MaxRoomSize, 8},
		{"MaxSessions", cfg.MaxSessions, 15000},
		{"PingInterval", cfg.PingInterval, 20 * time.Second},
		{"ResumeGrace", cfg.ResumeGrace, 30 * time.Second},
		{"RingTimeout", cfg.RingTimeout, 30 * time.Second},
		{"DrainTimeout", cfg.DrainTimeout, 25 * time.Second},
		{"LogLevel", cfg.LogLevel, slog.LevelInfo},
		{"LogFormat", cfg.LogFormat, "text"},
		{"tlsOn", cfg.tlsOn(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(Config) error
	}{
		{
			name: "tls files turn on https and turns with defaults",
			env:  map[string]string{"SWITCHBOARD_TLS_CERT": "c.pem", "SWITCHBOARD_TLS_KEY": "k.pem"},
			check: func(c Config) error {
				if c.HTTPSAddr != ":8443" || fmt.Sprint(c.TURNSAddrs.addrs) != "[:5349]" {
					return fmt.Errorf("HTTPSAddr %q TURNSAddrs %v, want :8443 [:5349]", c.HTTPSAddr, c.TURNSAddrs.addrs)
				}
				return nil
			},
		},
		{
			name: "turns off",
			env:  map[string]string{"SWITCHBOARD_ACME_DOMAINS": "a.example.com", "SWITCHBOARD_TURNS_ADDR": "off"},
			check: func(c Config) error {
				if len(c.TURNSAddrs.addrs) != 0 || c.Domain != "a.example.com" {
					return fmt.Errorf("TURNSAddrs %v Domain %q, want none, a.example.com", c.TURNSAddrs.addrs, c.Domain)
				}
				return nil
			},
		},
		{
			name: "turns on 5349 and 443 with https elsewhere",
			env: map[string]string{"SWITCHBOARD_ACME_DOMAINS": "a.example.com, b.example.com",
				"SWITCHBOARD_TURNS_ADDR": ":5349, :443", "SWITCHBOARD_HTTPS_ADDR": ":8443"},
			check: func(c Config) error {
				if fmt.Sprint(c.TURNSAddrs.addrs) != "[:5349 :443]" || len(c.ACMEDomains) != 2 {
					return fmt.Errorf("TURNSAddrs %v ACMEDomains %v", c.TURNSAddrs.addrs, c.ACMEDomains)
				}
				return nil
			},
		},
		{
			name: "lists, prefixes, secrets",
			env: map[string]string{
				"SWITCHBOARD_PEER_ALLOW":      "192.168.1.0/24, 10.1.2.3",
				"SWITCHBOARD_PEER_DENY":       "203.0.113.0/24,2001:db8::/32",
				"SWITCHBOARD_TURN_SECRET":     "0123456789abcdef-new,0123456789abcdef-old",
				"SWITCHBOARD_PUBLIC_IP":       "203.0.113.7",
				"SWITCHBOARD_RELAY_PORTS":     "50000-50099",
				"SWITCHBOARD_LOBBY":           "false",
				"SWITCHBOARD_LOG_LEVEL":       "debug",
				"SWITCHBOARD_ALLOWED_ORIGINS": "app.example.com,*.example.org",
			},
			check: func(c Config) error {
				want := "[192.168.1.0/24 10.1.2.3/32] [203.0.113.0/24 2001:db8::/32] [0123456789abcdef-new 0123456789abcdef-old] 203.0.113.7 50000-50099 false DEBUG 2"
				got := fmt.Sprint(c.PeerAllow, " ", c.PeerDeny, " ", c.TURNSecrets.strings(), " ", c.PublicIP, " ", c.RelayPorts, " ", c.Lobby, " ", c.LogLevel, " ", len(c.AllowedOrigins))
				if got != want {
					return fmt.Errorf("got  %s\nwant %s", got, want)
				}
				return nil
			},
		},
		{
			name: "ring timeout short for tests",
			env:  map[string]string{"SWITCHBOARD_RING_TIMEOUT": "2s"},
			check: func(c Config) error {
				if c.RingTimeout != 2*time.Second {
					return fmt.Errorf("RingTimeout %s, want 2s", c.RingTimeout)
				}
				return nil
			},
		},
		{
			name: "ring timeout at the cap",
			env:  map[string]string{"SWITCHBOARD_RING_TIMEOUT": "5m"},
			check: func(c Config) error {
				if c.RingTimeout != 5*time.Minute {
					return fmt.Errorf("RingTimeout %s, want 5m", c.RingTimeout)
				}
				return nil
			},
		},
		{
			name: "set but empty means default",
			env:  map[string]string{"SWITCHBOARD_HTTP_ADDR": "", "SWITCHBOARD_RELAY_PORTS": ""},
			check: func(c Config) error {
				if c.HTTPAddr != ":8080" || c.RelayPorts != (portRange{49152, 65535}) {
					return fmt.Errorf("HTTPAddr %q RelayPorts %v", c.HTTPAddr, c.RelayPorts)
				}
				return nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfigMap(tt.env)
			if err != nil {
				t.Fatalf("parseConfigMap(%v) = %v", tt.env, err)
			}
			if err := tt.check(cfg); err != nil {
				t.Error(err)
			}
		})
	}
}

// badConfigs has one entry per kind of bad value; each must stop start-up
// naming wantVar.
var badConfigs = []struct {
	name    string
	env     map[string]string
	wantVar string
}{
	{"addr without port", map[string]string{"SWITCHBOARD_HTTP_ADDR": "8080"}, "HTTP_ADDR"},
	{"addr port out of range", map[string]string{"SWITCHBOARD_TURN_ADDR": ":99999"}, "TURN_ADDR"},
	{"metrics addr garbage", map[string]string{"SWITCHBOARD_METRICS_ADDR": "metrics"}, "METRICS_ADDR"},
	{"https without tls", map[string]string{"SWITCHBOARD_HTTPS_ADDR": ":443"}, "HTTPS_ADDR"},
	{"turns without tls", map[string]string{"SWITCHBOARD_TURNS_ADDR": ":5349"}, "TURNS_ADDR"},
	{"turns addr garbage", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "a.example.com", "SWITCHBOARD_TURNS_ADDR": "5349"}, "TURNS_ADDR"},
	{"turns collides with https", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "a.example.com", "SWITCHBOARD_HTTPS_ADDR": ":443", "SWITCHBOARD_TURNS_ADDR": ":5349,:443"}, "TURNS_ADDR"},
	{"cert without key", map[string]string{"SWITCHBOARD_TLS_CERT": "c.pem"}, "TLS_KEY"},
	{"key without cert", map[string]string{"SWITCHBOARD_TLS_KEY": "k.pem"}, "TLS_CERT"},
	{"cert and acme", map[string]string{"SWITCHBOARD_TLS_CERT": "c.pem", "SWITCHBOARD_TLS_KEY": "k.pem", "SWITCHBOARD_ACME_DOMAINS": "a.example.com"}, "ACME_DOMAINS"},
	{"acme domain not a name", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "https://a.example.com"}, "ACME_DOMAINS"},
	{"acme domain is an ip", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "203.0.113.7"}, "ACME_DOMAINS"},
	{"domain bad", map[string]string{"SWITCHBOARD_DOMAIN": "a..example.com"}, "DOMAIN"},
	{"turn secret short", map[string]string{"SWITCHBOARD_TURN_SECRET": "0123456789abcdef,short"}, "TURN_SECRET"},
	{"auth secret short", map[string]string{"SWITCHBOARD_AUTH_SECRET": "hunter2"}, "AUTH_SECRET"},
	{"public ip malformed", map[string]string{"SWITCHBOARD_PUBLIC_IP": "203.0.113"}, "PUBLIC_IP"},
	{"public ip is v6", map[string]string{"SWITCHBOARD_PUBLIC_IP": "2001:db8::1"}, "PUBLIC_IP"},
	{"public ip unspecified", map[string]string{"SWITCHBOARD_PUBLIC_IP": "0.0.0.0"}, "PUBLIC_IP"},
	{"public ipv6 is v4", map[string]string{"SWITCHBOARD_PUBLIC_IPV6": "203.0.113.7"}, "PUBLIC_IPV6"},
	{"public ip stun without port", map[string]string{"SWITCHBOARD_PUBLIC_IP_STUN": "stun.example.org"}, "PUBLIC_IP_STUN"},
	{"relay ports one number", map[string]string{"SWITCHBOARD_RELAY_PORTS": "49152"}, "RELAY_PORTS"},
	{"relay ports reversed", map[string]string{"SWITCHBOARD_RELAY_PORTS": "60000-50000"}, "RELAY_PORTS"},
	{"relay ports privileged", map[string]string{"SWITCHBOARD_RELAY_PORTS": "100-200"}, "RELAY_PORTS"},
	{"relay ports not numbers", map[string]string{"SWITCHBOARD_RELAY_PORTS": "a-b"}, "RELAY_PORTS"},
	{"stun alt addr with wildcard turn addr", map[string]string{"SWITCHBOARD_TURN_ADDR": ":0", "SWITCHBOARD_STUN_ALT_ADDR": "127.0.0.2:3479"}, "STUN_ALT_ADDR"},
	{"stun alt addr same port", map[string]string{"SWITCHBOARD_TURN_ADDR": "127.0.0.1:3478", "SWITCHBOARD_STUN_ALT_ADDR": "127.0.0.2:3478"}, "STUN_ALT_ADDR"},
	{"stun alt addr same ip", map[string]string{"SWITCHBOARD_TURN_ADDR": "127.0.0.1:3478", "SWITCHBOARD_STUN_ALT_ADDR": "127.0.0.1:3479"}, "STUN_ALT_ADDR"},
	{"stun alt addr other family", map[string]string{"SWITCHBOARD_TURN_ADDR": "127.0.0.1:3478", "SWITCHBOARD_STUN_ALT_ADDR": "[::1]:3479"}, "STUN_ALT_ADDR"},
	{"peer allow malformed cidr", map[string]string{"SWITCHBOARD_PEER_ALLOW": "10.0.0/8"}, "PEER_ALLOW"},
	{"peer deny prefix too long", map[string]string{"SWITCHBOARD_PEER_DENY": "192.168.1.0/33"}, "PEER_DENY"},
	{"peer deny not an address", map[string]string{"SWITCHBOARD_PEER_DENY": "10.0.0.0/8,evil.example.com"}, "PEER_DENY"},
	{"trusted proxies malformed", map[string]string{"SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.0/x"}, "TRUSTED_PROXIES"},
	{"duration malformed", map[string]string{"SWITCHBOARD_MAX_ALLOCATION_AGE": "forever"}, "MAX_ALLOCATION_AGE"},
	{"duration negative", map[string]string{"SWITCHBOARD_DRAIN_TIMEOUT": "-5s"}, "DRAIN_TIMEOUT"},
	{"duration zero", map[string]string{"SWITCHBOARD_RESUME_GRACE": "0s"}, "RESUME_GRACE"},
	{"ring timeout zero", map[string]string{"SWITCHBOARD_RING_TIMEOUT": "0s"}, "RING_TIMEOUT"},
	{"ring timeout negative", map[string]string{"SWITCHBOARD_RING_TIMEOUT": "-1s"}, "RING_TIMEOUT"},
	{"ring timeout over the cap", map[string]string{"SWITCHBOARD_RING_TIMEOUT": "30m"}, "RING_TIMEOUT"},
	{"ring timeout without unit", map[string]string{"SWITCHBOARD_RING_TIMEOUT": "30"}, "RING_TIMEOUT"},
	{"credential ttl too short", map[string]string{"SWITCHBOARD_CREDENTIAL_TTL": "30s"}, "CREDENTIAL_TTL"},
	{"credential ttl over max", map[string]string{"SWITCHBOARD_CREDENTIAL_TTL": "48h"}, "CREDENTIAL_TTL"},
	{"ping interval too short", map[string]string{"SWITCHBOARD_PING_INTERVAL": "10ms"}, "PING_INTERVAL"},
	{"int malformed", map[string]string{"SWITCHBOARD_USER_QUOTA": "lots"}, "USER_QUOTA"},
	{"int negative", map[string]string{"SWITCHBOARD_TOTAL_QUOTA": "-1"}, "TOTAL_QUOTA"},
	{"user quota over total", map[string]string{"SWITCHBOARD_USER_QUOTA": "10", "SWITCHBOARD_TOTAL_QUOTA": "5"}, "USER_QUOTA"},
	{"room size one", map[string]string{"SWITCHBOARD_MAX_ROOM_SIZE": "1"}, "MAX_ROOM_SIZE"},
	{"sessions zero", map[string]string{"SWITCHBOARD_MAX_SESSIONS": "0"}, "MAX_SESSIONS"},
	{"bool malformed", map[string]string{"SWITCHBOARD_LOBBY": "maybe"}, "LOBBY"},
	{"log level unknown", map[string]string{"SWITCHBOARD_LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
	{"log format unknown", map[string]string{"SWITCHBOARD_LOG_FORMAT": "xml"}, "LOG_FORMAT"},
	{"origin given as url", map[string]string{"SWITCHBOARD_ALLOWED_ORIGINS": "https://app.example.com"}, "ALLOWED_ORIGINS"},
	{"realm with quote", map[string]string{"SWITCHBOARD_REALM": `a"b`}, "REALM"},
}

func TestConfigBadValues(t *testing.T) {
	for _, tt := range badConfigs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfigMap(tt.env)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("parseConfigMap(%v) = %v, want a configError", tt.env, err)
			}
			if ce.Var != envPrefix+tt.wantVar {
				t.Errorf("parseConfigMap(%v) names %s, want %s%s (err %v)", tt.env, ce.Var, envPrefix, tt.wantVar, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

// TestRunBadConfig: through run(), a bad value is exit status 2 and exactly
// one line on stderr naming the variable, before anything is bound.
func TestRunBadConfig(t *testing.T) {
	extra := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		// Caught by newApp (reads the files), not by validate.
		{"tls cert unreadable", map[string]string{"SWITCHBOARD_TLS_CERT": "/nonexistent/c.pem", "SWITCHBOARD_TLS_KEY": "/nonexistent/k.pem"}, "TLS_CERT"},
	}
	cases := append(append([]struct {
		name    string
		env     map[string]string
		wantVar string
	}{}, badConfigs...), extra...)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Listeners on loopback and no kernel fast path in case a case
			// wrongly passes validation.
			m := map[string]string{
				"SWITCHBOARD_PUBLIC_IP":     "127.0.0.1",
				"SWITCHBOARD_HTTP_ADDR":     "127.0.0.1:0",
				"SWITCHBOARD_TURN_ADDR":     "127.0.0.1:0",
				"SWITCHBOARD_RELAY_OFFLOAD": "off",
			}
			maps.Copy(m, tt.env)
			var environ []string
			for k, v := range m {
				environ = append(environ, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			// Cancelled context: should validation wrongly pass, serve stops
			// at once instead of hanging the test.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			code := run(ctx, nil, environ, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("run exit = %d, want %d; stderr %q", code, exitUsage, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], envPrefix+tt.wantVar) {
				t.Errorf("stderr = %q, want one line naming %s%s", stderr.String(), envPrefix, tt.wantVar)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	const turn, auth = "turn-secret-0123456789", "auth-secret-0123456789abcdef0123456789"
	cfg, err := parseConfigMap(map[string]string{
		"SWITCHBOARD_TURN_SECRET": turn,
		"SWITCHBOARD_AUTH_SECRET": auth,
	})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("config", "cfg", cfg, "turn", cfg.TURNSecrets, "auth", cfg.AuthSecret)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "turn", cfg.TURNSecrets, "auth", cfg.AuthSecret)
	out := fmt.Sprintf("%v %+v %#v %s %s", cfg, cfg, cfg, cfg.TURNSecrets, cfg.AuthSecret) + logged.String()
	for _, s := range []string{turn, auth} {
		if strings.Contains(out, s) {
			t.Errorf("secret %q printed in %s", s, out)
		}
	}
	if !strings.Contains(out, "REDACTED") {
		t.Errorf("no REDACTED in %s", out)
	}
	if string(cfg.AuthSecret) != auth || cfg.TURNSecrets.strings()[0] != turn {
		t.Errorf("secrets not kept: the values must still reach the server")
	}
}

func TestUnknownVars(t *testing.T) {
	got := unknownVars(map[string]string{
		"SWITCHBOARD_PUBLICIP": "1.2.3.4", "SWITCHBOARD_PUBLIC_IP": "1.2.3.4",
		"SWITCHBOARD_E2E": "1", "HOME": "/root",
	})
	if fmt.Sprint(got) != "[SWITCHBOARD_PUBLICIP]" {
		t.Errorf("unknownVars = %v, want [SWITCHBOARD_PUBLICIP]", got)
	}
}

// TestConfigErrorsInWords: a bad value is named with the expected form in
// plain words, never a Go parser's message.
func TestConfigErrorsInWords(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c, k := selfSigned(t, "call.mydomain.net")
	writeCert(t, certFile, keyFile, c, k, time.Now())
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
		want    string
	}{
		{"int", map[string]string{"SWITCHBOARD_MAX_ROOM_SIZE": "abc"}, "MAX_ROOM_SIZE", `"abc" is not a whole number`},
		{"duration", map[string]string{"SWITCHBOARD_RESUME_GRACE": "30"}, "RESUME_GRACE", `"30" is not a duration: write a number with a unit, e.g. 30s`},
		{"log level", map[string]string{"SWITCHBOARD_LOG_LEVEL": "verbose"}, "LOG_LEVEL", `"verbose" is not a log level: use debug, info, warn or error`},
		{"bool", map[string]string{"SWITCHBOARD_LOBBY": "maybe"}, "LOBBY", `"maybe" is not true or false`},
		{"ip", map[string]string{"SWITCHBOARD_PUBLIC_IP": "my.router"}, "PUBLIC_IP", `"my.router" is not an IP address`},
		{"ip and port", map[string]string{"SWITCHBOARD_STUN_ALT_ADDR": "127.0.0.2"}, "STUN_ALT_ADDR", `"127.0.0.2" is not an IP address with a port`},
		{"port range", map[string]string{"SWITCHBOARD_RELAY_PORTS": "lots"}, "RELAY_PORTS", "want MIN-MAX"},
		{"cert and key missing", map[string]string{"SWITCHBOARD_TLS_CERT": "/nonexistent/c.pem", "SWITCHBOARD_TLS_KEY": "/nonexistent/k.pem"}, "TLS_CERT", "file /nonexistent/c.pem does not exist"},
		{"key missing", map[string]string{"SWITCHBOARD_TLS_CERT": certFile, "SWITCHBOARD_TLS_KEY": "/nonexistent/k.pem"}, "TLS_KEY", "file /nonexistent/k.pem does not exist"},
		{"cert is a directory", map[string]string{"SWITCHBOARD_TLS_CERT": dir, "SWITCHBOARD_TLS_KEY": keyFile}, "TLS_CERT", "is a directory"},
		{"cert not PEM", map[string]string{"SWITCHBOARD_TLS_CERT": notPEM, "SWITCHBOARD_TLS_KEY": keyFile}, "TLS_CERT", "holds no PEM certificate"},
		{"key not PEM", map[string]string{"SWITCHBOARD_TLS_CERT": certFile, "SWITCHBOARD_TLS_KEY": notPEM}, "TLS_KEY", "holds no PEM private key"},
		{"key and cert swapped", map[string]string{"SWITCHBOARD_TLS_CERT": certFile, "SWITCHBOARD_TLS_KEY": certFile}, "TLS_KEY", "holds no PEM private key"},
		{"passcode short", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_PASSCODE": "1234"}, "PASSCODE", "at least 8 characters"},
		{"passcode without auth", map[string]string{"SWITCHBOARD_PASSCODE": "correct horse"}, "AUTH_SECRET", "must be set for a passcode"},
		{"passcode and hash", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_PASSCODE": "correct horse", "SWITCHBOARD_PASSCODE_HASH": "$2a$10$x"}, "PASSCODE_HASH", "pick one"},
		{"hash not bcrypt", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_PASSCODE_HASH": "5f4dcc3b5aa765d61d8327deb882cf99"}, "PASSCODE_HASH", "switchboard passcode-hash"},
		{"public url with path", map[string]string{"SWITCHBOARD_PUBLIC_URL": "https://example.org/call"}, "PUBLIC_URL", "like https://call.example.com/"},
		{"public url without scheme", map[string]string{"SWITCHBOARD_PUBLIC_URL": "call.example.com"}, "PUBLIC_URL", "like https://call.example.com/"},
	}
	goInternals := []string{"strconv.", "slog:", "ParseAddr", "time: ", "stat /", "open /", "tls: ", "invalid syntax"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfigMap(tt.env)
			if err == nil {
				_, err = newApp(cfg, nil) // reads the certificate files
			}
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("config %v: error %v, want a configError", tt.env, err)
			}
			if ce.Var != envPrefix+tt.wantVar || !strings.Contains(ce.Msg, tt.want) {
				t.Errorf("config %v: %q, want %s%s and %q", tt.env, err, envPrefix, tt.wantVar, tt.want)
			}
			for _, g := range goInternals {
				if strings.Contains(err.Error(), g) {
					t.Errorf("error %q speaks Go (%q)", err, g)
				}
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func TestConfigSignIn(t *testing.T) {
	cfg, err := parseConfigMap(map[string]string{
		"SWITCHBOARD_AUTH_SECRET":   "0123456789abcdef0123456789abcdef",
		"SWITCHBOARD_PASSCODE":      "correct horse",
		"SWITCHBOARD_PUBLIC_URL":    "https://call.example.com",
		"SWITCHBOARD_ACME_CACHE":    "/var/lib/switchboard/acme",
		"SWITCHBOARD_METRICS_TOKEN": "scrape-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "https://call.example.com/" {
		t.Errorf("PublicURL = %q, want a trailing slash added", cfg.PublicURL)
	}
	if got := cfg.dataDir(); got != "/var/lib/switchboard" {
		t.Errorf("dataDir() = %q, want the directory holding ACME_CACHE", got)
	}
	cfg.DataDir = "/srv/sb"
	if got := cfg.dataDir(); got != "/srv/sb" {
		t.Errorf("dataDir() = %q, want SWITCHBOARD_DATA_DIR", got)
	}
	out := fmt.Sprintf("%v %+v", cfg, cfg)
	for _, s := range []string{"correct horse", "scrape-token"} {
		if strings.Contains(out, s) {
			t.Errorf("secret %q printed", s)
		}
	}
}
