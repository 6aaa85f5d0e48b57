package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/proc"
	"github.com/switchboard-rtc/switchboard/cmd/switchboard/internal/scrape"
	"github.com/switchboard-rtc/switchboard/signaling/loadgen"
)

// linkTimeout bounds the wait for every node to see all the others. The
// nodes link within a second or two on loopback; a minute leaves room for a
// loaded machine and still ends a run whose cluster never forms.
const linkTimeout = time.Minute

// clusterStopTimeout is how long a cluster node gets after SIGTERM.
const clusterStopTimeout = 3 * time.Second

// startSignalingCluster starts n `switchboard serve` processes on 127.0.0.1
// as one embedded cluster (each its own HTTP and route port; one auth, TURN
// and cluster secret for all) and returns once every node reports n-1 linked
// peers on /metrics.
func startSignalingCluster(ctx context.Context, cfg SignalingConfig, n int, logDir string) (target, error) {
	exe := cfg.Bin
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return target{}, fmt.Errorf("find this binary: %w", err)
		}
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return target{}, err
	}
	httpAddrs, routeAddrs := make([]string, n), make([]string, n)
	routes := make([]string, n)
	for i := range n {
		httpAddrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i]))
		routeAddrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1]))
		routes[i] = "nats://" + routeAddrs[i]
	}
	authSecret, turnSecret, clusterSecret := randomHex(32), randomHex(16), randomHex(16)
	t := target{
		name: "switchboard", proto: loadgen.Switchboard, token: tokens([]byte(authSecret)),
		note: fmt.Sprintf("started %d × `%s serve` with SWITCHBOARD_CLUSTER=embedded (routes %s), SWITCHBOARD_PING_INTERVAL=%v, AUTH_SECRET set, RELAY_OFFLOAD=off",
			n, filepath.Base(exe), strings.Join(routes, ","), cfg.PingInterval),
	}
	if len(cfg.ServerEnv) > 0 {
		t.note += ", " + strings.Join(cfg.ServerEnv, " ")
	}
	for i := range n {
		name := "node" + strconv.Itoa(i+1)
		env := append(switchboardEnv(cfg, httpAddrs[i], authSecret, turnSecret),
			"SWITCHBOARD_CLUSTER=embedded",
			"SWITCHBOARD_NODE_NAME="+name,
			"SWITCHBOARD_CLUSTER_LISTEN="+routeAddrs[i],
			"SWITCHBOARD_CLUSTER_ROUTES="+strings.Join(routes, ","),
			"SWITCHBOARD_CLUSTER_SECRET="+clusterSecret,
			// Signaling only: no node needs the relay's kernel fast path, and
			// n processes would each load it on the same machine.
			"SWITCHBOARD_RELAY_OFFLOAD=off",
		)
		p, err := proc.Start(ctx, proc.Config{
			Name:  name,
			Path:  exe,
			Args:  []string{"serve"},
			Env:   append(env, cfg.ServerEnv...),
			Log:   filepath.Join(logDir, "switchboard-"+name+".log"),
			Ready: proc.HTTPReady("http://" + httpAddrs[i] + "/readyz"),
			// A stopping node waits up to 10 s for its sessions to resume on
			// the others (a rolling restart loses nothing); the bench's
			// clients are gone by then, so that wait is dead time. 3 s is
			// above the 1 s drain, then SIGKILL.
			StopTimeout: clusterStopTimeout,
		})
		if err != nil {
			t.stop()
			return target{}, err
		}
		t.nodes = append(t.nodes, node{
			name: name, wsURL: "ws://" + httpAddrs[i] + "/ws", metricsURL: "http://" + httpAddrs[i] + "/metrics",
			pid: p.PID(), proc: p,
		})
	}
	if err := waitLinked(ctx, t, linkTimeout); err != nil {
		t.stop()
		return target{}, err
	}
	return t, nil
}

// freePorts returns k distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(k int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < k; tries++ {
		if tries > 10*k {
			return nil, errors.New("bench: no distinct free ports on 127.0.0.1")
		}
		p, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// clusterPeersMetric is the gauge of the other nodes linked to a node.
const clusterPeersMetric = "switchboard_cluster_peers"

// waitLinked polls every node's /metrics until each one reports all the
// others as linked, bounded by timeout; the error names the nodes that are
// not there yet.
func waitLinked(ctx context.Context, t target, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := float64(len(t.nodes) - 1)
	for {
		var short []string
		for _, n := range t.nodes {
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := scrape.Get(sctx, n.metricsURL, func(name string) bool { return name == clusterPeersMetric })
			scancel()
			switch {
			case err != nil:
				short = append(short, fmt.Sprintf("%s: %v", n.name, err))
			case m[clusterPeersMetric] != want:
				short = append(short, fmt.Sprintf("%s sees %.0f of %.0f peers", n.name, m[clusterPeersMetric], want))
			}
		}
		if len(short) == 0 {
			return nil
		}
		if err := t.alive(); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("cluster not linked after %v: %s", timeout, strings.Join(short, "; "))
		}
	}
}
