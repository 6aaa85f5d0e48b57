package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// acmeDomain is the name certificates are issued for. The test's own DNS
// server answers 127.0.0.1 for it (and every name), so pebble's validation
// only ever connects to loopback.
const acmeDomain = "call.switchboard.test"

// loopbackDNS serves A 127.0.0.1 for every name and nothing else, over TCP
// (pebble's VA resolves over TCP) on 127.0.0.1:0.
func loopbackDNS(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	tb.Cleanup(func() { srv.Shutdown(); <-done })
	return ln.Addr().String()
}

// pebbleServer is Let's Encrypt's test ACME server, in-process on loopback.
// Its handler is set once the ports it validates against are known.
type pebbleServer struct {
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	ca      *ca.CAImpl
	caFile  string // PEM of the directory's own HTTPS certificate
}

func newPebble(tb testing.TB) *pebbleServer {
	tb.Helper()
	// Pebble reads its knobs from the environment: no random validation
	// sleeps, no injected bad nonces, no authorization reuse (each challenge
	// type must really be validated).
	tb.Setenv("PEBBLE_VA_NOSLEEP", "1")
	tb.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	tb.Setenv("PEBBLE_AUTHZREUSE", "0")
	p := &pebbleServer{}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.handler.Load()
		if h == nil {
			http.Error(w, "pebble not configured", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	// Clients that hang up mid-handshake are expected; keep them out of the output.
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.StartTLS()
	tb.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(tb.TempDir(), "acme-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.caFile, pemBytes, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// configure builds pebble's CA, VA and front end: the VA validates HTTP-01
// on 127.0.0.1:httpPort and TLS-ALPN-01 on 127.0.0.1:tlsPort, resolving
// names with dnsAddr.
func (p *pebbleServer) configure(tb testing.TB, httpPort, tlsPort int, dnsAddr string) {
	tb.Helper()
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(tb.Output(), "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	p.ca = ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	v := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	w := wfe.New(logger, store, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	inner := w.Handler()
	// Pebble answers finalize without a Location header, and while the
	// order is still "processing" x/crypto/acme polls that Location (an
	// empty URL). Let's Encrypt's boulder sends it; add it here so the
	// client code under test runs unmodified.
	var h http.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/finalize-order/"); ok {
			rw.Header().Set("Location", "https://"+r.Host+"/my-order/"+id)
		}
		inner.ServeHTTP(rw, r)
	})
	p.handler.Store(&h)
}

func (p *pebbleServer) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.GetRootCert(0).Cert)
	return pool
}

// closedPort returns a loopback port nothing listens on, so the challenge
// type pointed at it fails with "connection refused" (still loopback only).
func closedPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// verifiedHandshake dials addr with SNI acmeDomain and verifies the chain
// against roots; the first handshake makes autocert obtain the certificate.
func verifiedHandshake(tb testing.TB, addr string, roots *x509.CertPool, alpn ...string) *x509.Certificate {
	tb.Helper()
	// Issuance is a handful of loopback round trips; 60 s is slack for -race.
	d := &net.Dialer{Timeout: 60 * time.Second, Deadline: time.Now().Add(60 * time.Second)}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: acmeDomain, RootCAs: roots, NextProtos: alpn})
	if err != nil {
		tb.Fatalf("tls handshake with %s as %s: %v", addr, acmeDomain, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestACME gets a certificate from a real ACME server (pebble) once by
// TLS-ALPN-01 and once by HTTP-01 (the other type's port is closed, so
// autocert must fall back to it), serves it on HTTPS and TURN over TLS, and
// serves it again from the disk cache after a restart with pebble gone.
func TestACME(t *testing.T) {
	dnsAddr := loopbackDNS(t)
	for _, challenge := range []string{"tls-alpn-01", "http-01"} {
		t.Run(challenge, func(t *testing.T) {
			p := newPebble(t)
			cache := filepath.Join(t.TempDir(), "acme")
			env := map[string]string{
				"ACME_DOMAINS":       acmeDomain,
				"ACME_DIRECTORY_URL": p.srv.URL + wfe.DirectoryPath,
				"ACME_CA_FILE":       p.caFile,
				"ACME_CACHE":         cache,
				"ACME_EMAIL":         "ops@switchboard.test",
				"HTTPS_ADDR":         "127.0.0.1:0",
				"TURNS_ADDR":         "127.0.0.1:0",
			}
			a := startStack(t, env)
			httpPort := portOf(a.httpLn.Addr())
			httpsPort := portOf(a.httpsLn.Addr())
			if challenge == "tls-alpn-01" {
				p.configure(t, closedPort(t), httpsPort, dnsAddr)
			} else {
				p.configure(t, httpPort, closedPort(t), dnsAddr)
			}
			roots := p.roots()

			leaf := verifiedHandshake(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)), roots)
			if err := leaf.VerifyHostname(acmeDomain); err != nil {
				t.Errorf("issued certificate: %v", err)
			}
			turns := verifiedHandshake(t, a.relay.TLSAddrs()[0].String(), roots, "stun.turn")
			if !turns.Equal(leaf) {
				t.Errorf("turns serves another certificate (serial %v) than https (serial %v)", turns.SerialNumber, leaf.SerialNumber)
			}
			if entries, err := os.ReadDir(cache); err != nil || len(entries) < 2 {
				t.Errorf("ACME cache %s has %d entries (%v), want account key and certificate", cache, len(entries), err)
			}

			// Restart with pebble unreachable: the certificate comes from
			// the disk cache.
			p.srv.Close()
			b := startStack(t, env)
			again := verifiedHandshake(t, b.httpsURL()[len("https://"):], roots)
			if !again.Equal(leaf) {
				t.Errorf("after restart: serial %v, want cached %v", again.SerialNumber, leaf.SerialNumber)
			}
		})
	}
}
