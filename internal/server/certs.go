package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/metrics"
)

// certCheckInterval is how often the certificate files of the config are
// checked for changes, and the certificates for their expiry.
const certCheckInterval = 10 * time.Second

// expiryWarningInterval is how often a certificate about to expire is
// warned of in the log.
const expiryWarningInterval = time.Hour

// certStore holds the certificates the node serves to clients: the
// key/certificate pairs of the config file, reloaded when their files
// change so that new connections get the new certificate without a
// restart, or one self-signed certificate.
type certStore struct {
	pairs []*certPair
}

// certPair is one served certificate.
type certPair struct {
	certFile, keyFile string // "" for a self-signed certificate

	cert atomic.Pointer[tls.Certificate]

	// Used by the goroutine that checks the files only.
	certPEM, keyPEM []byte    // the contents the certificate was loaded from
	failed          string    // the last reload error, logged once
	warned          time.Time // when expiry was last warned of
}

// name is how logs and metrics name the certificate.
func (p *certPair) name() string {
	if p.certFile == "" {
		return "self-signed"
	}
	return p.certFile
}

// loadPair loads a key/certificate pair from its files.
func loadPair(certFile, keyFile string) (*certPair, error) {
	p := &certPair{certFile: certFile, keyFile: keyFile}
	if _, err := p.reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// reload loads the pair again if its files changed, and reports whether
// they did. A pair whose new files do not load (say, the certificate is
// replaced but the key not yet) keeps serving the certificate it has.
func (p *certPair) reload() (bool, error) {
	certPEM, err := os.ReadFile(p.certFile)
	if err != nil {
		return false, fmt.Errorf("failed to load TLS certificate %s: %w", p.certFile, err)
	}
	keyPEM, err := os.ReadFile(p.keyFile)
	if err != nil {
		return false, fmt.Errorf("failed to load TLS certificate %s: %w", p.certFile, err)
	}
	if bytes.Equal(certPEM, p.certPEM) && bytes.Equal(keyPEM, p.keyPEM) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("failed to load TLS certificate %s: %w", p.certFile, err)
	}
	p.certPEM, p.keyPEM = certPEM, keyPEM
	p.cert.Store(&cert)
	return true, nil
}

// getCertificate is the listener's tls.Config.GetCertificate: the first
// certificate the client supports, or else the first one, as crypto/tls
// chooses among tls.Config.Certificates.
func (s *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	first := s.pairs[0].cert.Load()
	if len(s.pairs) == 1 {
		return first, nil
	}
	for _, p := range s.pairs {
		if c := p.cert.Load(); hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	return first, nil
}

// certificates reports the served certificates, for the metrics.
func (s *certStore) certificates() []metrics.Certificate {
	list := make([]metrics.Certificate, 0, len(s.pairs))
	for _, p := range s.pairs {
		if leaf := p.cert.Load().Leaf; leaf != nil {
			list = append(list, metrics.Certificate{Name: p.name(), NotAfter: leaf.NotAfter})
		}
	}
	return list
}

// watch checks the certificates every interval until ctx ends: it reloads
// those whose files changed and warns of those about to expire.
func (s *certStore) watch(ctx context.Context, interval time.Duration) {
	s.check()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.check()
		}
	}
}

// check reloads changed certificates and warns of expiring ones.
func (s *certStore) check() {
	for _, p := range s.pairs {
		if p.certFile != "" {
			changed, err := p.reload()
			switch {
			case err != nil && err.Error() != p.failed:
				slog.Warn("TLS certificate not reloaded; serving the one loaded before", "cert", p.certFile, "err", err)
				p.failed = err.Error()
			case err == nil && changed:
				slog.Info("TLS certificate reloaded", "cert", p.certFile, "not_after", p.cert.Load().Leaf.NotAfter)
				p.failed, p.warned = "", time.Time{}
			case err == nil:
				p.failed = ""
			}
		}
		p.warnExpiry(time.Now())
	}
}

// warnExpiry logs a warning, at most once per expiryWarningInterval, if
// the certificate expires within metrics.ExpiryWarning.
func (p *certPair) warnExpiry(now time.Time) {
	leaf := p.cert.Load().Leaf
	if leaf == nil || leaf.NotAfter.Sub(now) >= metrics.ExpiryWarning || now.Sub(p.warned) < expiryWarningInterval {
		return
	}
	p.warned = now
	if now.After(leaf.NotAfter) {
		slog.Warn("TLS certificate has expired", "cert", p.name(), "not_after", leaf.NotAfter)
		return
	}
	slog.Warn("TLS certificate expires soon", "cert", p.name(), "not_after", leaf.NotAfter,
		"expires_in", leaf.NotAfter.Sub(now).Round(time.Minute).String())
}
