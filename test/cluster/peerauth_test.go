package cluster_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestPeerTrafficNeedsTheHSMKey checks that only nodes holding the
// cluster's HSM key reach raft and /v1/rpc: a client with the root API key
// (a SysAdmin) is turned away at the TLS handshake or with 403.
func TestPeerTrafficNeedsTheHSMKey(t *testing.T) {
	n := testnode.Start(t, testnode.Options{})
	cert, err := kms.GenerateCertificate(n.Root, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A fresh node takes the peer handshake for /v1/rpc from anyone, so
	// that a node of an HSM it does not have can ask it to join; but it
	// answers nothing else, and a join without a proof of the root key is
	// 403 as well.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{ServerName: "node.keep.invalid", Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"h2"}},
	}}
	for _, path := range []string{"/v1/rpc/status", "/v1/rpc/membership", "/v1/rpc/join", "/v1/rpc/restart", "/v1/rpc/reset"} {
		resp, err := fresh.Post("https://"+n.Addr+path, "application/json", strings.NewReader(`{"cluster_id":"x","id":"1","sealed_root_key":"AQ==","proof":"AQ=="}`))
		if err != nil {
			t.Fatalf("POST %s over the peer handshake to a fresh node: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "access denied") {
			t.Errorf("POST %s over the peer handshake to a fresh node: %d %s, want 403", path, resp.StatusCode, body)
		}
	}
	fresh.CloseIdleConnections()

	// A node that holds something is no longer fresh: the peer protocols
	// demand the node identity of one of the cluster's HSMs.
	if err := n.RootClient(t).CreateKey(context.Background(), "", &kms.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []*tls.Config{
		{NextProtos: []string{"keep-raft/1"}},
		{NextProtos: []string{"keep-forward/1"}},
		{ServerName: "node.keep.invalid", NextProtos: []string{"h2"}},
	} {
		conf.Certificates, conf.InsecureSkipVerify = []tls.Certificate{cert}, true
		d := tls.Dialer{Config: conf}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(ctx, "tcp", n.Addr)
		cancel()
		if err == nil {
			// TLS 1.3 clients learn of a rejected certificate on first read.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "tls") {
			t.Errorf("handshake as a client with %+v: %v, want a TLS error", conf.NextProtos, err)
		}
	}

	// /v1/rpc over the normal client handshake: 403, also for the root key.
	hc := testnode.HTTPClient(t, n.Root, 5*time.Second)
	for _, path := range []string{"/v1/rpc/status", "/v1/rpc/membership", "/v1/rpc/join", "/v1/rpc/restart"} {
		resp, err := hc.Post("https://"+n.Addr+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s as root: %d, want 403", path, resp.StatusCode)
		}
	}

	// The node's own status is for SysAdmins, as JSON.
	resp, err := hc.Get("https://" + n.Addr + "/v1/health/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st struct {
		Host string `json:"host"`
		Role string `json:"role"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Host != n.Host || st.Role != "Leader" {
		t.Errorf("GET /v1/health/status as root: %d %s", resp.StatusCode, body)
	}
	anon := testnode.HTTPClient(t, nil, 5*time.Second)
	if resp, err := anon.Get("https://" + n.Addr + "/v1/health/status"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /v1/health/status without a certificate: %v, %v; want 403", resp, err)
	}
}
