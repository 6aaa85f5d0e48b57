package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"sync"
	"testing"
	"time"
)

// failoverProxy is the load balancer in front of a test cluster for one
// browser: it forwards each request (WebSocket upgrades included) to the
// first of its backends, in its own order of preference, that accepts a TCP
// connection, so a node that died is skipped. No stickiness, no health
// checks: a dead node refuses connections on loopback at once.
type failoverProxy struct {
	srv      *httptest.Server
	backends []string // host:port, preferred first

	mu   sync.Mutex
	wsTo []int // backend index of each /ws connection, in order
}

// wsRequest marks a request's context: its dial is recorded in wsTo.
type wsRequest struct{}

func newFailoverProxy(tb testing.TB, backends ...string) *failoverProxy {
	tb.Helper()
	p := &failoverProxy{backends: backends}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "cluster" // the dialer picks the node
			// The page's Origin names the proxy: the node's origin check
			// compares it with Host.
			pr.Out.Host = pr.In.Host
		},
		// No keep-alive: a pooled connection to a node that died would be
		// tried before the dialer gets a say.
		Transport: &http.Transport{DialContext: p.dial, DisableKeepAlives: true},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			r = r.WithContext(context.WithValue(r.Context(), wsRequest{}, true))
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *failoverProxy) url() string { return p.srv.URL }

func (p *failoverProxy) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var errs []error
	for i, b := range p.backends {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, network, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ctx.Value(wsRequest{}) != nil {
			p.mu.Lock()
			p.wsTo = append(p.wsTo, i)
			p.mu.Unlock()
		}
		return c, nil
	}
	return nil, errors.Join(errs...)
}

// lastWS is the backend index of the latest /ws connection (-1: none yet).
func (p *failoverProxy) lastWS() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.wsTo) == 0 {
		return -1
	}
	return p.wsTo[len(p.wsTo)-1]
}
