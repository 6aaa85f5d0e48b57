package relay

import (
	"strings"
	"testing"
	"time"
)

func TestNewCredential(t *testing.T) {
	tests := []struct {
		secret, user string
		expires      int64
		wantUser     string
		wantPass     string
	}{
		// Password computed independently: printf '%s' '1700000000:alice' |
		//   openssl dgst -sha1 -hmac north -binary | base64
		{"north", "alice", 1700000000, "1700000000:alice", "Cd/49soE35ICqcJF/bCTn8Z4OyE="},
	}
	for _, tt := range tests {
		t.Run(tt.wantUser, func(t *testing.T) {
			got := NewCredential(tt.secret, tt.user, time.Unix(tt.expires, 0))
			if got.Username != tt.wantUser || got.Password != tt.wantPass || got.Expires.Unix() != tt.expires {
				t.Errorf("NewCredential(%q, %q, %d) = %+v, want %s / %s", tt.secret, tt.user, tt.expires, got, tt.wantUser, tt.wantPass)
			}
		})
	}
}

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		in       string
		wantUser string
		wantExp  int64
		wantErr  bool
	}{
		{"1700000000:alice", "alice", 1700000000, false},
		{"1700000000:a:b", "a:b", 1700000000, false}, // the user part may contain colons
		{"1700000000:Zoë", "Zoë", 1700000000, false},
		{"1700000000", "", 0, true},
		{":alice", "", 0, true},
		{"1700000000:", "", 0, true},
		{"-1:alice", "", 0, true},
		{"+1:alice", "", 0, true},
		{" 1:alice", "", 0, true},
		{"0x10:alice", "", 0, true},
		{"1e9:alice", "", 0, true},
		{"9999999999999:alice", "", 0, true},
		{"1700000000:al\x00ice", "", 0, true},
		{"1700000000:al\tice", "", 0, true},
		{"1700000000:\xff", "", 0, true},
		{"1700000000:" + strings.Repeat("x", 257), "", 0, true},
		{"1700000000:" + strings.Repeat("x", 600), "", 0, true},
		{"", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 24)], func(t *testing.T) {
			exp, user, err := parseRESTUsername(tt.in)
			if (err != nil) != tt.wantErr || user != tt.wantUser || (!tt.wantErr && exp.Unix() != tt.wantExp) {
				t.Errorf("parseRESTUsername(%q) = %v, %q, %v; want %d, %q, err=%v", tt.in, exp.Unix(), user, err, tt.wantExp, tt.wantUser, tt.wantErr)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad listen address", func(c *Config) { c.ListenAddr = "nonsense" }, "ListenAddr"},
		{"TLS without config", func(c *Config) { c.TLSListenAddrs = []string{":5349"} }, "TLSConfig"},
		{"empty secret", func(c *Config) { c.Secrets = []string{"a", ""} }, "Secrets[1]"},
		{"inverted port range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50000, 40000 }, "port range"},
		{"negative quota", func(c *Config) { c.UserQuota = -1 }, "negative"},
		{"too many sockets", func(c *Config) { c.Sockets = 1000 }, "Sockets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			tt.mutate(&cfg)
			_, err := New(cfg)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.ListenAddr != ":3478" || c.RelayPortMin != 49152 || c.RelayPortMax != 65535 || c.UserQuota != 48 ||
		c.TotalQuota != 16384 || c.MaxPermissions != 32 || c.Realm != "switchboard" || c.Software != "" ||
		c.MaxCredentialTTL != 24*time.Hour || c.MaxAllocationAge != 4*time.Hour {
		t.Errorf("defaults = %+v", c)
	}
}
