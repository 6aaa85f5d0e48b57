package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// stackDefaults are the settings of startStack: everything on loopback with
// ephemeral ports, relaying allowed to loopback peers (the built-in deny list
// refuses 127/8), a known TURN secret and a short drain so Cleanup is quick.
// The kernel fast path stays off: run as root, "auto" would attach it to the
// host's loopback, and eBPF is only ever tested in namespaces a test makes
// (relay/offload, and the NAT tests' server namespace).
func stackDefaults(tb testing.TB) map[string]string {
	tb.Helper()
	var b [24]byte
	rand.Read(b[:])
	return map[string]string{
		"SWITCHBOARD_HTTP_ADDR":     "127.0.0.1:0",
		"SWITCHBOARD_TURN_ADDR":     "127.0.0.1:0",
		"SWITCHBOARD_PUBLIC_IP":     "127.0.0.1",
		"SWITCHBOARD_PEER_ALLOW":    "127.0.0.0/8",
		"SWITCHBOARD_TURN_SECRET":   hex.EncodeToString(b[:]),
		"SWITCHBOARD_DRAIN_TIMEOUT": "1s",
		"SWITCHBOARD_RELAY_OFFLOAD": "off",
	}
}

// startStack starts the whole server in-process (relay, hub, web app,
// metrics) and stops it gracefully in Cleanup. env keys may be given with
// or without the SWITCHBOARD_ prefix and override the defaults; the parsed
// config is then passed through the same validation as `switchboard serve`.
// Reach it with a.httpURL(), a.relay.UDPAddr(), a.cfg.TURNSecrets.
func startStack(t testing.TB, env map[string]string) *app {
	t.Helper()
	m := stackDefaults(t)
	for k, v := range env {
		if !strings.HasPrefix(k, envPrefix) {
			k = envPrefix + k
		}
		m[k] = v
	}
	cfg, err := parseConfigMap(m)
	if err != nil {
		t.Fatalf("startStack: config: %v", err)
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
	a, err := newApp(cfg, log)
	if err != nil {
		t.Fatalf("startStack: newApp: %v", err)
	}
	if err := a.start(t.Context()); err != nil {
		a.close()
		t.Fatalf("startStack: start: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when Cleanup runs: a fresh one,
		// long enough for the drain plus the hub's close handshakes.
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout+15*time.Second)
		defer cancel()
		if err := a.shutdown(ctx); err != nil {
			t.Errorf("startStack: shutdown: %v", err)
		}
	})
	return a
}
