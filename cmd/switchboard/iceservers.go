package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/switchboard-rtc/switchboard/relay"
	"github.com/switchboard-rtc/switchboard/signaling"
)

// iceEndpoints is what clients are told to dial: the advertised hosts and
// the ports each transport listens on. Behind a NAT the router forwards the
// same port numbers, so the bound ports are the public ones.
type iceEndpoints struct {
	Host      netip.Addr // advertised public IP for stun:/turn:
	Host6     netip.Addr // advertised IPv6 (SWITCHBOARD_PUBLIC_IPV6); zero: none
	UDPPort   int        // STUN and TURN over UDP
	TCPPort   int        // TURN over TCP (equal to UDPPort unless bound to :0)
	TLSDomain string     // name on the certificate, for turns:; empty: Host
	TLSPorts  []int
}

// urls builds the STUN URLs and the TURN URLs (udp, tcp, then every TLS
// port) in the RTCConfiguration form browsers accept.
func (e iceEndpoints) urls() (stun, turn []string) {
	for _, h := range []netip.Addr{e.Host, e.Host6} {
		if !h.IsValid() {
			continue
		}
		udp := net.JoinHostPort(h.String(), strconv.Itoa(e.UDPPort))
		stun = append(stun, "stun:"+udp)
		turn = append(turn,
			"turn:"+udp+"?transport=udp",
			"turn:"+net.JoinHostPort(h.String(), strconv.Itoa(e.TCPPort))+"?transport=tcp",
		)
	}
	name := e.TLSDomain
	if name == "" {
		name = e.Host.String()
	}
	for _, p := range e.TLSPorts {
		turn = append(turn, "turns:"+net.JoinHostPort(name, strconv.Itoa(p))+"?transport=tcp")
	}
	return stun, turn
}

// servers returns the iceServers list for one credential: STUN without
// credentials (Binding needs none) and TURN with them.
func (e iceEndpoints) servers(c relay.Credential) []signaling.ICEServer {
	stun, turn := e.urls()
	return []signaling.ICEServer{
		{URLs: stun},
		{URLs: turn, Username: c.Username, Credential: c.Password},
	}
}

// iceProvider implements signaling.ICEProvider with the relay's REST
// credentials. It is built before the relay exists (the hub is constructed
// in newApp, the relay in start), so it reads both through the app.
type iceProvider struct {
	a *app
}

var errRelayNotStarted = errors.New("switchboard: relay not started")

func (p iceProvider) ICEServers(_ context.Context, user string) ([]signaling.ICEServer, time.Time, error) {
	st := p.a.started.Load()
	if st == nil {
		return nil, time.Time{}, errRelayNotStarted
	}
	c := st.relay.Mint(user, p.a.cfg.CredentialTTL)
	servers := st.endpoints.servers(c)
	if p.a.cfg.ClusterTURNBackup {
		if urls := p.a.cluster.backupTURN(user); len(urls) > 0 {
			servers = append(servers, signaling.ICEServer{URLs: urls, Username: c.Username, Credential: c.Password})
		}
	}
	return servers, c.Expires, nil
}

// portOf returns the port of a bound address (0 if it has none).
func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.Port
	case *net.TCPAddr:
		return a.Port
	case nil:
		return 0
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0
	}
	return int(ap.Port())
}

// configuredPort returns the port of a configured listen address.
func configuredPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
