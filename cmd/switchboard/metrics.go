package main

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// collector turns relay.Server.Stats and signaling.Hub.Stats snapshots into
// Prometheus metrics at scrape time. Labels are only bounded enums (reason,
// direction), never usernames or peer ids: REST usernames are ephemeral and
// a label per user would grow the registry without bound.
type collector struct {
	a *app

	ready, buildInfo                                              *prometheus.Desc
	sessions, rooms, calls                                        *prometheus.Desc
	messagesIn, messagesOut, rateLimited, authRefused, credIssued *prometheus.Desc
	allocActive, allocCreated, allocRefused, turnAuthFail         *prometheus.Desc
	permRefused, packets, bytes                                   *prometheus.Desc
	detached, connections, resumed, undeliverable, slowConsumers  *prometheus.Desc
	originRefused, pendingRefused, disconnects                    *prometheus.Desc
	tokensRenewed, staleResumes                                   *prometheus.Desc
}

func newCollector(a *app) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchboard_"+name, help, labels, nil)
	}
	return &collector{
		a:            a,
		ready:        d("ready", "1 while listeners are up and the server is not draining."),
		buildInfo:    d("build_info", "Always 1; the version label says which build runs.", "version"),
		sessions:     d("signaling_sessions", "Signaling sessions, connected or within their resume grace."),
		rooms:        d("signaling_rooms", "Rooms with at least one member."),
		calls:        d("signaling_calls", "Calls ringing or in progress."),
		messagesIn:   d("signaling_messages_received_total", "Signaling messages received from clients."),
		messagesOut:  d("signaling_messages_sent_total", "Signaling messages sent to clients."),
		rateLimited:  d("signaling_rate_limited_total", "Signaling messages or credential requests refused by a rate limit."),
		authRefused:  d("signaling_auth_refused_total", "Signaling hellos or ice-server requests refused for a missing or bad token or origin."),
		credIssued:   d("credentials_issued_total", "TURN credentials handed out by the hub (welcome, refresh, /api/ice-servers)."),
		allocActive:  d("turn_allocations", "Active TURN allocations."),
		allocCreated: d("turn_allocations_created_total", "TURN allocations created."),
		allocRefused: d("turn_allocations_refused_total", "TURN allocations refused, by reason.", "reason"),
		turnAuthFail: d("turn_auth_failures_total", "TURN requests refused for their credentials, by reason.", "reason"),
		permRefused:  d("turn_permissions_refused_total", "TURN permissions or channel binds refused by the peer address policy."),
		packets:      d("turn_relayed_packets_total", "Packets relayed, by direction (to_peer: client to peer; from_peer: peer to client).", "direction"),
		bytes:        d("turn_relayed_bytes_total", "Payload bytes relayed, by direction.", "direction"),

		detached:       d("signaling_sessions_detached", "Signaling sessions whose link dropped, waiting in their resume grace."),
		connections:    d("signaling_connections", "Open WebSocket connections, including those before hello."),
		resumed:        d("signaling_resumes_total", "Sessions resumed after a dropped link."),
		undeliverable:  d("signaling_undeliverable_total", "Messages that could not be delivered (their sender got an error)."),
		slowConsumers:  d("signaling_slow_consumers_total", "Links closed because the client did not read fast enough."),
		originRefused:  d("signaling_origin_refused_total", "WebSocket upgrades refused for their Origin or a bad handshake."),
		pendingRefused: d("signaling_pending_refused_total", "WebSocket upgrades refused (HTTP 429) because the client address already had too many sockets waiting for their hello."),
		disconnects:    d("signaling_disconnects_total", "WebSocket links closed, by reason.", "reason"),
		tokensRenewed:  d("signaling_tokens_renewed_total", "Sign-in tokens renewed over the WebSocket before they expired."),
		staleResumes:   d("signaling_stale_resumes_total", "Resumes refused (close 4001) as older than one already accepted (hello.attempt)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.ready, c.buildInfo, c.sessions, c.rooms, c.calls, c.messagesIn, c.messagesOut,
		c.rateLimited, c.authRefused, c.credIssued, c.allocActive, c.allocCreated,
		c.allocRefused, c.turnAuthFail, c.permRefused, c.packets, c.bytes,
		c.detached, c.connections, c.resumed, c.undeliverable, c.slowConsumers,
		c.originRefused, c.pendingRefused, c.disconnects, c.tokensRenewed, c.staleResumes,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	ready := 0.0
	if c.a.ready.Load() {
		ready = 1
	}
	gauge(c.ready, ready)
	gauge(c.buildInfo, 1, version())

	hs := c.a.hub.Stats()
	gauge(c.sessions, float64(hs.Sessions))
	gauge(c.rooms, float64(hs.Rooms))
	gauge(c.calls, float64(hs.Calls))
	counter(c.messagesIn, float64(hs.MessagesIn))
	counter(c.messagesOut, float64(hs.MessagesOut))
	counter(c.rateLimited, float64(hs.RateLimited))
	counter(c.authRefused, float64(hs.AuthRefused))
	counter(c.credIssued, float64(hs.CredentialsIssued))
	gauge(c.detached, float64(hs.Detached))
	gauge(c.connections, float64(hs.Connections))
	counter(c.resumed, float64(hs.Resumed))
	counter(c.undeliverable, float64(hs.Undeliverable))
	counter(c.slowConsumers, float64(hs.SlowConsumers))
	counter(c.originRefused, float64(hs.OriginRefused))
	counter(c.pendingRefused, float64(hs.PendingRefused))
	counter(c.tokensRenewed, float64(hs.TokensRenewed))
	counter(c.staleResumes, float64(hs.StaleResumes))
	for _, r := range slices.Sorted(maps.Keys(hs.Disconnects)) {
		counter(c.disconnects, float64(hs.Disconnects[r]), r)
	}

	st := c.a.started.Load()
	if st == nil {
		return // relay not listening yet: no TURN series rather than fake zeros
	}
	rs := st.relay.Stats()
	gauge(c.allocActive, float64(rs.AllocationsActive))
	counter(c.allocCreated, float64(rs.AllocationsCreated))
	for _, r := range slices.Sorted(maps.Keys(rs.AllocationsRefused)) {
		counter(c.allocRefused, float64(rs.AllocationsRefused[r]), r)
	}
	for _, r := range slices.Sorted(maps.Keys(rs.AuthFailures)) {
		counter(c.turnAuthFail, float64(rs.AuthFailures[r]), r)
	}
	counter(c.permRefused, float64(rs.PermissionsRefused))
	counter(c.packets, float64(rs.PacketsToPeer), "to_peer")
	counter(c.packets, float64(rs.PacketsFromPeer), "from_peer")
	counter(c.bytes, float64(rs.BytesToPeer), "to_peer")
	counter(c.bytes, float64(rs.BytesFromPeer), "from_peer")
}
