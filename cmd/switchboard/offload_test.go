package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/relay/offload"
)

// fakeOffloader stands in for the eBPF fast path.
type fakeOffloader struct{ ifs []string }

func (fakeOffloader) Add(relay.Flow) error                        { return nil }
func (fakeOffloader) Remove(relay.Flow) (relay.FlowCounts, error) { return relay.FlowCounts{}, nil }
func (fakeOffloader) Counts(relay.Flow) (relay.FlowCounts, bool)  { return relay.FlowCounts{}, false }
func (fakeOffloader) Close() error                                { return nil }
func (f fakeOffloader) Interfaces() []string                      { return f.ifs }

func TestRelayOffload(t *testing.T) {
	denied := fmt.Errorf("offload: load program: %w", os.ErrPermission)
	for _, tt := range []struct {
		name       string
		mode       offloadMode
		turnAddr   string
		attachErr  error
		wantOn     bool
		wantHow    string // substring of the banner words
		wantVar    string // the variable a start-up error names
		wantLog    string // substring of the one log line; "" for no log
		wantIfs    []string
		wantCalled bool
	}{
		{name: "off", mode: offloadOff, turnAddr: ":3478", wantHow: "user space (SWITCHBOARD_RELAY_OFFLOAD=off)"},
		{name: "auto loads", mode: offloadAuto, turnAddr: ":3478", wantOn: true, wantHow: "kernel fast path (eBPF on eth0, lo)", wantCalled: true},
		{name: "auto on loopback listener", mode: offloadAuto, turnAddr: "127.0.0.1:3478", wantOn: true, wantHow: "kernel fast path", wantIfs: []string{loopbackName()}, wantCalled: true},
		{name: "auto without privileges", mode: offloadAuto, turnAddr: ":3478", attachErr: denied,
			wantHow: "user space (kernel fast path unavailable", wantLog: "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", wantCalled: true},
		{name: "auto elsewhere", mode: offloadAuto, turnAddr: ":3478", attachErr: errors.New("offload: not supported on darwin\n(needs Linux eBPF)"),
			wantHow: "not supported on darwin (needs Linux eBPF)", wantLog: "not supported on darwin", wantCalled: true},
		{name: "require loads", mode: offloadRequire, turnAddr: "[::1]:3478", wantOn: true, wantHow: "kernel fast path", wantIfs: []string{loopbackName()}, wantCalled: true},
		{name: "require fails", mode: offloadRequire, turnAddr: ":3478", attachErr: denied, wantVar: "SWITCHBOARD_RELAY_OFFLOAD", wantCalled: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			called := false
			var gotCfg offload.Config
			attach := func(cfg offload.Config) (relay.Offloader, error) {
				called, gotCfg = true, cfg
				if tt.attachErr != nil {
					return nil, tt.attachErr
				}
				return fakeOffloader{ifs: []string{"eth0", "lo"}}, nil
			}
			off, how, err := relayOffload(tt.mode, tt.turnAddr, attach, log)
			if called != tt.wantCalled {
				t.Fatalf("attach called = %v, want %v", called, tt.wantCalled)
			}
			if !slices.Equal(gotCfg.Interfaces, tt.wantIfs) {
				t.Errorf("attach Interfaces = %v, want %v", gotCfg.Interfaces, tt.wantIfs)
			}
			if tt.wantVar != "" {
				var ce *configError
				if !errors.As(err, &ce) || ce.Var != tt.wantVar || strings.Contains(err.Error(), "\n") {
					t.Fatalf("relayOffload error = %v, want one line naming %s", err, tt.wantVar)
				}
				if !strings.Contains(ce.Msg, offloadCaps) {
					t.Errorf("error %q does not say what it needs", ce.Msg)
				}
				if off != nil {
					t.Errorf("offloader %v returned with the error", off)
				}
				return
			}
			if err != nil {
				t.Fatalf("relayOffload = %v", err)
			}
			if (off != nil) != tt.wantOn {
				t.Errorf("offloader = %v, want on: %v", off, tt.wantOn)
			}
			if !strings.Contains(how, tt.wantHow) || strings.Contains(how, "\n") {
				t.Errorf("how = %q, want it to contain %q", how, tt.wantHow)
			}
			lines := strings.Count(logs.String(), "\n")
			switch {
			case tt.wantLog == "" && lines != 0:
				t.Errorf("logged %q, want nothing", logs.String())
			case tt.wantLog != "" && (lines != 1 || !strings.Contains(logs.String(), tt.wantLog)):
				t.Errorf("logged %q, want one line with %q", logs.String(), tt.wantLog)
			}
		})
	}
}

func TestOffloadModeConfig(t *testing.T) {
	for _, tt := range []struct {
		value   string
		want    offloadMode
		wantErr bool
	}{
		{"", offloadAuto, false}, // unset or empty: the default
		{"auto", offloadAuto, false},
		{"OFF", offloadOff, false},
		{" require ", offloadRequire, false},
		{"on", "", true},
		{"yes", "", true},
	} {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := parseConfigMap(map[string]string{"SWITCHBOARD_RELAY_OFFLOAD": tt.value})
			if tt.wantErr {
				var ce *configError
				if !errors.As(err, &ce) || ce.Var != "SWITCHBOARD_RELAY_OFFLOAD" || !strings.Contains(ce.Msg, "want auto, off or require") {
					t.Fatalf("parse %q = %v, want an error naming SWITCHBOARD_RELAY_OFFLOAD", tt.value, err)
				}
				return
			}
			if err != nil || cfg.RelayOffload != tt.want {
				t.Fatalf("parse %q = %q, %v, want %q", tt.value, cfg.RelayOffload, err, tt.want)
			}
		})
	}
}
