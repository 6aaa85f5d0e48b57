package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPublicURL(t *testing.T) {
	tests := []struct {
		name              string
		env               map[string]string
		httpPort, tlsPort int
		want              string
	}{
		{"nothing set", nil, 8080, 0, "http://localhost:8080/"},
		{"loopback http", map[string]string{"SWITCHBOARD_HTTP_ADDR": "127.0.0.1:8080"}, 8080, 0, "http://localhost:8080/"},
		{"lan http", map[string]string{"SWITCHBOARD_HTTP_ADDR": "192.168.1.10:8080"}, 8080, 0, "http://192.168.1.10:8080/"},
		{"deploy guide: ACME, router forwards 443 to 8443", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "call.example.com"}, 8080, 8443, "https://call.example.com/"},
		{"https on 443 itself", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "call.example.com", "SWITCHBOARD_HTTPS_ADDR": ":443"}, 8080, 443, "https://call.example.com/"},
		{"public url wins", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "call.example.com", "SWITCHBOARD_PUBLIC_URL": "https://call.example.com:8443"}, 8080, 8443, "https://call.example.com:8443/"},
		{"public url behind a proxy", map[string]string{"SWITCHBOARD_PUBLIC_URL": "https://meet.example.org/"}, 8080, 0, "https://meet.example.org/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfigMap(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := publicURL(&cfg, tt.httpPort, tt.tlsPort); got != tt.want {
				t.Errorf("publicURL = %q, want %q", got, tt.want)
			}
		})
	}
	// A certificate without a domain: localhost with the bound port.
	cfg := Config{TLSCert: "c", TLSKey: "k"}
	if got := publicURL(&cfg, 8080, 8443); got != "https://localhost:8443/" {
		t.Errorf("publicURL(cert without DNS name) = %q", got)
	}
}

func TestStartupWarnings(t *testing.T) {
	secure := map[string]string{
		"SWITCHBOARD_AUTH_SECRET":  "0123456789abcdef0123456789abcdef",
		"SWITCHBOARD_ACME_DOMAINS": "call.mydomain.net",
	}
	tests := []struct {
		name      string
		env       map[string]string
		public    string
		generated bool
		want      []string // substrings, one per warning, in order
	}{
		{"all good", secure, "81.2.69.142", false, nil},
		{".env.example untouched", map[string]string{
			"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_ACME_DOMAINS": "call.example.com",
			"SWITCHBOARD_PUBLIC_IP": "203.0.113.7"}, "203.0.113.7", false,
			[]string{"203.0.113.7 is a documentation example", "call.example.com is an example name"}},
		{"private", secure, "192.168.1.10", false, []string{"192.168.1.10 is a private address"}},
		{"private 10/8", secure, "10.0.0.5", false, []string{"private address"}},
		{"loopback", secure, "127.0.0.1", false, []string{"is loopback"}},
		{"cgnat", secure, "100.72.1.9", false, []string{"carrier-grade NAT"}},
		{"link-local", secure, "169.254.10.1", false, []string{"private address"}},
		{"plain http on the LAN", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef"}, "81.2.69.142", false,
			[]string{"no TLS: other devices"}},
		{"plain http on loopback only", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_HTTP_ADDR": "127.0.0.1:8080"}, "81.2.69.142", false, nil},
		{"open mode, generated secret", map[string]string{"SWITCHBOARD_ACME_DOMAINS": "call.mydomain.net"}, "81.2.69.142", true,
			[]string{"TURN secret generated", "open mode"}},
		{"example public url", map[string]string{"SWITCHBOARD_AUTH_SECRET": "0123456789abcdef0123456789abcdef", "SWITCHBOARD_ACME_DOMAINS": "call.mydomain.net", "SWITCHBOARD_PUBLIC_URL": "https://call.example.org/"}, "81.2.69.142", false,
			[]string{"SWITCHBOARD_PUBLIC_URL https://call.example.org/ is an example name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfigMap(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			got := startupWarnings(&cfg, netip.MustParseAddr(tt.public), tt.generated)
			if len(got) != len(tt.want) {
				t.Fatalf("startupWarnings = %q, want %d warnings like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}
