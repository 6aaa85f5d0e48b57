package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBenchFlags: the bench subcommands check their flags before they
// start anything, with messages that name the flag.
func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"turn: argument", []string{"turn", "extra"}, `unexpected argument "extra"`},
		{"turn: duration", []string{"turn", "--duration", "11m"}, "--duration 11m0s out of range (0, 10m]"},
		{"turn: rounds", []string{"turn", "--rounds", "0"}, "--rounds 0 out of range 1-100"},
		{"turn: no server", []string{"turn"}, "need --server and --secret, or --compare"},
		{"turn: compare with server", []string{"turn", "--compare", "--server", "127.0.0.1:3478"}, "drop --server and --pid"},
		{"turn: bad flag", []string{"turn", "--nope"}, "flag provided but not defined: -nope"},
		{"turn: shape", []string{"turn", "--shape", "huge"}, `--shape "huge": want default|many-slow|video|all`},
		{"turn: shape overrides a flag", []string{"turn", "--shape", "many-slow", "--allocations", "50"}, "--shape many-slow sets --allocations itself"},
		{"turn: all shapes override a flag", []string{"turn", "--shape", "all", "--size", "200"}, "--shape all sets --size itself"},
		{"turn: offload mode", []string{"turn", "--compare", "--offload", "fast"}, `--offload "fast": want auto, off, require or both`},
		{"turn: offload without compare", []string{"turn", "--offload", "both"}, "--offload needs --compare"},
		{"signaling: odd sessions", []string{"signaling", "--sessions", "3"}, "--sessions 3: want an even number >= 2"},
		{"signaling: rate", []string{"signaling", "--rate", "0"}, "want rate > 0 and duration in (0, 10m]"},
		{"signaling: runs", []string{"signaling", "--runs", "21"}, "--runs 21 out of range 1-20"},
		{"signaling: settle", []string{"signaling", "--settle", "11m"}, "--settle must be in [0, 10m]"},
		{"signaling: url without pid", []string{"signaling", "--url", "ws://127.0.0.1:1/ws"}, "--url and --pid go together"},
		{"signaling: skip without peerjs", []string{"signaling", "--skip-switchboard"}, "--skip-switchboard needs --peerjs-dir"},
		{"signaling: server-env", []string{"signaling", "--server-env", "NOEQUALS"}, `"NOEQUALS": want KEY=VALUE`},
		{"signaling: too many sessions", []string{"signaling", "--sessions", "2000000000"}, "file descriptors, RLIMIT_NOFILE is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), append([]string{"bench"}, tt.args...), nil, &stdout, &stderr); code != exitFailure {
				t.Errorf("bench %q = exit %d, want %d", tt.args, code, exitFailure)
			}
			if !strings.Contains(stderr.String()+stdout.String(), tt.want) {
				t.Errorf("bench %q: stderr %q, want it to contain %q", tt.args, stderr.String(), tt.want)
			}
		})
	}
}

// TestBenchHelp: -h prints each subcommand's flags, which the README quotes.
func TestBenchHelp(t *testing.T) {
	for _, tt := range []struct {
		kind  string
		flags []string
	}{
		{"turn", []string{"-compare", "-rounds", "-coturn-threads", "-size-max", "-wait-idle", "-sink", "-shape", "-offload"}},
		{"signaling", []string{"usage: switchboard bench signaling [flags]", "-sessions", "-peerjs-dir", "-server-env", "-client-cpuprofile", "-settle"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), []string{"bench", tt.kind, "-h"}, nil, &stdout, &stderr); code != exitOK {
			t.Errorf("bench %s -h = exit %d, want %d; stderr %q", tt.kind, code, exitOK, stderr.String())
		}
		for _, f := range tt.flags {
			if !strings.Contains(stdout.String(), f) {
				t.Errorf("bench %s -h lacks %q:\n%s", tt.kind, f, stdout.String())
			}
		}
	}
}
