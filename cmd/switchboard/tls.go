package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certSource provides the one certificate shared by HTTPS, WSS and TURN over
// TLS: either files reloaded when they change or an ACME manager.
type certSource struct {
	get    func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	acme   *autocert.Manager // nil for files
	domain string            // first DNS name the certificate is for
}

// newCertSource builds the certificate source for cfg; it returns nil when
// TLS is off. Certificate files are read here so that an unreadable or
// mismatched pair stops start-up as a config error.
func newCertSource(cfg *Config, log *slog.Logger) (*certSource, error) {
	switch {
	case cfg.TLSCert != "":
		for _, f := range []struct{ name, path string }{{"TLS_CERT", cfg.TLSCert}, {"TLS_KEY", cfg.TLSKey}} {
			if err := checkReadable(f.path); err != nil {
				return nil, badVar(f.name, "%v", err)
			}
		}
		r := &certReloader{certFile: cfg.TLSCert, keyFile: cfg.TLSKey, log: log}
		if err := r.load(); err != nil {
			return nil, explainKeyPairError(cfg.TLSCert, cfg.TLSKey, err)
		}
		cs := &certSource{get: r.GetCertificate}
		if leaf := r.current().Leaf; leaf != nil && len(leaf.DNSNames) > 0 {
			cs.domain = leaf.DNSNames[0]
		}
		return cs, nil
	case len(cfg.ACMEDomains) > 0:
		client := &acme.Client{DirectoryURL: cfg.ACMEDirectoryURL}
		if cfg.ACMECAFile != "" {
			if err := checkReadable(cfg.ACMECAFile); err != nil {
				return nil, badVar("ACME_CA_FILE", "%v", err)
			}
			pem, err := os.ReadFile(cfg.ACMECAFile)
			if err != nil {
				return nil, badVar("ACME_CA_FILE", "cannot read %s", cfg.ACMECAFile)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, badVar("ACME_CA_FILE", "no PEM certificate in %s", cfg.ACMECAFile)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			// The ACME client bounds each request with its context; this is
			// only a backstop against a server that stops talking.
			client.HTTPClient = &http.Client{Transport: tr, Timeout: time.Minute}
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(cfg.ACMECache),
			HostPolicy: autocert.HostWhitelist(cfg.ACMEDomains...),
			Email:      cfg.ACMEEmail,
			Client:     client,
		}
		return &certSource{get: m.GetCertificate, acme: m, domain: cfg.ACMEDomains[0]}, nil
	}
	return nil, nil
}

// checkReadable says in words why path cannot be read as a file (Go's own
// errors read "open /x: no such file or directory", or two of them glued
// together for a certificate pair).
func checkReadable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("file %s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("file %s is in a directory this user (uid %d) may not enter", path, os.Getuid())
	case err != nil:
		return fmt.Errorf("cannot look at file %s", path)
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, want a PEM file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("file %s is not readable by this user (uid %d)", path, os.Getuid())
	}
	f.Close()
	return nil
}

// explainKeyPairError names the file at fault when a certificate and key
// do not load, in words (crypto/tls says "tls: failed to find any PEM data in
// key input").
func explainKeyPairError(certFile, keyFile string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate input"):
		return badVar("TLS_CERT", "%s holds no PEM certificate (want -----BEGIN CERTIFICATE-----, e.g. fullchain.pem)", certFile)
	case strings.Contains(msg, "key input"), strings.Contains(msg, "rather than a key"):
		return badVar("TLS_KEY", "%s holds no PEM private key (want -----BEGIN ... PRIVATE KEY-----, e.g. privkey.pem)", keyFile)
	case strings.Contains(msg, "does not match"):
		return badVar("TLS_KEY", "the key in %s does not belong to the certificate in %s", keyFile, certFile)
	}
	return badVar("TLS_CERT", "cannot use %s with key %s: the certificate or key is damaged or of an unsupported kind", certFile, keyFile)
}

// httpsConfig is the TLS config of the HTTPS listener.
func (c *certSource) httpsConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if c.acme != nil {
		protos = append(protos, acme.ALPNProto) // TLS-ALPN-01 challenges
	}
	return &tls.Config{GetCertificate: c.get, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// turnsConfig is the TLS config handed to the relay for TURN over TLS.
// "stun.turn" is the ALPN id of RFC 7443; a TURNS port on 443 may also be
// where a TLS-ALPN-01 validator knocks.
func (c *certSource) turnsConfig() *tls.Config {
	protos := []string{"stun.turn"}
	if c.acme != nil {
		protos = append(protos, acme.ALPNProto)
	}
	return &tls.Config{GetCertificate: c.get, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// certReloader serves a certificate from files and reloads it when either
// file's modification time or size changes, so a renewal by certbot or a
// mounted secret takes effect without a restart.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex // guards the fields below
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert
}

// load reads both files and replaces the certificate.
func (r *certReloader) load() error {
	cs, err1 := stamp(r.certFile)
	ks, err2 := stamp(r.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Remember the stamps anyway: the next change (the second file of a
		// pair being written) triggers the next attempt, not every handshake.
		r.mu.Lock()
		r.certStat, r.keyStat = cs, ks
		r.mu.Unlock()
		return fmt.Errorf("load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.certStat, r.keyStat = &cert, cs, ks
	r.mu.Unlock()
	return nil
}

// GetCertificate stats both files on each handshake (microseconds, far
// below the handshake's own cost) and reloads when they changed. A pair
// caught half-written fails to load; the old certificate is served and the
// next handshake tries again.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs, err1 := stamp(r.certFile)
	ks, err2 := stamp(r.keyFile)
	r.mu.Lock()
	changed := err1 == nil && err2 == nil && (cs != r.certStat || ks != r.keyStat)
	cur := r.cert
	r.mu.Unlock()
	if !changed {
		return cur, nil
	}
	if err := r.load(); err != nil {
		r.log.Warn("tls certificate reload failed; serving the previous one", "err", err)
		return cur, nil
	}
	r.log.Info("tls certificate reloaded", "file", r.certFile)
	return r.current(), nil
}
