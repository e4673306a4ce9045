// Command baseline is the yardstick of the server CPU benchmark in test/e2e
// (BenchmarkServerCPU). It is a bare HTTPS server with the same TLS setup as
// keep — a self-signed ECDSA P-256 certificate, TLS 1.2 or newer, client
// certificates requested but not required, HTTP/2 and HTTP/1.1 — whose
// handler reads the request body and answers with a constant body. The CPU
// time it spends per request is the cost of TLS, HTTP and the Go runtime
// alone; the benchmark compares keep's CPU time per operation with it.
//
// Usage:
//
//	baseline -address IP:PORT NAME=FILE...
//
// A POST to /v1/kms/NAME (the path the kms-go client uses for enclave NAME)
// is answered 200 with the bytes of FILE, Content-Type
// application/octet-stream and an explicit Content-Length. The files hold
// replies captured from keep, so the kms-go client decodes them as it would
// keep's own. Any other path gets an empty 404. The program prints
// "baseline ready" on stdout once it accepts connections and runs until it
// is killed.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// reply is one constant answer with its header values prepared up front.
type reply struct {
	body   []byte
	length []string // Content-Length
}

var contentType = []string{"application/octet-stream"}

func main() {
	address := flag.String("address", "127.0.0.1:7373", "IP:PORT to listen on")
	flag.Parse()

	replies := map[string]reply{}
	for _, arg := range flag.Args() {
		name, file, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			log.Fatalf("baseline: argument %q is not NAME=FILE", arg)
		}
		body, err := os.ReadFile(file)
		if err != nil {
			log.Fatalf("baseline: %v", err)
		}
		replies["/v1/kms/"+name] = reply{body: body, length: []string{strconv.Itoa(len(body))}}
	}

	host, _, err := net.SplitHostPort(*address)
	if err != nil {
		log.Fatalf("baseline: invalid address: %v", err)
	}
	cert, err := selfSigned(host)
	if err != nil {
		log.Fatalf("baseline: %v", err)
	}
	ln, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatalf("baseline: %v", err)
	}

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			rep, ok := replies[r.URL.Path]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			h := w.Header()
			h["Content-Type"] = contentType
			h["Content-Length"] = rep.length
			w.WriteHeader(http.StatusOK)
			w.Write(rep.body)
		}),
		// As keep's listener.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	fmt.Println("baseline ready")
	log.Fatal(srv.Serve(tls.NewListener(ln, conf)))
}

// selfSigned makes a certificate for host, as keep does without a
// configured certificate.
func selfSigned(host string) (tls.Certificate, error) {
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
		Subject:               pkix.Name{CommonName: "baseline"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
