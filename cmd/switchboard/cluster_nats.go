package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// External NATS (SWITCHBOARD_CLUSTER=external) with the credentials and TLS
// NATS users already have: a .creds file (user JWT + nkey seed, operator
// mode), a CA bundle for the servers' certificates, a client certificate
// for servers that verify clients. validateNATSAuth is the pure part of
// the checks (in validate); natsOptions reads the files at start-up, so a
// missing or unreadable file stops start-up with one line naming its
// variable before anything connects.

// validateNATSAuth: the NATS credential and TLS variables belong to
// external mode (elsewhere they would be silently unused), and a client
// certificate comes with its key.
func (c *Config) validateNATSAuth() error {
	if c.ClusterMode != clusterExternal {
		for _, v := range []struct{ name, val string }{
			{"NATS_CREDS", c.NATSCreds}, {"NATS_CA", c.NATSCA}, {"NATS_CERT", c.NATSCert}, {"NATS_KEY", c.NATSKey},
		} {
			if v.val != "" {
				mode := c.ClusterMode
				if mode == "" {
					mode = clusterOff
				}
				return badVar(v.name, "only used with SWITCHBOARD_CLUSTER=external (it is %s)", mode)
			}
		}
		return nil
	}
	switch {
	case c.NATSCert != "" && c.NATSKey == "":
		return badVar("NATS_KEY", "must be set when SWITCHBOARD_NATS_CERT is")
	case c.NATSKey != "" && c.NATSCert == "":
		return badVar("NATS_CERT", "must be set when SWITCHBOARD_NATS_KEY is")
	}
	return nil
}

// natsOptions checks the credential and TLS files now and returns the
// options that use them. nats.go reads them again at every (re)connect, so
// a renewed certificate or creds file is picked up without a restart.
// Errors are *configError; none repeats a file's content.
func natsOptions(cfg Config, now time.Time) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.NATSCreds != "" {
		if err := checkCreds(cfg.NATSCreds, now); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSCA != "" {
		b, err := os.ReadFile(cfg.NATSCA)
		if err != nil {
			return nil, badVar("NATS_CA", "%v", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return nil, badVar("NATS_CA", "%s holds no PEM certificate", cfg.NATSCA)
		}
		opts = append(opts, nats.RootCAs(cfg.NATSCA))
	}
	if cfg.NATSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.NATSCert, cfg.NATSKey); err != nil {
			return nil, badVar("NATS_CERT", "with SWITCHBOARD_NATS_KEY: %v", err)
		}
		opts = append(opts, nats.ClientCert(cfg.NATSCert, cfg.NATSKey))
	}
	return opts, nil
}

// checkCreds reads a .creds file the way nats.go will and checks what the
// server would otherwise refuse with a bare "authorization violation": a
// user JWT, a user seed, the seed being that user's, not expired.
func checkCreds(path string, now time.Time) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return badVar("NATS_CREDS", "%v", err)
	}
	// The parsers' errors never quote the content, but say it plainly anyway.
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return badVar("NATS_CREDS", "%s: no user JWT (want a .creds file as nsc writes it)", path)
	}
	claims, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return badVar("NATS_CREDS", "%s: no user JWT (want a .creds file as nsc writes it)", path)
	}
	kp, err := jwt.ParseDecoratedUserNKey(b)
	if err != nil {
		return badVar("NATS_CREDS", "%s: no user nkey seed (want a .creds file as nsc writes it)", path)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || pub != claims.Subject {
		return badVar("NATS_CREDS", "%s: the seed is not the key of the JWT's user %s", path, claims.Subject)
	}
	if claims.Expires != 0 && !now.Before(time.Unix(claims.Expires, 0)) {
		return badVar("NATS_CREDS", "%s: the user JWT expired at %s", path, time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// connectExternal connects to the operator's NATS. A refusal that comes
// from a setting (credentials, CA, client certificate) is a *configError
// naming the variable to fix; an unreachable server is a plain error.
func connectExternal(cfg Config, log *slog.Logger) (*nats.Conn, error) {
	opts, err := natsOptions(cfg, time.Now())
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(cfg.NodeName), nats.MaxReconnects(-1),
		nats.ReconnectHandler(func(*nats.Conn) { log.Warn("nats reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }))
	nc, err := nats.Connect(string(cfg.NATSURL), opts...)
	if err != nil {
		if ce := explainNATSRefusal(cfg, err); ce != nil {
			return nil, ce
		}
		return nil, fmt.Errorf("cluster: connect to SWITCHBOARD_NATS_URL: %w", err)
	}
	return nc, nil
}

// explainNATSRefusal names the variable behind a connect error, or returns
// nil when the error is not about a setting (server down, network).
func explainNATSRefusal(cfg Config, err error) error {
	urlAuth := false
	for _, s := range splitList(string(cfg.NATSURL)) {
		if u, perr := url.Parse(s); perr == nil && u.User != nil {
			urlAuth = true
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var host x509.HostnameError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		switch {
		case cfg.NATSCreds != "":
			return badVar("NATS_CREDS", "the NATS server refused these credentials (%v)", err)
		case urlAuth:
			return badVar("NATS_URL", "the NATS server refused the user and password (%v)", err)
		case cfg.NATSCert != "":
			return badVar("NATS_CERT", "the NATS server refused this client certificate (%v)", err)
		}
		return badVar("NATS_CREDS", "not set, and the NATS server wants credentials (%v): give a .creds file, or user:password in SWITCHBOARD_NATS_URL", err)
	case errors.As(err, &host):
		return badVar("NATS_URL", "the NATS server's certificate is not for this host name (%v)", err)
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		if cfg.NATSCA == "" {
			return badVar("NATS_CA", "not set, and the system's roots do not verify the NATS server's certificate (%v)", err)
		}
		return badVar("NATS_CA", "does not verify the NATS server's certificate (%v)", err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return badVar("NATS_CA", "TLS is on (CA or client certificate given) but the NATS server does not offer it")
	}
	// A server that verifies clients refuses a certificate (or its
	// absence) after the handshake in TLS 1.3: the client reads the alert,
	// or, as often, finds the connection closed.
	msg := err.Error()
	if strings.Contains(msg, "tls: certificate required") || strings.Contains(msg, "tls: bad certificate") ||
		strings.Contains(msg, "tls: unknown certificate authority") ||
		(errors.Is(err, nats.ErrTLS) && strings.Contains(msg, "closed by remote after TLS handshake")) {
		if cfg.NATSCert == "" {
			return badVar("NATS_CERT", "not set, and the NATS server refused the connection after the TLS handshake, as servers that verify clients (mTLS) do: set SWITCHBOARD_NATS_CERT and SWITCHBOARD_NATS_KEY (%v)", err)
		}
		return badVar("NATS_CERT", "the NATS server refused the connection after the TLS handshake: it does not accept this client certificate (%v)", err)
	}
	return nil
}
