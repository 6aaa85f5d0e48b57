package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rtc/switchboard/signaling"
	"github.com/switchboard-rtc/switchboard/signaling/natsrouter"
)

// clusterMode is SWITCHBOARD_CLUSTER.
type clusterMode string

const (
	clusterOff      clusterMode = "off"      // one node, the in-process router
	clusterEmbedded clusterMode = "embedded" // a NATS server in each node
	clusterExternal clusterMode = "external" // the operator's NATS
)

func (m *clusterMode) UnmarshalText(b []byte) error {
	switch v := clusterMode(strings.ToLower(strings.TrimSpace(string(b)))); v {
	case clusterOff, clusterEmbedded, clusterExternal:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want off, embedded or external", b)
}

// minClusterSecret is the shortest SWITCHBOARD_CLUSTER_SECRET accepted.
const minClusterSecret = 16

// validateCluster checks the cluster settings (nothing when the mode is off)
// and fills NODE_NAME from the host name.
func (c *Config) validateCluster() error {
	if c.ClusterMode == "" || c.ClusterMode == clusterOff {
		if c.ClusterTURNBackup {
			return badVar("CLUSTER_TURN_BACKUP", "needs SWITCHBOARD_CLUSTER=embedded or external: there is no other node's relay on one node")
		}
		return nil
	}
	mode := "in cluster mode (SWITCHBOARD_CLUSTER=" + string(c.ClusterMode) + ")"
	if len(c.TURNSecrets) == 0 {
		return badVar("TURN_SECRET", "required %s: every node must verify the TURN credentials the others mint, so set the same secret on every node", mode)
	}
	if len(c.ClusterSecret) < minClusterSecret {
		return badVar("CLUSTER_SECRET", "required %s, at least %d characters, the same on every node", mode, minClusterSecret)
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return badVar("NODE_NAME", "not set, and the host name is unknown (%v)", err)
		}
		c.NodeName = strings.ReplaceAll(h, ".", "-")
	}
	if !natsrouter.ValidName(c.NodeName) {
		return badVar("NODE_NAME", "%q: use letters, digits, - and _ (at most 64)", c.NodeName)
	}
	if !natsrouter.ValidName(c.ClusterName) {
		return badVar("CLUSTER_NAME", "%q: use letters, digits, - and _ (at most 64)", c.ClusterName)
	}
	switch c.ClusterMode {
	case clusterEmbedded:
		if err := checkAddr(c.ClusterListen); err != nil {
			return badVar("CLUSTER_LISTEN", "%v", err)
		}
		if c.ClusterAdvertise != "" {
			if err := checkAddr(c.ClusterAdvertise); err != nil {
				return badVar("CLUSTER_ADVERTISE", "%v", err)
			}
		}
		if len(c.ClusterRoutes) == 0 {
			return badVar("CLUSTER_ROUTES", "required with SWITCHBOARD_CLUSTER=embedded: every node's nats://host:port, this one's included")
		}
		if _, err := parseRoutes(c.ClusterRoutes); err != nil {
			return badVar("CLUSTER_ROUTES", "%v", err)
		}
	case clusterExternal:
		if c.NATSURL == "" {
			return badVar("NATS_URL", "required with SWITCHBOARD_CLUSTER=external")
		}
		for _, s := range splitList(string(c.NATSURL)) {
			u, err := url.Parse(s)
			if err != nil || u.Host == "" {
				return badVar("NATS_URL", "a URL is not nats://host:port") // the value may hold a password: not repeated
			}
			switch u.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				return badVar("NATS_URL", "scheme %q: want nats, tls, ws or wss", u.Scheme)
			}
		}
	}
	return nil
}

// parseRoutes reads CLUSTER_ROUTES: nats://host:port URLs with nothing else.
func parseRoutes(list []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range list {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("a route is not a URL: want nats://host:port")
		}
		shown := u.Redacted() // never repeat a password
		switch {
		case u.Scheme != "nats":
			return nil, fmt.Errorf("%q: want nats://host:port", shown)
		case u.User != nil:
			return nil, fmt.Errorf("%q: no credentials in routes, CLUSTER_SECRET authenticates them", shown)
		case u.Path != "" || u.RawQuery != "" || u.Port() == "" || u.Hostname() == "":
			return nil, fmt.Errorf("%q: want nats://host:port", shown)
		}
		out = append(out, u)
	}
	return out, nil
}

// clusterNode is this process's part of the cluster: its NATS (embedded or a
// connection) and the router the hub uses.
type clusterNode struct {
	emb    *natsrouter.Embedded // nil: external
	nc     *nats.Conn
	router *natsrouter.Router
	how    string // for the start-up log
}

// startCluster connects this node to its cluster (nil when the mode is off:
// the hub keeps its in-process router and nothing listens). It binds the
// route listener in embedded mode: the hub is built on its router.
func startCluster(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*clusterNode, error) {
	if cfg.ClusterMode == "" || cfg.ClusterMode == clusterOff {
		return nil, nil
	}
	log = log.With("component", "cluster")
	n := &clusterNode{}
	switch cfg.ClusterMode {
	case clusterEmbedded:
		routes, err := parseRoutes(cfg.ClusterRoutes)
		if err != nil {
			return nil, badVar("CLUSTER_ROUTES", "%v", err)
		}
		emb, err := natsrouter.StartEmbedded(natsrouter.EmbeddedConfig{
			Cluster: cfg.ClusterName, Node: cfg.NodeName, Listen: cfg.ClusterListen, Routes: routes,
			Advertise: cfg.ClusterAdvertise, Secret: string(cfg.ClusterSecret), Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		n.emb, n.nc = emb, emb.Conn
		n.how = fmt.Sprintf("embedded NATS, routes on %s, peers %s", emb.ClusterAddr(), strings.Join(cfg.ClusterRoutes, ","))
	case clusterExternal:
		nc, err := connectExternal(cfg, log) // cluster_nats.go: creds, TLS
		if err != nil {
			return nil, err
		}
		n.nc = nc
		n.how = "external NATS at " + nc.ConnectedUrlRedacted()
	}
	marks := map[string][]byte{
		envPrefix + "TURN_SECRET": []byte(strings.Join(cfg.TURNSecrets.strings(), ",")),
		envPrefix + "AUTH_SECRET": []byte(cfg.AuthSecret),
	}
	r, err := natsrouter.New(n.nc, natsrouter.Options{Cluster: cfg.ClusterName, Node: cfg.NodeName,
		Secret: []byte(cfg.ClusterSecret), Marks: marks, Logger: log})
	if err != nil {
		n.closeNATS()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.router = r
	if reg != nil {
		reg.MustRegister(clusterCollector{n})
	}
	log.Info("cluster mode", "node", cfg.NodeName, "cluster", cfg.ClusterName, "via", n.how)
	return n, nil
}

// waitPeers waits until n peers are linked (tests; an operator watches /metrics).
func (n *clusterNode) waitPeers(ctx context.Context, peers int) error {
	return n.router.WaitPeers(ctx, peers)
}

// close leaves the cluster: the router, then NATS. After the hub has closed.
func (n *clusterNode) close() {
	if n == nil {
		return
	}
	n.router.Close()
	n.closeNATS()
}

func (n *clusterNode) closeNATS() {
	if n.emb != nil {
		n.emb.Close()
		return
	}
	n.nc.Close()
}

// clusterCollector exports the cluster's counters on /metrics.
type clusterCollector struct{ n *clusterNode }

var clusterDescs = struct {
	peers, seen, refused, gone, out, in, bad, reconnects, handIn, handOut, adopted, fences, fenced *prometheus.Desc
}{
	handIn:     prometheus.NewDesc("switchboard_cluster_handoffs_in_total", "Sessions taken over from another node for a resume here.", nil, nil),
	handOut:    prometheus.NewDesc("switchboard_cluster_handoffs_out_total", "Sessions handed to another node for a resume there.", nil, nil),
	adopted:    prometheus.NewDesc("switchboard_cluster_adopted_total", "Sessions of dead nodes adopted here from their kept state.", nil, nil),
	fences:     prometheus.NewDesc("switchboard_cluster_fences_total", "Times this node fenced itself off for losing the cluster's majority.", nil, nil),
	fenced:     prometheus.NewDesc("switchboard_cluster_fenced", "1 while this node is fenced off (cut off from the majority: /readyz 503).", nil, nil),
	peers:      prometheus.NewDesc("switchboard_cluster_peers", "Other nodes linked to this one now.", nil, nil),
	seen:       prometheus.NewDesc("switchboard_cluster_nodes_seen_total", "Peer nodes (incarnations) linked since start.", nil, nil),
	refused:    prometheus.NewDesc("switchboard_cluster_nodes_refused_total", "Peer nodes refused because a shared secret differs.", nil, nil),
	gone:       prometheus.NewDesc("switchboard_cluster_nodes_gone_total", "Peer nodes declared dead after missing heartbeats.", nil, nil),
	out:        prometheus.NewDesc("switchboard_cluster_routed_out_total", "Envelopes sent to other nodes (bounces included).", nil, nil),
	in:         prometheus.NewDesc("switchboard_cluster_routed_in_total", "Envelopes received from other nodes.", nil, nil),
	bad:        prometheus.NewDesc("switchboard_cluster_bad_frames_total", "Undecodable messages from the cluster, dropped.", nil, nil),
	reconnects: prometheus.NewDesc("switchboard_cluster_nats_reconnects_total", "Reconnections of this node's NATS connection.", nil, nil),
}

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterDescs.peers, clusterDescs.seen, clusterDescs.refused, clusterDescs.gone,
		clusterDescs.out, clusterDescs.in, clusterDescs.bad, clusterDescs.reconnects, clusterDescs.handIn,
		clusterDescs.handOut, clusterDescs.adopted, clusterDescs.fences, clusterDescs.fenced} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.router.Stats()
	ch <- prometheus.MustNewConstMetric(clusterDescs.peers, prometheus.GaugeValue, float64(st.Peers))
	fenced := 0.0
	if st.Fenced {
		fenced = 1
	}
	ch <- prometheus.MustNewConstMetric(clusterDescs.fenced, prometheus.GaugeValue, fenced)
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{
		{clusterDescs.seen, st.NodesSeen}, {clusterDescs.refused, st.Refused}, {clusterDescs.gone, st.Gone},
		{clusterDescs.out, st.Out}, {clusterDescs.in, st.In}, {clusterDescs.bad, st.Bad},
		{clusterDescs.reconnects, c.n.nc.Stats().Reconnects},
		{clusterDescs.handIn, st.Claimed}, {clusterDescs.handOut, st.HandedOff}, {clusterDescs.adopted, st.Adopted},
		{clusterDescs.fences, st.Fences},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
}

// infoTURN is the key of a node's TURN URLs in its heartbeats' info.
const infoTURN = "turn"

// announceRelay tells the other nodes the TURN URLs of this node's relay
// (for their CLUSTER_TURN_BACKUP).
func (n *clusterNode) announceRelay(ep iceEndpoints) {
	if n == nil {
		return
	}
	_, turn := ep.urls()
	n.router.SetInfo(map[string]string{infoTURN: strings.Join(turn, " ")})
}

// backupTURN picks the relay of one linked peer for session id (rendezvous
// hashing: sessions spread over the peers, and one session keeps its backup
// while the set of nodes stands). Nil when no peer announced one.
func (n *clusterNode) backupTURN(id string) []string {
	if n == nil {
		return nil
	}
	var best string
	var bh uint64
	infos := n.router.PeerInfo()
	for name, info := range infos {
		if info[infoTURN] == "" {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(id + "\x00" + name))
		if v := h.Sum64(); best == "" || v > bh || v == bh && name < best {
			best, bh = name, v
		}
	}
	if best == "" {
		return nil
	}
	return strings.Fields(infos[best][infoTURN])
}

// fenced reports whether this node cut itself off for losing the cluster's
// majority (never on one node).
func (n *clusterNode) fenced() bool { return n != nil && n.router.Fenced() }

// handOverTimeout bounds how long a stopping node waits for its clients to
// resume on the other nodes (each resume takes its session along, with every
// message). What is left then is adopted from its kept state.
const handOverTimeout = 10 * time.Second

// handOver, in cluster mode, keeps the stopping node up while its clients
// (cut with 1012 by the hub's Shutdown) resume elsewhere and claim their
// sessions, so that a rolling restart loses nothing.
func (a *app) handOver(ctx context.Context) {
	if a.cluster == nil {
		return
	}
	left := a.hub.Stats().Sessions
	if left == 0 {
		return
	}
	a.log.Info("handing sessions over to the other nodes", "sessions", left, "timeout", handOverTimeout)
	ctx, cancel := context.WithTimeout(ctx, handOverTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for left > 0 {
		select {
		case <-ctx.Done():
			a.log.Info("sessions not resumed elsewhere in time; the other nodes adopt them", "sessions", left)
			return
		case <-t.C:
			left = a.hub.Stats().Sessions
		}
	}
	a.log.Info("every session resumed on another node")
}

// hubRouter is the router for signaling.Config: nil (in-process) when off.
func (n *clusterNode) hubRouter() signaling.Router {
	if n == nil {
		return nil
	}
	return n.router
}
