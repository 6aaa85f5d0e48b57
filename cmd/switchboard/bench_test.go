package main

import (
	"bytes"
	"regexp"
	"strconv"
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
		{"signaling: nodes", []string{"signaling", "--nodes", "0"}, "--nodes 0 out of range 1-9"},
		{"signaling: compare one node", []string{"signaling", "--compare-nodes"}, "--compare-nodes needs --nodes 2 or more"},
		{"signaling: attach to a cluster", []string{"signaling", "--nodes", "3", "--url", "ws://127.0.0.1:1/ws", "--pid", "1"}, "--url attaches to one server: drop --nodes"},
		{"signaling: handoffs above pairs", []string{"signaling", "--sessions", "4", "--handoffs", "3"}, "--handoffs 3 out of range 0-2 (one per pair)"},
		{"signaling: wait-idle", []string{"signaling", "--wait-idle", "2"}, "--wait-idle 2 out of range 0-1"},
		{"signaling: handoff-queued", []string{"signaling", "--handoff-queued", "0"}, "--handoff-queued 0 out of range 1-100"},
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
		{"signaling", []string{"usage: switchboard bench signaling [flags]", "-sessions", "-peerjs-dir", "-server-env", "-client-cpuprofile", "-settle", "-nodes", "-compare-nodes", "-handoffs", "-wait-idle"}},
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

// TestBenchSignalingCluster runs `bench signaling --nodes 3 --compare-nodes`
// with tiny counts: one server, then three processes of this test binary
// (role cluster-node) as an embedded cluster. Both summary rows must show
// signals delivered and none lost, and both must report their handoff
// phase; on one node every cut session resumes. What the three nodes'
// handoffs achieve is the figure the bench exists to report, not asserted.
func TestBenchSignalingCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four server processes")
	}
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "signaling", "--nodes", "3", "--compare-nodes",
		"--sessions", "12", "--rate", "120", "--duration", "300ms", "--settle", "0s",
		"--ping-interval", "1s", "--handoffs", "3", "--server-log", t.TempDir(),
		"--server-env", envTestRole + "=cluster-node"}
	if code := run(t.Context(), args, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("bench %q = exit %d; stderr %s\nstdout:\n%s", args, code, stderr.String(), stdout.String())
	}
	out := stdout.String()
	for _, nodes := range []string{"1 node ", "3 nodes"} {
		row := regexp.MustCompile(`(?m)^   switchboard ` + nodes + ` sessions held +(\d+) .* msg/s +(\d+) .* lost (\d+)`).FindStringSubmatch(out)
		if row == nil {
			t.Errorf("summary lacks the %q row:\n%s", nodes, out)
			continue
		}
		held, _ := strconv.Atoi(row[1])
		rate, _ := strconv.Atoi(row[2])
		if held != 12 || rate == 0 || row[3] != "0" {
			t.Errorf("%s row: held %s, msg/s %s, lost %s; want 12 held, some delivered, none lost:\n%s", nodes, row[1], row[2], row[3], out)
		}
		if !strings.Contains(out, "   switchboard "+nodes+" handoff: ") {
			t.Errorf("summary lacks the %s handoff:\n%s", nodes, out)
		}
	}
	for _, want := range []string{
		"cluster: 3 nodes (SWITCHBOARD_CLUSTER=embedded",
		"   node3  pid ",
		"   switchboard 1 node  handoff: 3/3 resumed; queued signals 3, replayed 3",
		"   3 nodes / 1 node: msg/s ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Every signal of the 3-node run crossed nodes: the routers counted them.
	if !regexp.MustCompile(`server counters during run 1: .*cluster_routed_out ×[1-9]`).MatchString(out) {
		t.Errorf("no routed_out growth during the 3-node relay run:\n%s", out)
	}
}
