package server

import (
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
	"slices"
	"time"

	"github.com/keep-kms/keep/internal/cluster"
)

// tlsConfig is the listener's TLS configuration. Clients are asked for a
// certificate but need none to connect: API keys are self-signed, and
// /version and the health probes serve everyone. Who may do what is decided
// by the identity of the certificate, in the service. Connections that
// offer the raft protocol get the node certificate and mutual
// authentication instead. Each handshake gets the certificate the store
// holds then, so reloaded certificates serve new connections.
//
// Client connections accepted through the guard's listener get a
// configuration that bounds those without a client certificate
// (anonymousGuard); nil guard leaves them unbounded.
// errNotServing fails the handshake of a client while the node starts or
// stops.
var errNotServing = errors.New("keep: this node is starting or stopping: try another")

func tlsConfig(certs *certStore, clientCAs *x509.CertPool, trans *cluster.Transport, guard *anonymousGuard, serving func() bool) *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
		ClientAuth:     tls.RequestClientCert,
		ClientCAs:      clientCAs,
		NextProtos:     []string{"h2", "http/1.1", cluster.ALPN, cluster.ForwardALPN},
	}
	conf := base.Clone()
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := trans.ServerConfig(hello); c != nil {
			return c, nil
		}
		if serving != nil && !serving() {
			// A client that cannot connect tries its next server, with
			// its request untouched: a starting or stopping node refuses
			// the handshake rather than a request it has been sent.
			return nil, errNotServing
		}
		if guard == nil {
			return nil, nil
		}
		return guard.config(base, hello), nil
	}
	return conf
}

// loadCertificates reads the configured key/certificate pairs, or makes a
// self-signed certificate for the node's names when none is configured,
// and the CA certificates of tls.ca.
func loadCertificates(c *Config, names []string) (*certStore, *x509.CertPool, error) {
	var pool *x509.CertPool
	if c != nil && c.TLS.CA != "" {
		pem, err := os.ReadFile(c.TLS.CA)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read tls.ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls.ca %s holds no PEM certificate", c.TLS.CA)
		}
	}
	store := &certStore{}
	if c == nil || len(c.TLS.Certs) == 0 {
		cert, err := selfSigned(names)
		if err != nil {
			return nil, nil, err
		}
		p := &certPair{}
		p.cert.Store(&cert)
		store.pairs = append(store.pairs, p)
		return store, pool, nil
	}
	for _, kc := range c.TLS.Certs {
		p, err := loadPair(kc.Cert, kc.Key)
		if err != nil {
			return nil, nil, err
		}
		store.pairs = append(store.pairs, p)
	}
	return store, pool, nil
}

// selfSigned makes a certificate for the given host names and IPs.
func selfSigned(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keep"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if n != "" && !slices.Contains(tmpl.DNSNames, n) {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("failed to create self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("failed to parse self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// writeDevCertificate writes the self-signed certificate of a dev node to
// a file, so that clients that verify certificates (MinIO) can trust it,
// and returns the file's path. Only dev nodes do this: a node with a data
// directory must not write anything before its HSM key is checked.
func writeDevCertificate(store *certStore, address string) (string, error) {
	cert := store.pairs[0].cert.Load()
	_, port, _ := net.SplitHostPort(address)
	dir := filepath.Join(os.TempDir(), "keep-dev-"+port)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "public.crt")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return path, os.WriteFile(path, data, 0o644) // #nosec G306 -- a public certificate, written so that clients can trust it
}
