package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/switchboard-rtc/switchboard/signaling/routertest"
	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// TestNATSAuthConfig: the credential and TLS variables are refused outside
// external mode and a certificate needs its key, each with one line naming
// the variable (pure validation, no file read).
func TestNATSAuthConfig(t *testing.T) {
	ext := func(kv ...string) map[string]string {
		m := map[string]string{
			"SWITCHBOARD_CLUSTER":        "external",
			"SWITCHBOARD_NATS_URL":       "tls://10.0.0.9:4222",
			"SWITCHBOARD_TURN_SECRET":    "turn-secret-0123456789",
			"SWITCHBOARD_CLUSTER_SECRET": testClusterSecret,
			"SWITCHBOARD_NODE_NAME":      "node-1",
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, "SWITCHBOARD_"+kv[i])
			} else {
				m["SWITCHBOARD_"+kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // "": valid
	}{
		{"all four", ext("NATS_CREDS", "/x/u.creds", "NATS_CA", "/x/ca.pem", "NATS_CERT", "/x/c.pem", "NATS_KEY", "/x/k.pem"), ""},
		{"creds only", ext("NATS_CREDS", "/x/u.creds"), ""},
		{"cert without key", ext("NATS_CERT", "/x/c.pem"), "SWITCHBOARD_NATS_KEY"},
		{"key without cert", ext("NATS_KEY", "/x/k.pem"), "SWITCHBOARD_NATS_CERT"},
		{"creds in embedded mode", ext("CLUSTER", "embedded", "NATS_URL", "", "CLUSTER_ROUTES", "nats://10.0.0.1:6222", "NATS_CREDS", "/x/u.creds"), "SWITCHBOARD_NATS_CREDS"},
		{"CA in embedded mode", ext("CLUSTER", "embedded", "NATS_URL", "", "CLUSTER_ROUTES", "nats://10.0.0.1:6222", "NATS_CA", "/x/ca.pem"), "SWITCHBOARD_NATS_CA"},
		{"cert with cluster off", map[string]string{"SWITCHBOARD_NATS_CERT": "/x/c.pem", "SWITCHBOARD_NATS_KEY": "/x/k.pem"}, "SWITCHBOARD_NATS_CERT"},
		{"key with cluster off", map[string]string{"SWITCHBOARD_NATS_KEY": "/x/k.pem"}, "SWITCHBOARD_NATS_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfigMap(tt.env)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("parseConfigMap = %v, want valid", err)
				}
				return
			}
			wantVarError(t, err, tt.wantVar)
		})
	}
}

// TestNATSAuthFiles: files that are missing or hold the wrong thing stop
// start-up before anything connects, naming the variable and never
// repeating a seed or a key.
func TestNATSAuthFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	caFile := ca.writeCert(t, dir, "ca")
	certFile, keyFile := ca.issue(t, dir, "client", false)
	_, otherKey := newTestCA(t, "other").issue(t, dir, "other", false)
	junk := writeFile(t, dir, "junk.pem", "not a PEM file\n")

	acct := newTestAccount(t)
	good, seed := acct.creds(t, dir, "good", 0)
	expired, _ := acct.creds(t, dir, "expired", -time.Hour)
	// A JWT with another user's seed: nats.go would sign the nonce with
	// the wrong key and get a bare "authorization violation".
	_, otherSeed := acct.creds(t, dir, "other", 0)
	goodJWT, err := jwt.ParseDecoratedJWT(readFile(t, good))
	if err != nil {
		t.Fatal(err)
	}
	// FormatUserConfig refuses the mix: decorate the parts one by one.
	decoJWT, err := jwt.DecorateJWT(goodJWT)
	if err != nil {
		t.Fatal(err)
	}
	decoSeed, err := jwt.DecorateSeed([]byte(otherSeed))
	if err != nil {
		t.Fatal(err)
	}
	mixed := writeFile(t, dir, "mixed.creds", string(decoJWT)+string(decoSeed))
	jwtOnly := writeFile(t, dir, "jwt-only.creds", goodJWT+"\n")

	base := Config{ClusterMode: clusterExternal, NATSURL: "nats://127.0.0.1:4222"}
	tests := []struct {
		name    string
		set     func(*Config)
		wantVar string
	}{
		{"all good", func(c *Config) {
			c.NATSCreds, c.NATSCA, c.NATSCert, c.NATSKey = good, caFile, certFile, keyFile
		}, ""},
		{"creds missing", func(c *Config) { c.NATSCreds = filepath.Join(dir, "nope.creds") }, "SWITCHBOARD_NATS_CREDS"},
		{"creds not creds", func(c *Config) { c.NATSCreds = junk }, "SWITCHBOARD_NATS_CREDS"},
		{"creds without seed", func(c *Config) { c.NATSCreds = jwtOnly }, "SWITCHBOARD_NATS_CREDS"},
		{"creds seed of another user", func(c *Config) { c.NATSCreds = mixed }, "SWITCHBOARD_NATS_CREDS"},
		{"creds expired", func(c *Config) { c.NATSCreds = expired }, "SWITCHBOARD_NATS_CREDS"},
		{"CA missing", func(c *Config) { c.NATSCA = filepath.Join(dir, "nope.pem") }, "SWITCHBOARD_NATS_CA"},
		{"CA not PEM", func(c *Config) { c.NATSCA = junk }, "SWITCHBOARD_NATS_CA"},
		{"cert missing", func(c *Config) { c.NATSCert, c.NATSKey = filepath.Join(dir, "nope.pem"), keyFile }, "SWITCHBOARD_NATS_CERT"},
		{"key of another cert", func(c *Config) { c.NATSCert, c.NATSKey = certFile, otherKey }, "SWITCHBOARD_NATS_CERT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.set(&cfg)
			opts, err := natsOptions(cfg, time.Now())
			if tt.wantVar == "" {
				if err != nil || len(opts) != 3 {
					t.Fatalf("natsOptions = %d options, %v; want 3, nil", len(opts), err)
				}
				return
			}
			wantVarError(t, err, tt.wantVar)
			for _, s := range []string{seed, otherSeed, "PRIVATE KEY", goodJWT[:20]} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q repeats a secret (%.6s...)", err, s)
				}
			}
		})
	}
}

// TestNATSExternalTLS: a NATS server with TLS that verifies clients (mTLS).
// The right CA and client certificate connect and two nodes link and
// signal; a wrong CA, no CA, no client certificate, or TLS asked of a
// server without it stop `switchboard serve` with one line naming the
// variable to fix (exit status 2).
func TestNATSExternalTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "nats-ca")
	caFile := ca.writeCert(t, dir, "ca")
	srvCert, srvKey := ca.issue(t, dir, "server", true)
	cliCert, cliKey := ca.issue(t, dir, "client", false)
	wrongCA := newTestCA(t, "wrong-ca").writeCert(t, dir, "wrong-ca")

	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, caFile))
	ns := startNATS(t, &server.Options{
		TLS: true, TLSVerify: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
	})
	url := "tls://" + ns.Addr().String()
	plain := "nats://" + startNATS(t, &server.Options{}).Addr().String()

	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			env     map[string]string
			wantVar string
		}{
			{"wrong CA", map[string]string{"NATS_URL": url, "NATS_CA": wrongCA, "NATS_CERT": cliCert, "NATS_KEY": cliKey}, "SWITCHBOARD_NATS_CA"},
			{"no CA", map[string]string{"NATS_URL": url, "NATS_CERT": cliCert, "NATS_KEY": cliKey}, "SWITCHBOARD_NATS_CA"},
			{"no client certificate", map[string]string{"NATS_URL": url, "NATS_CA": caFile}, "SWITCHBOARD_NATS_CERT"},
			{"server without TLS", map[string]string{"NATS_URL": plain, "NATS_CA": caFile}, "SWITCHBOARD_NATS_CA"},
		} {
			t.Run(tt.name, func(t *testing.T) { wantServeRefused(t, tt.env, tt.wantVar) })
		}
	})
	t.Run("linked", func(t *testing.T) {
		linkTwoNodes(t, map[string]string{"NATS_URL": url, "NATS_CA": caFile, "NATS_CERT": cliCert, "NATS_KEY": cliKey})
	})
}

// TestNATSExternalCreds: a NATS server in operator (JWT) mode. A .creds
// file made here (operator, account and user keys with nkeys, JWTs with
// jwt/v2), allowed only the cluster's subjects and reply inboxes, connects
// and two nodes link and signal; no creds, or creds of an
// account the server does not know, stop start-up naming NATS_CREDS.
func TestNATSExternalCreds(t *testing.T) {
	dir := t.TempDir()
	acct := newTestAccount(t)
	// Only the subjects README's "Scale out" tells operators to allow:
	// the cluster's prefix and the replies' inboxes.
	good, _ := acct.creds(t, dir, "good", time.Hour, "switchboard.>", "_INBOX.>")
	stranger, _ := newTestAccount(t).creds(t, dir, "stranger", 0)

	resolver := &server.MemAccResolver{}
	if err := resolver.Store(acct.pub, acct.jwt); err != nil {
		t.Fatal(err)
	}
	ns := startNATS(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{acct.operator}, AccountResolver: resolver})
	url := "nats://" + ns.Addr().String()

	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			env  map[string]string
		}{
			{"no creds", map[string]string{"NATS_URL": url}},
			{"creds of an unknown account", map[string]string{"NATS_URL": url, "NATS_CREDS": stranger}},
		} {
			t.Run(tt.name, func(t *testing.T) { wantServeRefused(t, tt.env, "SWITCHBOARD_NATS_CREDS") })
		}
	})
	t.Run("linked", func(t *testing.T) {
		linkTwoNodes(t, map[string]string{"NATS_URL": url, "NATS_CREDS": good})
	})
}

// externalEnv is a whole external-mode environment for run or startStack.
func externalEnv(t *testing.T, node string, extra map[string]string) map[string]string {
	t.Helper()
	m := stackDefaults(t)
	m["SWITCHBOARD_CLUSTER"] = "external"
	m["SWITCHBOARD_NODE_NAME"] = node
	m["SWITCHBOARD_CLUSTER_SECRET"] = testClusterSecret
	for k, v := range extra {
		m[envPrefix+k] = v
	}
	return m
}

// wantServeRefused runs `switchboard serve` and wants exit status 2 with
// one line on stderr naming wantVar.
func wantServeRefused(t *testing.T, extra map[string]string, wantVar string) {
	t.Helper()
	var environ []string
	for k, v := range externalEnv(t, "refused", extra) {
		environ = append(environ, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"serve"}, environ, &stdout, &stderr)
	if code != exitUsage {
		t.Fatalf("serve exit status %d, want %d (bad setting); stderr:\n%s", code, exitUsage, &stderr)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if strings.HasPrefix(l, "switchboard: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "switchboard: "+wantVar+": ") {
		t.Fatalf("stderr:\n%s\nwant one line \"switchboard: %s: ...\"", &stderr, wantVar)
	}
	if strings.Contains(stderr.String(), "PRIVATE KEY") || strings.Contains(stderr.String(), "NKEY") {
		t.Fatalf("stderr repeats key material:\n%s", &stderr)
	}
	t.Logf("%s", lines[0])
}

// linkTwoNodes starts two whole servers on the external NATS given by
// extra, waits until each sees the other, and has a client on each signal
// the other.
func linkTwoNodes(t *testing.T, extra map[string]string) {
	t.Helper()
	turn := stackDefaults(t)["SWITCHBOARD_TURN_SECRET"]
	apps := make([]*app, 2)
	for i := range apps {
		env := externalEnv(t, fmt.Sprintf("n%d", i+1), extra)
		env["SWITCHBOARD_TURN_SECRET"] = turn
		apps[i] = startStack(t, env)
	}
	ctx, cancel := context.WithTimeout(t.Context(), routertest.WaitFor)
	defer cancel()
	for _, a := range apps {
		if err := a.cluster.waitPeers(ctx, 1); err != nil {
			t.Fatalf("nodes did not link over the external NATS: %v", err)
		}
	}
	alice := routertest.Dial(t, apps[0].httpURL(), "alice", "")
	routertest.Eventually(t, "node 2 knows alice", func() bool { return len(apps[1].cluster.router.Members("")) == 1 })
	bob := routertest.Dial(t, apps[1].httpURL(), "bob", "")
	alice.Expect(wire.TypePeerJoined)
	bob.Send(wire.Signal{Type: wire.TypeSignal, To: alice.ID, Data: []byte(`"hi"`)})
	if m := alice.Expect(wire.TypeSignal); m.From != bob.ID || string(m.Data) != `"hi"` {
		t.Fatalf("alice got %+v, want bob's signal", m)
	}
}

func wantVarError(t *testing.T, err error, wantVar string) {
	t.Helper()
	var ce *configError
	if !errors.As(err, &ce) || ce.Var != wantVar {
		t.Fatalf("got %v, want an error naming %s", err, wantVar)
	}
	if strings.Contains(ce.Error(), "\n") {
		t.Fatalf("error %q is not one line", ce.Error())
	}
}

// startNATS starts a NATS server on a random loopback port with o's
// security settings; it shuts down in Cleanup.
func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.NoSigs, o.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(routertest.WaitFor) {
		t.Fatal("nats server not ready")
	}
	return ns
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) writeCert(t *testing.T, dir, name string) string {
	t.Helper()
	return writeFile(t, dir, name+".pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})))
}

// issue writes a certificate and key signed by ca: for a server on
// 127.0.0.1, or a client.
func (ca *testCA) issue(t *testing.T, dir, name string, srv bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if srv {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})))
	return certFile, keyFile
}

// testAccount is an operator with one account, as nsc would make them.
type testAccount struct {
	operator *jwt.OperatorClaims
	key      nkeys.KeyPair // the account's, signs user JWTs
	pub, jwt string        // the account's public key and JWT
}

func newTestAccount(t *testing.T) *testAccount {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "test-operator"
	if _, err := oc.Encode(okp); err != nil {
		t.Fatal(err)
	}
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "switchboard"
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	return &testAccount{operator: oc, key: akp, pub: apub, jwt: ajwt}
}

// creds writes a .creds file for a new user of the account; expires is
// relative to now (0: never); allow, if given, are the only subjects the
// user may publish and subscribe to. It returns the file and the seed.
func (a *testAccount) creds(t *testing.T, dir, name string, expires time.Duration, allow ...string) (string, string) {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	if expires != 0 {
		uc.Expires = time.Now().Add(expires).Unix()
	}
	if len(allow) > 0 {
		uc.Pub.Allow.Add(allow...)
		uc.Sub.Allow.Add(allow...)
	}
	ujwt, err := uc.Encode(a.key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name+".creds", string(b)), string(seed)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
