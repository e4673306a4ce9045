package server

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/cluster"
)

// TestDrainAnswersSlowRequest: a request that a client sent before the
// node began to stop is answered before the node closes its connections,
// even when it takes longer than a moment, and only client connections
// hold the drain up.
func TestDrainAnswersSlowRequest(t *testing.T) {
	const slow = 3 * time.Second // longer than the 2 s the node used to wait; well within drainWait
	var clients clientConns
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		if r.URL.Path == "/v1/rpc/stream" { // lasts like the applied-index stream
			<-release
			return
		}
		time.Sleep(slow)
		io.WriteString(w, "answered")
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = clients.track
	srv.StartTLS()
	defer srv.Close()
	defer close(release)

	peer := srv.Client().Transport.(*http.Transport).Clone()
	peer.TLSClientConfig = &tls.Config{ServerName: cluster.RPCServerName, InsecureSkipVerify: true, NextProtos: []string{"h2"}} // #nosec G402 -- test server
	go func() {
		if resp, err := (&http.Client{Transport: peer}).Get(srv.URL + "/v1/rpc/stream"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	if n := clients.count(); n != 0 {
		t.Fatalf("a peer's connection counts as %d client connections", n)
	}

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := srv.Client().Post(srv.URL+"/v1/kms/decrypt", "application/octet-stream", nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{string(b), err}
	}()
	<-started
	if n := clients.count(); n != 1 {
		t.Fatalf("%d client connections while a client's request is served, want 1", n)
	}

	var serving atomic.Bool
	serving.Store(true)
	clients.drain(srv.Config, &serving)
	if serving.Load() {
		t.Error("a draining node still admits clients")
	}
	srv.CloseClientConnections() // what the process's exit does to whatever is left

	r := <-done
	if r.err != nil || r.body != "answered" {
		t.Fatalf("request in flight when the node stopped: %q, %v; want it answered", r.body, r.err)
	}
	if n := clients.count(); n != 0 {
		t.Errorf("%d client connections left after the drain", n)
	}
}
