package server

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
)

// guardedServer serves TLS handshakes through a guard and returns its
// address; each accepted connection is held open until the client closes
// it or the guard does.
func guardedServer(t *testing.T, g *anonymousGuard) string {
	t.Helper()
	cert, err := selfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	base := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	conf := base.Clone()
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) { return g.config(base, hello), nil }
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(g.listener(raw), conf)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return raw.Addr().String()
}

// dial completes a handshake, with the certificate of key if not nil, and
// reports whether the server accepted it (in TLS 1.3 the client learns of
// a refusal on its first read).
func dial(t *testing.T, addr string, key mtls.PrivateKey) (*tls.Conn, bool) {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true}
	if key != nil {
		cert, err := kms.GenerateCertificate(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, false
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.SetReadDeadline(time.Time{})
		return c, true
	}
	c.Close()
	return nil, false
}

func TestAnonymousGuard(t *testing.T) {
	g := &anonymousGuard{max: 3, lifetime: time.Hour}
	addr := guardedServer(t, g)
	var held []*tls.Conn
	for i := range 3 {
		c, ok := dial(t, addr, nil)
		if !ok {
			t.Fatalf("anonymous connection %d refused within the limit", i+1)
		}
		held = append(held, c)
	}
	if _, ok := dial(t, addr, nil); ok {
		t.Fatal("anonymous connection over the limit accepted")
	}
	key, err := mtls.GenerateKeyEdDSA(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dial(t, addr, key); !ok {
		t.Fatal("connection with a client certificate refused")
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for g.open.Load() >= 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := dial(t, addr, nil); !ok {
		t.Fatal("anonymous connection refused after one was closed")
	}
}

func TestAnonymousLifetime(t *testing.T) {
	g := &anonymousGuard{max: 10, lifetime: 300 * time.Millisecond}
	addr := guardedServer(t, g)
	c, ok := dial(t, addr, nil)
	if !ok {
		t.Fatal("anonymous connection refused")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from the server")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v, lifetime 300ms", d)
	}
	if n := g.open.Load(); n != 0 {
		t.Errorf("%d anonymous connections counted after the last closed", n)
	}
}
