package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/minio/kms-go/kms"
)

// describeError turns err into the message Main prints after "keep: ". It
// is the one place that maps server and transport errors to advice: the
// message says what went wrong and, where it can, what to do.
func describeError(err error) string {
	host := ""
	if h := kms.AsHostError(err); h != nil {
		host = strings.TrimPrefix(h.Host, "https://")
	}
	at := func(msg string) string {
		if host == "" {
			return msg
		}
		return host + ": " + msg
	}

	var apiErr kms.Error
	if errors.As(err, &apiErr) {
		return describeAPIError(apiErr)
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	// The advice below is about reaching a server, so it is only for
	// errors of requests to one, which kms-go and the commands' own
	// requests wrap in a HostError: never for errors of the server
	// command itself, such as a listen address in use.
	if kms.AsHostError(err) == nil {
		return err.Error()
	}

	var (
		certErr     *tls.CertificateVerificationError
		unknownCA   x509.UnknownAuthorityError
		hostnameErr x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		dnsErr      *net.DNSError
		opErr       *net.OpError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return at("timed out")
	case errors.As(err, &unknownCA), errors.As(err, &hostnameErr), errors.As(err, &invalidErr), errors.As(err, &certErr):
		return at("server certificate not trusted: " + innermost(err).Error() +
			" (use --insecure to skip verification of a self-signed certificate)")
	case errors.Is(err, syscall.ECONNREFUSED):
		return at("connection refused (is the server running? check MINIO_KMS_SERVER)")
	case errors.As(err, &dnsErr):
		return at("cannot resolve host " + dnsErr.Name + " (check MINIO_KMS_SERVER)")
	case errors.As(err, &opErr):
		return at("cannot reach server: " + innermost(err).Error() + " (check MINIO_KMS_SERVER)")
	}
	return err.Error()
}

// describeAPIError explains an error reply of the server. The server's
// message is kept; advice is added where the status says more.
func describeAPIError(err kms.Error) string {
	msg := err.Err
	if msg == "" {
		msg = strings.ToLower(http.StatusText(err.Code))
	}
	switch err.Code {
	case http.StatusForbidden:
		return msg + " (check MINIO_KMS_API_KEY and the enclave)"
	case http.StatusUnauthorized:
		return msg + " (check MINIO_KMS_API_KEY)"
	case http.StatusServiceUnavailable:
		return msg + " (the server cannot serve this now; try again shortly)"
	}
	switch {
	case err.Code == http.StatusConflict && strings.HasPrefix(msg, "key version is in use") && !strings.Contains(msg, "--force"):
		return msg + " (add --force to go ahead anyway)"
	case errors.Is(err, kms.ErrEnclaveNotFound):
		return msg + " (check the enclave name)"
	case errors.Is(err, kms.ErrDecrypt):
		return msg + " (wrong key, key version or ciphertext)"
	}
	return msg
}

// innermost returns the last error in err's Unwrap chain, which for
// transport errors is the one without URLs and host names around it.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
