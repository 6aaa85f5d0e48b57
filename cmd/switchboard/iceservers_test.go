package main

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/relay"
)

func TestICEEndpoints(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name     string
		ep       iceEndpoints
		wantSTUN []string
		wantTURN []string
	}{
		{
			name:     "ipv4 only",
			ep:       iceEndpoints{Host: v4, UDPPort: 3478, TCPPort: 3478},
			wantSTUN: []string{"stun:203.0.113.7:3478"},
			wantTURN: []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp"},
		},
		{
			name:     "different tcp port (bound to :0 in tests)",
			ep:       iceEndpoints{Host: v4, UDPPort: 40000, TCPPort: 40001},
			wantSTUN: []string{"stun:203.0.113.7:40000"},
			wantTURN: []string{"turn:203.0.113.7:40000?transport=udp", "turn:203.0.113.7:40001?transport=tcp"},
		},
		{
			name:     "ipv6 bracketed",
			ep:       iceEndpoints{Host: v4, Host6: v6, UDPPort: 3478, TCPPort: 3478},
			wantSTUN: []string{"stun:203.0.113.7:3478", "stun:[2001:db8::7]:3478"},
			wantTURN: []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp",
				"turn:[2001:db8::7]:3478?transport=udp", "turn:[2001:db8::7]:3478?transport=tcp"},
		},
		{
			name:     "turns on the certificate's domain, 5349 and 443",
			ep:       iceEndpoints{Host: v4, UDPPort: 3478, TCPPort: 3478, TLSDomain: "call.example.com", TLSPorts: []int{5349, 443}},
			wantSTUN: []string{"stun:203.0.113.7:3478"},
			wantTURN: []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp",
				"turns:call.example.com:5349?transport=tcp", "turns:call.example.com:443?transport=tcp"},
		},
		{
			name:     "turns without a domain falls back to the IP",
			ep:       iceEndpoints{Host: v4, UDPPort: 3478, TCPPort: 3478, TLSPorts: []int{5349}},
			wantSTUN: []string{"stun:203.0.113.7:3478"},
			wantTURN: []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp", "turns:203.0.113.7:5349?transport=tcp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stun, turn := tt.ep.urls()
			if !slices.Equal(stun, tt.wantSTUN) || !slices.Equal(turn, tt.wantTURN) {
				t.Errorf("urls() = %q, %q\nwant %q, %q", stun, turn, tt.wantSTUN, tt.wantTURN)
			}
			c := relay.NewCredential("0123456789abcdef", "alice", time.Unix(1900000000, 0))
			s := tt.ep.servers(c)
			if len(s) != 2 || s[0].Username != "" || s[1].Username != c.Username || s[1].Credential != c.Password {
				t.Errorf("servers() = %+v: want STUN without and TURN with the credential", s)
			}
		})
	}
}
