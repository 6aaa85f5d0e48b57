package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/relay/offload"
)

// offloadMode is SWITCHBOARD_RELAY_OFFLOAD: whether relayed UDP takes the kernel fast
// path (relay/offload, eBPF).
type offloadMode string

const (
	offloadAuto    offloadMode = "auto"    // use it when it loads, say why not otherwise
	offloadOff     offloadMode = "off"     // user space only
	offloadRequire offloadMode = "require" // refuse to start without it
)

func (m *offloadMode) UnmarshalText(b []byte) error {
	switch v := offloadMode(strings.ToLower(strings.TrimSpace(string(b)))); v {
	case offloadAuto, offloadOff, offloadRequire:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want auto, off or require", b)
}

// attachFunc loads the fast path: attachOffload in production, fakes in tests.
type attachFunc func(offload.Config) (relay.Offloader, error)

func attachOffload(cfg offload.Config) (relay.Offloader, error) {
	o, err := offload.Attach(cfg)
	if err != nil {
		return nil, err // a typed nil *Offloader must not become a non-nil interface
	}
	return o, nil
}

// offloadCaps is what the fast path needs, in the words of the error and the README.
const offloadCaps = "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root)"

// relayOffload turns the mode into relay.Config.Offload (nil: the user-space path) and
// the banner's words for the path in use. In auto mode a fast path that does not load
// costs one log line; in require mode it stops start-up with one line naming the
// variable. turnAddr picks the interfaces: a loopback listener (and so loopback relay
// sockets) needs only lo; any other address, every interface that can carry traffic.
func relayOffload(mode offloadMode, turnAddr string, attach attachFunc, log *slog.Logger) (relay.Offloader, string, error) {
	if mode == offloadOff {
		return nil, "user space (" + envPrefix + "RELAY_OFFLOAD=off)", nil
	}
	var cfg offload.Config
	if host, _, err := net.SplitHostPort(turnAddr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			cfg.Interfaces = []string{loopbackName()}
		}
	}
	o, err := attach(cfg)
	if err != nil {
		why := oneLine(err.Error())
		if errors.Is(err, os.ErrPermission) {
			why += "; it needs " + offloadCaps
		}
		if mode == offloadRequire {
			return nil, "", badVar("RELAY_OFFLOAD", "require: the kernel fast path did not load: %s", why)
		}
		log.Warn("relay fast path unavailable, relaying in user space", "reason", why)
		return nil, "user space (kernel fast path unavailable: " + why + ")", nil
	}
	how := "kernel fast path (eBPF)"
	if ifs, ok := o.(interface{ Interfaces() []string }); ok {
		how = "kernel fast path (eBPF on " + strings.Join(ifs.Interfaces(), ", ") + "), user space for the rest"
	}
	if st, ok := o.(statser); ok {
		o = &loggedOffloader{Offloader: o, stats: st, log: log}
	}
	return o, how, nil
}

// statser is the fast path's own counters (offload.Offloader has them).
type statser interface{ Stats() (offload.Stats, error) }

// loggedOffloader logs, when the relay closes it, what the fast path forwarded and
// what it left to user space and why: the one place an operator sees whether it
// carried the traffic.
type loggedOffloader struct {
	relay.Offloader
	stats statser
	log   *slog.Logger
}

func (l *loggedOffloader) Close() error {
	if st, err := l.stats.Stats(); err == nil {
		l.log.Info("relay fast path stopped", "to_peer", st.ToPeer, "to_client", st.ToClient,
			"passed_length", st.Length, "passed_route", st.Route, "passed_checksum", st.Checksum, "passed_resize", st.Resize)
	}
	return l.Offloader.Close()
}

// loopbackName is the loopback interface's name ("lo" on Linux).
func loopbackName() string {
	ifs, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagLoopback != 0 {
				return ifc.Name
			}
		}
	}
	return "lo"
}
