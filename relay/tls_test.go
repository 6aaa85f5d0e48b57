package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// selfSigned returns a server TLS config for 127.0.0.1 and a client config trusting it.
func selfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestTLSRelay(t *testing.T) {
	srvTLS, cliTLS := selfSigned(t)
	cfg := baseConfig(t)
	cfg.TLSListenAddrs = []string{"127.0.0.1:0", "127.0.0.1:0"}
	cfg.TLSConfig = srvTLS
	s := startServer(t, cfg)
	if len(s.TLSAddrs()) != 2 {
		t.Fatalf("TLSAddrs = %v, want 2", s.TLSAddrs())
	}
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	for _, addr := range s.TLSAddrs() {
		t.Run(addr.String(), func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr.String(), cliTLS)
			if err != nil {
				t.Fatal(err)
			}
			cred := s.Mint("tina", time.Minute)
			cl, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: addr.String(), TURNServerAddr: addr.String(),
				Conn: turn.NewSTUNConn(conn), Username: cred.Username, Password: cred.Password,
				LoggerFactory: pionLogFactory{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Listen(); err != nil {
				t.Fatal(err)
			}
			defer func() { cl.Close(); _ = conn.Close() }()
			rc, err := cl.Allocate()
			if err != nil {
				t.Fatalf("Allocate over TLS: %v", err)
			}
			defer rc.Close()
			exchange(t, rc, peer, 5)
		})
	}
}

func TestDetectPublicIP(t *testing.T) {
	s := startServer(t, baseConfig(t))
	t.Run("stun", func(t *testing.T) {
		dead := echoPeer(t, "udp4", "127.0.0.1:0") // answers with junk: the request echoed
		ip, how, err := DetectPublicIP(t.Context(), []string{dead.String(), s.UDPAddr().String()})
		if err != nil || ip != netip.MustParseAddr("127.0.0.1") || how != "stun "+s.UDPAddr().String() {
			t.Fatalf("DetectPublicIP = %v, %q, %v; want 127.0.0.1 from our STUN server", ip, how, err)
		}
	})
	t.Run("interface", func(t *testing.T) {
		ip, how, err := DetectPublicIP(t.Context(), nil)
		if err != nil {
			t.Skipf("no usable interface address on this host: %v", err)
		}
		if !ip.Is4() || ip.IsLoopback() || len(how) <= len("interface ") || how[:10] != "interface " {
			t.Fatalf("DetectPublicIP = %v, %q; want a non-loopback IPv4 from an interface", ip, how)
		}
	})
}
