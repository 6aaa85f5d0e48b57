package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// selfSigned returns a PEM certificate and key for name, valid now.
func selfSigned(tb testing.TB, name string) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeCert writes the pair and moves both mtimes to at, so a rewrite within
// the filesystem's timestamp granularity is still seen as a change.
func writeCert(tb testing.TB, certFile, keyFile string, certPEM, keyPEM []byte, at time.Time) {
	tb.Helper()
	for _, f := range []struct {
		path string
		b    []byte
	}{{certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chtimes(f.path, at, at); err != nil {
			tb.Fatal(err)
		}
	}
}

// servedName dials addr over TLS and returns the leaf's first DNS name.
func servedName(tb testing.TB, addr string, alpn ...string) string {
	tb.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // self-signed test certificates; the name is what is checked
		NextProtos:         alpn,
	})
	if err != nil {
		tb.Fatalf("tls dial %s: %v", addr, err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].DNSNames) == 0 {
		tb.Fatalf("tls %s: no certificate name", addr)
	}
	return cs.PeerCertificates[0].DNSNames[0]
}

// TestTLSFilesReload: HTTPS and TURN over TLS serve the same certificate from
// files, and a rewrite of the files is served without a restart; a broken
// rewrite keeps the previous certificate.
func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := selfSigned(t, "one.switchboard.test")
	t0 := time.Now().Add(-time.Minute)
	writeCert(t, certFile, keyFile, c1, k1, t0)

	a := startStack(t, map[string]string{
		"TLS_CERT":   certFile,
		"TLS_KEY":    keyFile,
		"HTTPS_ADDR": "127.0.0.1:0",
		"TURNS_ADDR": "127.0.0.1:0",
	})
	httpsAddr := strings.TrimPrefix(a.httpsURL(), "https://")
	if len(a.relay.TLSAddrs()) != 1 {
		t.Fatalf("relay TLS addrs = %v, want one", a.relay.TLSAddrs())
	}
	turnsAddr := a.relay.TLSAddrs()[0].String()

	steps := []struct {
		name  string
		write func()
		want  string
	}{
		{"initial", func() {}, "one.switchboard.test"},
		{"rewritten", func() {
			c2, k2 := selfSigned(t, "two.switchboard.test")
			writeCert(t, certFile, keyFile, c2, k2, t0.Add(10*time.Second))
		}, "two.switchboard.test"},
		{"broken rewrite keeps the last good one", func() {
			writeCert(t, certFile, keyFile, []byte("not a certificate"), []byte("nor a key"), t0.Add(20*time.Second))
		}, "two.switchboard.test"},
		{"repaired", func() {
			c3, k3 := selfSigned(t, "three.switchboard.test")
			writeCert(t, certFile, keyFile, c3, k3, t0.Add(30*time.Second))
		}, "three.switchboard.test"},
	}
	for _, s := range steps {
		s.write()
		if got := servedName(t, httpsAddr); got != s.want {
			t.Errorf("%s: https serves %q, want %q", s.name, got, s.want)
		}
		if got := servedName(t, turnsAddr, "stun.turn"); got != s.want {
			t.Errorf("%s: turns serves %q, want %q", s.name, got, s.want)
		}
	}

	// The turns: URL names the certificate's domain and the bound TLS port.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(a.httpsURL() + "/api/ice-servers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ICEServers []struct {
			URLs []string `json:"urls"`
		} `json:"iceServers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /api/ice-servers over https: %s: %v", resp.Status, err)
	}
	_, port, _ := net.SplitHostPort(turnsAddr)
	want := "turns:one.switchboard.test:" + port + "?transport=tcp"
	var all []string
	for _, s := range body.ICEServers {
		all = append(all, s.URLs...)
	}
	if !strings.Contains(strings.Join(all, " "), want) {
		t.Errorf("iceServers urls %v lack %s", all, want)
	}

	// WSS on the same listener and certificate: hello gets a welcome.
	ws, _, err := websocket.Dial(t.Context(), "wss"+strings.TrimPrefix(a.httpsURL(), "https")+"/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.CloseNow()
	if err := wsjson.Write(t.Context(), ws, map[string]any{"type": "hello", "name": "tls"}); err != nil {
		t.Fatal(err)
	}
	var welcome struct{ Type string }
	if err := wsjson.Read(t.Context(), ws, &welcome); err != nil || welcome.Type != "welcome" {
		t.Errorf("wss hello: %+v, %v", welcome, err)
	}

	// Plain HTTP redirects to HTTPS but keeps health checks.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, wantCode := range map[string]int{"/": http.StatusMovedPermanently, "/r/demo": http.StatusMovedPermanently, "/healthz": 200, "/readyz": 200} {
		resp, err := noRedirect.Get(a.httpURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != wantCode {
			t.Errorf("GET http %s = %d, want %d", path, resp.StatusCode, wantCode)
		}
		if wantCode == http.StatusMovedPermanently {
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, a.httpsURL()+path) {
				t.Errorf("GET http %s redirects to %q, want %s%s", path, loc, a.httpsURL(), path)
			}
		}
	}
}

// TestCredentialsTLSDomain: with certificate files, `switchboard
// credentials` names the certificate's domain in turns: URLs, like the
// server's own iceServers.
func TestCredentialsTLSDomain(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c, k := selfSigned(t, "turn.switchboard.test")
	writeCert(t, certFile, keyFile, c, k, time.Now())
	environ := []string{
		"SWITCHBOARD_PUBLIC_IP=203.0.113.7",
		"SWITCHBOARD_TURN_SECRET=0123456789abcdef0123",
		"SWITCHBOARD_TLS_CERT=" + certFile,
		"SWITCHBOARD_TLS_KEY=" + keyFile,
	}
	var stdout, stderr strings.Builder
	if code := run(t.Context(), []string{"credentials"}, environ, &stdout, &stderr); code != 0 {
		t.Fatalf("credentials = %d: %s", code, stderr.String())
	}
	if want := `"turns:turn.switchboard.test:5349?transport=tcp"`; !strings.Contains(stdout.String(), want) {
		t.Errorf("credentials output lacks %s:\n%s", want, stdout.String())
	}
}
