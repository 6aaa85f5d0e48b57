package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The cluster's deploy files: two compose files (embedded NATS, and NATS
// servers of their own), one env file the three nodes share, the Caddy load
// balancer's config and the NATS servers' config. The tests load them the
// way `docker compose --env-file deploy/cluster.env` does and run every
// node's environment through the server's own validation. No Docker needed.

var clusterNodes = []string{"node1", "node2", "node3"}

// clusterSecretVars are left empty in cluster.env.example for the operator
// to fill; the nodes must share them.
var clusterSecretVars = []string{"SWITCHBOARD_TURN_SECRET", "SWITCHBOARD_CLUSTER_SECRET", "SWITCHBOARD_AUTH_SECRET", "NATS_PASSWORD"}

// filledClusterEnv is cluster.env.example with its secrets filled in, as
// the operator's first step makes it (openssl rand -hex 32 each).
func filledClusterEnv(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "cluster.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, k := range clusterSecretVars {
		var b [32]byte
		rand.Read(b[:])
		re := regexp.MustCompile(`(?m)^` + k + `=$`)
		if !re.MatchString(s) {
			t.Fatalf("cluster.env.example has no empty %s= line to fill", k)
		}
		s = re.ReplaceAllString(s, k+"="+hex.EncodeToString(b[:]))
	}
	return s
}

// loadCluster loads a cluster compose file from a copy of deploy/ whose
// cluster.env is envText, with that file also as Compose's --env-file.
func loadCluster(t *testing.T, file, envText string) (*types.Project, map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{file, "Caddyfile", "nats-cluster.conf"} {
		copyFile(t, filepath.Join(deployDir, f), filepath.Join(dir, f))
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.env"), []byte(envText), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile, err := dotenv.Parse(strings.NewReader(envText))
	if err != nil {
		t.Fatalf("cluster.env: %v", err)
	}
	content, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, file), Content: content}},
		Environment: types.Mapping(envFile),
	}) // the project name is the file's own (name:)
	return p, envFile, err
}

func TestClusterEnvExample(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, "cluster.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := dotenv.Parse(f)
	if err != nil {
		t.Fatalf("cluster.env.example: %v", err)
	}
	known := map[string]bool{"NATS_PASSWORD": true} // read by Compose for the NATS servers
	for _, v := range configVars() {
		known[v.Name] = true
	}
	for k := range m {
		if !known[k] {
			t.Errorf("cluster.env.example sets %s, which Config does not have", k)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(deployDir, "cluster.env.example"))
	for _, name := range regexp.MustCompile(`(?m)^#\s*(SWITCHBOARD_[A-Z0-9_]+)=`).FindAllStringSubmatch(string(raw), -1) {
		if !known[name[1]] {
			t.Errorf("cluster.env.example mentions %s, which Config does not have", name[1])
		}
	}
	for _, k := range append(slices.Clone(clusterSecretVars), "SWITCHBOARD_PUBLIC_IP", "SWITCHBOARD_DOMAIN", "SWITCHBOARD_PUBLIC_URL") {
		if _, ok := m[k]; !ok {
			t.Errorf("cluster.env.example does not set %s", k)
		}
	}
	// What holds secrets must stay out of the image's build context.
	if pats := dockerignorePatterns(t); !dockerExcluded(pats, "deploy/cluster.env") {
		t.Error(".dockerignore lets deploy/cluster.env (the cluster's secrets) into the build context")
	}
}

// TestClusterComposeUnfilled: as shipped, with the secrets still empty, the
// nodes refuse to start naming the first missing one, and the NATS variant
// does not even load without NATS_PASSWORD.
func TestClusterComposeUnfilled(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(deployDir, "cluster.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := loadCluster(t, "docker-compose.cluster.yml", string(raw))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := p.GetService("node1")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range svc.Environment {
		if strings.HasPrefix(k, envPrefix) && v != nil {
			env[k] = *v
		}
	}
	_, err = parseConfigMap(env)
	wantVarError(t, err, "SWITCHBOARD_TURN_SECRET")

	if _, _, err := loadCluster(t, "docker-compose.cluster-nats.yml", string(raw)); err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD") {
		t.Errorf("NATS variant with an empty NATS_PASSWORD: load error %v, want one naming NATS_PASSWORD", err)
	}
}

func TestClusterCompose(t *testing.T) {
	for _, file := range []string{"docker-compose.cluster.yml", "docker-compose.cluster-nats.yml"} {
		t.Run(file, func(t *testing.T) {
			p, envFile, err := loadCluster(t, file, filledClusterEnv(t))
			if err != nil {
				t.Fatalf("compose file %s is invalid: %v", file, err)
			}
			external := strings.Contains(file, "nats")
			cfgs := map[string]Config{}
			envs := map[string]map[string]string{}
			for _, name := range clusterNodes {
				svc, err := p.GetService(name)
				if err != nil {
					t.Fatal(err)
				}
				envs[name] = checkServiceEnv(t, svc) // known variables, passes validation
				cfg, err := parseConfigMap(envs[name])
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				cfgs[name] = cfg
				checkClusterNode(t, svc, cfg, external)
			}

			// The secrets come from the one env file, not from the compose
			// file, and so are the same on every node.
			for _, k := range clusterSecretVars {
				if strings.HasPrefix(k, envPrefix) {
					for _, name := range clusterNodes {
						if envs[name][k] != envFile[k] {
							t.Errorf("%s: %s is not the env file's", name, k)
						}
					}
				}
			}
			raw, _ := os.ReadFile(filepath.Join(deployDir, file))
			for _, k := range clusterSecretVars {
				// Only as ${K...}: interpolated from the env file.
				for _, m := range regexp.MustCompile(`(?m)^\s*`+k+`\s*[:=]\s*(\S*)`).FindAllStringSubmatch(string(raw), -1) {
					if !strings.HasPrefix(m[1], "${"+k) {
						t.Errorf("%s sets %s itself (%q): secrets belong in cluster.env", file, k, m[0])
					}
				}
			}

			if external {
				checkExternalNATS(t, p, cfgs)
			} else {
				checkEmbeddedRoutes(t, cfgs)
			}
			checkPorts(t, p)
			checkLoadBalancer(t, p, cfgs, envFile)
		})
	}
}

// checkClusterNode: a node is hardened like the single-node service, runs
// in the cluster under its service's name, and publishes its own TURN port
// and relay range one to one (the ports it advertises).
func checkClusterNode(t *testing.T, svc types.ServiceConfig, cfg Config, external bool) {
	t.Helper()
	want := clusterEmbedded
	if external {
		want = clusterExternal
	}
	if cfg.ClusterMode != want || cfg.NodeName != svc.Name {
		t.Errorf("%s: CLUSTER=%s NODE_NAME=%s, want %s and the service's name", svc.Name, cfg.ClusterMode, cfg.NodeName, want)
	}
	if svc.NetworkMode == "host" {
		t.Errorf("%s: host networking; the cluster files use a bridge network", svc.Name)
	}
	if svc.HealthCheck == nil || !strings.Contains(strings.Join(svc.HealthCheck.Test, " "), "healthcheck") {
		t.Errorf("%s: healthcheck = %+v, want switchboard healthcheck", svc.Name, svc.HealthCheck)
	}
	if svc.StopGracePeriod == nil || *svc.StopGracePeriod <= types.Duration(cfg.DrainTimeout) {
		t.Errorf("%s: stop_grace_period %v, want longer than DRAIN_TIMEOUT %s", svc.Name, svc.StopGracePeriod, cfg.DrainTimeout)
	}
	if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("%s: want read_only, cap_drop ALL and no-new-privileges like docker-compose.yml", svc.Name)
	}
	if !slices.ContainsFunc(svc.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/var/lib/switchboard" }) {
		t.Errorf("%s: no state volume on /var/lib/switchboard", svc.Name)
	}
	if !cfg.PublicIP.IsValid() {
		t.Errorf("%s: no SWITCHBOARD_PUBLIC_IP: in a container the node sees only its bridge address", svc.Name)
	}
	published := map[string]bool{}
	for _, pc := range svc.Ports {
		if pc.Published == strconv.Itoa(int(pc.Target)) {
			published[fmt.Sprintf("%s/%d", pc.Protocol, pc.Target)] = true
		}
	}
	turn := configuredPort(cfg.TURNAddr)
	for _, k := range []string{fmt.Sprintf("udp/%d", turn), fmt.Sprintf("tcp/%d", turn)} {
		if !published[k] {
			t.Errorf("%s: TURN_ADDR %s, but %s is not published one to one", svc.Name, cfg.TURNAddr, k)
		}
	}
	if n := int(cfg.RelayPorts.max) - int(cfg.RelayPorts.min) + 1; n > 200 {
		t.Errorf("%s: relay range %s has %d ports; docker publishes each through a rule, keep it small", svc.Name, cfg.RelayPorts, n)
	}
	for port := int(cfg.RelayPorts.min); port <= int(cfg.RelayPorts.max); port++ {
		if !published[fmt.Sprintf("udp/%d", port)] {
			t.Errorf("%s: relay port udp/%d of %s not published one to one", svc.Name, port, cfg.RelayPorts)
			break
		}
	}
	for _, pc := range svc.Ports {
		if int(pc.Target) == configuredPort(cfg.HTTPAddr) || (!external && int(pc.Target) == configuredPort(cfg.ClusterListen)) {
			t.Errorf("%s publishes %d/%s: the nodes' HTTP and routes stay behind the load balancer", svc.Name, pc.Target, pc.Protocol)
		}
	}
}

// checkEmbeddedRoutes: every node has the same route list, naming every
// node (itself included) at its route port, and advertises itself in it.
func checkEmbeddedRoutes(t *testing.T, cfgs map[string]Config) {
	t.Helper()
	first := cfgs[clusterNodes[0]].ClusterRoutes
	for _, name := range clusterNodes {
		cfg := cfgs[name]
		if !slices.Equal(cfg.ClusterRoutes, first) {
			t.Errorf("%s: CLUSTER_ROUTES %v differ from %s's %v", name, cfg.ClusterRoutes, clusterNodes[0], first)
		}
		self := net.JoinHostPort(name, strconv.Itoa(configuredPort(cfg.ClusterListen)))
		if !slices.Contains(cfg.ClusterRoutes, "nats://"+self) {
			t.Errorf("%s: CLUSTER_ROUTES %v lack its own nats://%s", name, cfg.ClusterRoutes, self)
		}
		if cfg.ClusterAdvertise != self {
			t.Errorf("%s: CLUSTER_ADVERTISE %q, want %q (the name the others reach it by)", name, cfg.ClusterAdvertise, self)
		}
	}
	if len(first) != len(clusterNodes) {
		t.Errorf("CLUSTER_ROUTES %v: want one route per node", first)
	}
}

// checkExternalNATS: the nodes share one NATS_URL naming every NATS
// server; the NATS servers' config, with each server's environment, has the
// same routes (all three, authenticated), and a server started from it
// accepts the nodes' user and password and refuses a wrong one.
func checkExternalNATS(t *testing.T, p *types.Project, cfgs map[string]Config) {
	t.Helper()
	natsNames := []string{"nats1", "nats2", "nats3"}
	url0 := string(cfgs[clusterNodes[0]].NATSURL)
	for _, name := range clusterNodes {
		if string(cfgs[name].NATSURL) != url0 {
			t.Errorf("%s: SWITCHBOARD_NATS_URL differs from %s's", name, clusterNodes[0])
		}
	}
	var hosts []string
	var user *url.Userinfo
	for _, s := range splitList(url0) {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, u.Hostname())
		user = u.User
	}
	if !slices.Equal(hosts, natsNames) {
		t.Errorf("SWITCHBOARD_NATS_URL names %v, want every NATS server %v", hosts, natsNames)
	}

	var firstRoutes []string
	var opts *server.Options
	for _, name := range natsNames {
		svc, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(svc.Image, "nats:") {
			t.Errorf("%s: image %q, want the official nats image", name, svc.Image)
		}
		for k, v := range svc.Environment {
			if v != nil {
				t.Setenv(k, *v) // the conf file's $VARs
			}
		}
		o, err := server.ProcessConfigFile(filepath.Join(deployDir, "nats-cluster.conf"))
		if err != nil {
			t.Fatalf("%s: nats-cluster.conf: %v", name, err)
		}
		var routes []string
		for _, r := range o.Routes {
			if pw, _ := r.User.Password(); r.User.Username() != o.Cluster.Username || pw != o.Cluster.Password || pw == "" {
				t.Errorf("%s: route %s does not carry the cluster's credentials", name, r.Redacted())
			}
			routes = append(routes, r.Hostname())
		}
		if firstRoutes == nil {
			firstRoutes = routes
		}
		if !slices.Equal(routes, natsNames) || !slices.Equal(routes, firstRoutes) {
			t.Errorf("%s: routes to %v, want every NATS server %v, the same on each", name, routes, natsNames)
		}
		if o.ServerName != name || len(svc.Ports) > 0 {
			t.Errorf("%s: server_name %q, %d published ports; want its service name and none", name, o.ServerName, len(svc.Ports))
		}
		opts = o
	}
	checkNATSImage(t, p)

	// One server from that config, on loopback without its routes: the
	// nodes' credentials get in, others do not.
	opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, 0, true, true
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	ns := startNATS(t, opts)
	pw, _ := user.Password()
	nc, err := nats.Connect("nats://"+ns.Addr().String(), nats.UserInfo(user.Username(), pw))
	if err != nil {
		t.Fatalf("the nodes' NATS_URL credentials do not get into a server run from nats-cluster.conf: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect("nats://"+ns.Addr().String(), nats.UserInfo(user.Username(), "wrong")); err == nil {
		nc.Close()
		t.Error("a server run from nats-cluster.conf lets a wrong password in")
	}
}

// checkNATSImage: the nats image's minor release is the nats-server the
// tests run (go.mod), so what is deployed is what was tested.
func checkNATSImage(t *testing.T, p *types.Project) {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/nats-io/nats-server/v2 v(\d+\.\d+)\.`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require nats-server/v2")
	}
	svc, _ := p.GetService("nats1")
	if !strings.HasPrefix(svc.Image, "nats:"+string(m[1])+"-") && svc.Image != "nats:"+string(m[1]) {
		t.Errorf("nats image %q, want nats:%s (go.mod's nats-server)", svc.Image, m[1])
	}
}

// checkPorts: no two services publish the same host port and protocol.
func checkPorts(t *testing.T, p *types.Project) {
	t.Helper()
	owner := map[string]string{}
	for _, svc := range p.Services {
		for _, pc := range svc.Ports {
			k := fmt.Sprintf("%s %s/%s", pc.HostIP, pc.Published, pc.Protocol)
			if o, ok := owner[k]; ok {
				t.Errorf("%s and %s both publish %s", o, svc.Name, k)
			}
			owner[k] = svc.Name
		}
	}
}

// checkLoadBalancer: Caddy, in front of every node's HTTP, round robin
// without stickiness, an active health check on /readyz, every path (so
// /ws) proxied with the upgrade headers left alone, and the only address
// whose X-Forwarded-For the nodes believe.
func checkLoadBalancer(t *testing.T, p *types.Project, cfgs map[string]Config, envFile map[string]string) {
	t.Helper()
	lb, err := p.GetService("lb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lb.Image, "caddy:") {
		t.Errorf("lb image %q, want the official caddy image", lb.Image)
	}
	if !slices.ContainsFunc(lb.Volumes, func(v types.ServiceVolumeConfig) bool {
		return filepath.Base(v.Source) == "Caddyfile" && v.Target == "/etc/caddy/Caddyfile" && v.ReadOnly
	}) {
		t.Errorf("lb does not mount deploy/Caddyfile read-only on /etc/caddy/Caddyfile: %+v", lb.Volumes)
	}
	if site := lb.Environment["SITE_ADDRESS"]; site == nil || *site != envFile["SWITCHBOARD_DOMAIN"] {
		t.Errorf("lb SITE_ADDRESS = %v, want SWITCHBOARD_DOMAIN %q from the env file", site, envFile["SWITCHBOARD_DOMAIN"])
	}
	for _, name := range clusterNodes {
		if u, err := url.Parse(cfgs[name].PublicURL); err != nil || u.Hostname() != envFile["SWITCHBOARD_DOMAIN"] {
			t.Errorf("%s: PUBLIC_URL %q is not on SWITCHBOARD_DOMAIN %q, which the load balancer serves", name, cfgs[name].PublicURL, envFile["SWITCHBOARD_DOMAIN"])
		}
	}
	var lbAddr string
	for _, n := range lb.Networks {
		if n != nil && n.Ipv4Address != "" {
			lbAddr = n.Ipv4Address
		}
	}
	for _, name := range clusterNodes {
		tp := cfgs[name].TrustedProxies
		if len(tp) != 1 || tp[0].String() != lbAddr+"/32" {
			t.Errorf("%s: TRUSTED_PROXIES %v, want the load balancer's %s alone", name, tp, lbAddr)
		}
	}
	published := map[string]bool{}
	for _, pc := range lb.Ports {
		published[pc.Published+"/"+pc.Protocol] = true
	}
	for _, k := range []string{"80/tcp", "443/tcp"} {
		if !published[k] {
			t.Errorf("lb does not publish %s", k)
		}
	}

	// The Caddyfile, directives outside comments.
	f, err := os.Open(filepath.Join(deployDir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if fs := strings.Fields(line); len(fs) > 0 {
			lines = append(lines, fs)
		}
	}
	has := func(want ...string) bool {
		return slices.ContainsFunc(lines, func(fs []string) bool { return slices.Equal(fs, want) })
	}
	var proxies [][]string
	for _, fs := range lines {
		if fs[0] == "reverse_proxy" {
			proxies = append(proxies, fs)
		}
		if fs[0] == "lb_policy" && !slices.Equal(fs, []string{"lb_policy", "round_robin"}) {
			t.Errorf("Caddyfile %v: want lb_policy round_robin, no stickiness", fs)
		}
		if fs[0] == "header_up" && len(fs) > 1 && slices.Contains([]string{"-upgrade", "-connection"}, strings.ToLower(fs[1])) {
			t.Errorf("Caddyfile %v removes a header the WebSocket upgrade needs", fs)
		}
	}
	if len(proxies) != 1 {
		t.Fatalf("Caddyfile has %d reverse_proxy directives, want one for every path", len(proxies))
	}
	var wantUp []string
	for _, name := range clusterNodes {
		wantUp = append(wantUp, net.JoinHostPort(name, strconv.Itoa(configuredPort(cfgs[name].HTTPAddr))))
	}
	if up := proxies[0][1:]; !slices.Equal(up, append(slices.Clone(wantUp), "{")) {
		t.Errorf("Caddyfile reverse_proxy %v, want no matcher (every path, /ws too) and upstreams %v", up, wantUp)
	}
	for _, want := range [][]string{
		{"lb_policy", "round_robin"},
		{"health_uri", "/readyz"},
		{"health_status", "200"},
		{"{$SITE_ADDRESS}", "{"},
	} {
		if !has(want...) {
			t.Errorf("Caddyfile lacks %q", strings.Join(want, " "))
		}
	}
}

// TestClusterReadme: the README's "Scale out" names the cluster's deploy
// files and its table of per-node ports is the compose file's.
func TestClusterReadme(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, f := range []string{"deploy/docker-compose.cluster.yml", "deploy/docker-compose.cluster-nats.yml",
		"deploy/cluster.env.example", "deploy/Caddyfile", "deploy/nats-cluster.conf"} {
		if _, err := os.Stat(filepath.Join("..", "..", f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if !strings.Contains(readme, f) {
			t.Errorf("README.md does not mention %s", f)
		}
	}
	p, _, err := loadCluster(t, "docker-compose.cluster.yml", filledClusterEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range clusterNodes {
		svc, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		env := svc.Environment
		row := fmt.Sprintf("| %s | `%s` | `%s` |", name, *env["SWITCHBOARD_TURN_ADDR"], *env["SWITCHBOARD_RELAY_PORTS"])
		if !strings.Contains(readme, row) {
			t.Errorf("README.md lacks the row %q of the compose file's ports", row)
		}
	}
}
