package natsrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures a NATS server inside the switchboard process
// (SWITCHBOARD_CLUSTER=embedded).
type EmbeddedConfig struct {
	Cluster string // cluster name (SWITCHBOARD_CLUSTER_NAME)
	Node    string // server name (SWITCHBOARD_NODE_NAME)
	// Listen is the route listener, host:port (SWITCHBOARD_CLUSTER_LISTEN).
	Listen string
	// Routes are every node's route URL, this node's included
	// (SWITCHBOARD_CLUSTER_ROUTES), nats://host:port.
	Routes []*url.URL
	// Advertise is the route address given to peers, host:port; empty: Listen.
	Advertise string
	// Secret authenticates routes and the local client (SWITCHBOARD_CLUSTER_SECRET).
	Secret string
	// Logger gets the server's warnings and errors. Default: discard.
	Logger *slog.Logger
}

// routeUser is the user name routes and the local client present with the secret.
const routeUser = "switchboard"

// Embedded is a running embedded NATS server and an in-process connection to it.
type Embedded struct {
	Server *server.Server
	Conn   *nats.Conn
}

// StartEmbedded starts the server, waits until it takes connections, and
// connects to it in process. Its client port listens on 127.0.0.1 only (a
// random port: nothing outside the process needs it, and NATS deadlocks with
// no client listener and a route listener). Routes and clients authenticate
// with the secret.
func StartEmbedded(c EmbeddedConfig) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster listen %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster listen %q: bad port", c.Listen)
	}
	if len(c.Secret) == 0 {
		return nil, errors.New("cluster secret is empty")
	}
	routes := make([]*url.URL, len(c.Routes))
	for i, u := range c.Routes {
		v := *u
		v.User = url.UserPassword(routeUser, c.Secret)
		routes[i] = &v
	}
	opts := &server.Options{
		ServerName: c.Node,
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		Username:   routeUser,
		Password:   c.Secret,
		NoSigs:     true,
		NoLog:      c.Logger == nil,
		Cluster: server.ClusterOpts{
			Name:      c.Cluster,
			Host:      host,
			Port:      port,
			Username:  routeUser,
			Password:  c.Secret,
			Advertise: c.Advertise,
		},
		Routes: routes,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if c.Logger != nil {
		s.SetLogger(natsLog{c.Logger.With("nats", c.Node)}, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server %s: not ready within 10s (route listener %s)", c.Node, c.Listen)
	}
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name(c.Node),
		nats.UserInfo(routeUser, c.Secret), nats.MaxReconnects(-1))
	if err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("nats connect in process: %w", err)
	}
	return &Embedded{Server: s, Conn: nc}, nil
}

// ClusterAddr is the route listener's address (its port when Listen had port 0).
func (e *Embedded) ClusterAddr() *net.TCPAddr { return e.Server.ClusterAddr() }

// Close drains nothing: it closes the connection and shuts the server down.
func (e *Embedded) Close() {
	e.Conn.Close()
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// natsLog passes the server's notices, warnings and errors to slog.
type natsLog struct{ l *slog.Logger }

func (n natsLog) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLog) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLog) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLog) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLog) Debugf(format string, v ...any)  {}
func (n natsLog) Tracef(format string, v ...any)  {}
