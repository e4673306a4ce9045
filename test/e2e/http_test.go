package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/test/testnode"
)

// checkLength fails unless the reply carried an explicit Content-Length equal
// to its body and was not compressed.
func checkLength(t *testing.T, what string, r reply) {
	t.Helper()
	if r.Length < 0 || r.Header.Get("Content-Length") == "" && r.Proto != "HTTP/2.0" {
		t.Errorf("%s: no Content-Length (ContentLength %d, headers %v)", what, r.Length, r.Header)
	} else if r.Length != int64(len(r.Body)) {
		t.Errorf("%s: Content-Length %d, body %d bytes", what, r.Length, len(r.Body))
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("%s: Content-Encoding %q, want none", what, ce)
	}
	if te := r.Header.Get("Transfer-Encoding"); te != "" {
		t.Errorf("%s: Transfer-Encoding %q, want none", what, te)
	}
}

// errMessage decodes an error reply: JSON {"message":…} or protobuf
// ErrResponse, as the client does (spec §4.1).
func errMessage(t *testing.T, what string, r reply) string {
	t.Helper()
	var m pb.ErrResponse
	switch ct := r.Header.Get("Content-Type"); ct {
	case "application/json":
		var raw map[string]any
		if err := json.Unmarshal(r.Body, &raw); err != nil {
			t.Errorf("%s: error body is not JSON: %v: %q", what, err, r.Body)
			return ""
		}
		if err := protojson.Unmarshal(r.Body, &m); err != nil {
			t.Errorf("%s: error body %q: %v", what, r.Body, err)
		}
	case "application/octet-stream":
		if err := proto.Unmarshal(r.Body, &m); err != nil {
			t.Errorf("%s: error body %q: %v", what, r.Body, err)
		}
	default:
		t.Errorf("%s: error reply Content-Type %q, want application/json (or application/octet-stream); body %q", what, ct, r.Body)
		return string(r.Body)
	}
	return m.Message
}

// TestHTTP checks the wire rules the official client and MinIO rely on with
// raw HTTPS requests, over HTTP/1.1 and HTTP/2.
func TestHTTP(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "raw"}), "CreateKey raw in default")
	base := "https://" + n.Addr

	for _, h2 := range []bool{false, true} {
		pname := "HTTP1"
		if h2 {
			pname = "HTTP2"
		}
		anon := testnode.HTTPClientProto(t, nil, h2, time.Minute)
		root := testnode.HTTPClientProto(t, n.Root, h2, time.Minute)

		t.Run(pname+"/Unauthenticated", func(t *testing.T) {
			for _, path := range []string{"/version", "/v1/health/live", "/v1/health/ready", "/v1/health/ready?write"} {
				r := do(t, anon, http.MethodGet, base+path, nil, map[string]string{"Accept-Encoding": "gzip"})
				if r.Status != http.StatusOK {
					t.Errorf("GET %s without client certificate: %d %q, want 200", path, r.Status, r.Body)
				}
				if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; r.Proto != want {
					t.Errorf("GET %s: protocol %s, want %s", path, r.Proto, want)
				}
				checkLength(t, "GET "+path, r)
			}
		})

		t.Run(pname+"/Version", func(t *testing.T) {
			for _, tc := range []struct{ accept, wantCT string }{
				{"application/json", "application/json"},
				{"application/octet-stream", "application/octet-stream"},
			} {
				r := do(t, anon, http.MethodGet, base+"/version", nil, map[string]string{"Accept": tc.accept, "Accept-Encoding": "gzip"})
				if r.Status != http.StatusOK {
					t.Fatalf("GET /version Accept %s: %d", tc.accept, r.Status)
				}
				checkLength(t, "GET /version Accept "+tc.accept, r)
				if ct := r.Header.Get("Content-Type"); ct != tc.wantCT {
					t.Errorf("GET /version Accept %s: Content-Type %q, want %q", tc.accept, ct, tc.wantCT)
				}
				var v pb.VersionResponse
				var err error
				if tc.wantCT == "application/json" {
					err = protojson.Unmarshal(r.Body, &v)
					var raw map[string]any
					if jerr := json.Unmarshal(r.Body, &raw); jerr != nil || raw["api_version"] != "v1" {
						t.Errorf("GET /version JSON: %q, want a field api_version \"v1\"", r.Body)
					}
				} else {
					err = proto.Unmarshal(r.Body, &v)
				}
				if err != nil {
					t.Errorf("GET /version Accept %s: decoding %q: %v", tc.accept, r.Body, err)
				}
				if v.APIVersion != "v1" || v.Version == "" || v.Host != n.Addr {
					t.Errorf("GET /version Accept %s: %+v, want api_version v1, a version, host %s", tc.accept, &v, n.Addr)
				}
			}
			// The client sends Accept: application/*; it decodes protobuf iff
			// the reply says application/octet-stream, else protojson.
			r := do(t, anon, http.MethodGet, base+"/version", nil, map[string]string{"Accept": "application/*"})
			var v pb.VersionResponse
			var err error
			if r.Header.Get("Content-Type") == "application/octet-stream" {
				err = proto.Unmarshal(r.Body, &v)
			} else {
				err = protojson.Unmarshal(r.Body, &v)
			}
			if err != nil || v.APIVersion != "v1" {
				t.Errorf("GET /version Accept application/*: Content-Type %q body %q: %v", r.Header.Get("Content-Type"), r.Body, err)
			}
		})

		t.Run(pname+"/NoClientCertificate", func(t *testing.T) {
			body := appendFrame(nil, cmds.EnclaveList, nil)
			for _, path := range []string{"/v1/kms", "/v1/kms/default"} {
				r := do(t, anon, http.MethodPost, base+path, body, map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"})
				if r.Status != http.StatusForbidden {
					t.Errorf("POST %s without client certificate: %d %q, want 403", path, r.Status, r.Body)
				}
				checkLength(t, "POST "+path+" without certificate", r)
				if msg := errMessage(t, "POST "+path, r); msg != kms.ErrPermission.Err {
					t.Errorf("POST %s without client certificate: message %q, want %q", path, msg, kms.ErrPermission.Err)
				}
			}
		})

		t.Run(pname+"/LargeBatchReply", func(t *testing.T) {
			var body []byte
			const N = 100
			for range N {
				var err error
				body, err = cmds.Encode(body, cmds.KeyGenerate, &kms.GenerateKeyRequest{Name: "raw", Length: 64, AssociatedData: []byte(`{"bucket":"bucket/object"}`)})
				noErr(t, err, "encode")
			}
			r := do(t, root, http.MethodPost, base+"/v1/kms/default", body, map[string]string{
				"Content-Type": "application/octet-stream", "Accept": "application/*", "Accept-Encoding": "gzip",
			})
			if r.Status != http.StatusOK {
				t.Fatalf("POST 100× KEY:GENERATE: %d %q", r.Status, r.Body)
			}
			checkLength(t, "reply to 100× KEY:GENERATE", r)
			if len(r.Body) <= 9*1024 {
				t.Errorf("reply to 100× KEY:GENERATE of 64 bytes: only %d bytes", len(r.Body))
			}
			frames, err := parseFrames(r.Body)
			if err != nil || len(frames) != N {
				t.Fatalf("reply to 100× KEY:GENERATE: %d frames, %v", len(frames), err)
			}
			for i, f := range frames {
				var g pb.GenerateKeyResponse
				if f.Cmd != cmds.KeyGenerate || proto.Unmarshal(f.Payload, &g) != nil || len(g.Plaintext) != 64 || g.Version != 1 {
					t.Fatalf("reply frame %d: command %d, %d bytes payload", i, f.Cmd, len(f.Payload))
				}
			}
			// The same batch with the official client, which needs Content-Length.
			reqs := make([]*kms.GenerateKeyRequest, N)
			for i := range reqs {
				reqs[i] = &kms.GenerateKeyRequest{Name: "raw", Length: 64}
			}
			gs, err := c.GenerateKey(ctx, "", reqs...)
			noErr(t, err, "client GenerateKey 100×64 bytes")
			if len(gs) != N {
				t.Errorf("client GenerateKey: %d replies", len(gs))
			}
		})

		t.Run(pname+"/ErrorReplies", func(t *testing.T) {
			body, _ := cmds.Encode(nil, cmds.KeyStatus, &kms.KeyStatusRequest{Name: "missing"})
			for _, accept := range []string{"application/json", "application/*", "application/octet-stream"} {
				r := do(t, root, http.MethodPost, base+"/v1/kms/default", body, map[string]string{
					"Content-Type": "application/octet-stream", "Accept": accept, "Accept-Encoding": "gzip",
				})
				if r.Status != http.StatusNotFound {
					t.Errorf("KEY:STATUS missing (Accept %s): %d, want 404", accept, r.Status)
				}
				checkLength(t, "404 reply", r)
				if msg := errMessage(t, "KEY:STATUS missing", r); msg != "key does not exist" {
					t.Errorf("KEY:STATUS missing (Accept %s): message %q, want %q", accept, msg, "key does not exist")
				}
				if accept == "application/json" && r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("error reply to Accept application/json: Content-Type %q", r.Header.Get("Content-Type"))
				}
			}
		})

		t.Run(pname+"/MalformedFrames", func(t *testing.T) {
			status, _ := cmds.Encode(nil, cmds.KeyStatus, &kms.KeyStatusRequest{Name: "raw"})
			truncated := appendFrame(nil, cmds.KeyStatus, []byte{0x0a, 0x03, 'r', 'a', 'w'})
			truncated = truncated[:len(truncated)-2]
			lying := bytes.Clone(status)
			lying[5] += 50 // length larger than what follows
			for _, tc := range []struct {
				name string
				body []byte
			}{
				{"empty body", nil},
				{"3 bytes", []byte{0x00, 0xcc, 0x00}},
				{"header only, length 10", []byte{0x00, 0xcc, 0x00, 0x00, 0x00, 0x0a}},
				{"truncated payload", truncated},
				{"length beyond body", lying},
				{"trailing garbage after a frame", append(bytes.Clone(status), 0xde, 0xad)},
				{"unknown command 999", appendFrame(nil, 999, nil)},
				{"unknown command 0", appendFrame(nil, 0, nil)},
				{"unknown command 65535 in a batch", append(bytes.Clone(status), appendFrame(nil, 65535, nil)...)},
				{"payload is not protobuf", appendFrame(nil, cmds.KeyStatus, []byte{0xff, 0xff, 0xff, 0xff})},
			} {
				r := do(t, root, http.MethodPost, base+"/v1/kms/default", tc.body, map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"})
				if r.Status != http.StatusBadRequest {
					t.Errorf("malformed body (%s): %d %q, want 400", tc.name, r.Status, r.Body)
					continue
				}
				checkLength(t, "400 reply ("+tc.name+")", r)
				if msg := errMessage(t, tc.name, r); msg == "" {
					t.Errorf("malformed body (%s): 400 without a message", tc.name)
				}
			}
		})

		t.Run(pname+"/MixedBatches", func(t *testing.T) {
			create := func(name string) []byte {
				b, _ := cmds.Encode(nil, cmds.KeyCreate, &kms.CreateKeyRequest{Name: name})
				return b
			}
			status, _ := cmds.Encode(nil, cmds.KeyStatus, &kms.KeyStatusRequest{Name: "raw"})
			p := pname
			for _, tc := range []struct {
				name    string
				body    []byte
				created []string
			}{
				{"write then read", append(create("mixed-a-"+p), status...), []string{"mixed-a-" + p}},
				{"read then write", append(bytes.Clone(status), create("mixed-b-"+p)...), []string{"mixed-b-" + p}},
				{"two writes", append(create("mixed-c-"+p), create("mixed-d-"+p)...), []string{"mixed-c-" + p, "mixed-d-" + p}},
			} {
				r := do(t, root, http.MethodPost, base+"/v1/kms/default", tc.body, map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"})
				if r.Status != http.StatusBadRequest {
					t.Errorf("batch %s: %d %q, want 400", tc.name, r.Status, r.Body)
				}
				checkLength(t, "batch "+tc.name, r)
				errMessage(t, "batch "+tc.name, r)
				for _, k := range tc.created {
					_, err := c.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: k})
					errIs(t, err, kms.ErrKeyNotFound, "key of a refused batch ("+tc.name+")")
				}
			}
		})

		t.Run(pname+"/Routes", func(t *testing.T) {
			body := appendFrame(nil, cmds.EnclaveList, nil)
			for _, path := range []string{"/v1/kms", "/v1/kms/"} {
				r := do(t, root, http.MethodPost, base+path, body, map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/*"})
				if r.Status != http.StatusOK {
					t.Errorf("POST %s ENCLAVE:LIST: %d %q, want 200", path, r.Status, r.Body)
					continue
				}
				checkLength(t, "POST "+path, r)
				frames, err := parseFrames(r.Body)
				var l pb.ListEnclavesResponse
				if err != nil || len(frames) != 1 || frames[0].Cmd != cmds.EnclaveList || proto.Unmarshal(frames[0].Payload, &l) != nil {
					t.Errorf("POST %s ENCLAVE:LIST: reply %x", path, r.Body)
				}
			}
			// Key commands without an enclave act on "default".
			status, _ := cmds.Encode(nil, cmds.KeyStatus, &kms.KeyStatusRequest{Name: "raw"})
			for _, path := range []string{"/v1/kms", "/v1/kms/"} {
				r := do(t, root, http.MethodPost, base+path, status, map[string]string{"Content-Type": "application/octet-stream"})
				frames, err := parseFrames(r.Body)
				var ks pb.KeyStatusResponse
				if r.Status != http.StatusOK || err != nil || len(frames) != 1 || frames[0].Cmd != cmds.KeyStatus ||
					proto.Unmarshal(frames[0].Payload, &ks) != nil || ks.Name != "raw" {
					t.Errorf("POST %s KEY:STATUS raw (a key of the default enclave): %d %q", path, r.Status, r.Body)
				}
			}
			for _, tc := range []struct{ method, path string }{
				{http.MethodGet, "/v1/kms"},
				{http.MethodGet, "/v1/kms/"},
				{http.MethodGet, "/v1/kms/default"},
				{http.MethodPut, "/v1/kms/default"},
				{http.MethodDelete, "/v1/kms"},
			} {
				r := do(t, root, tc.method, base+tc.path, nil, map[string]string{"Accept-Encoding": "gzip"})
				if r.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d, want 405", tc.method, tc.path, r.Status)
				}
				checkLength(t, tc.method+" "+tc.path, r)
			}
			// The Host header is ignored (client failover keeps the first host's name).
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/kms/default", bytes.NewReader(appendFrame(nil, cmds.KeyList, nil)))
			req.Host = "kms-elsewhere.example.net:7373"
			resp, err := root.Do(req)
			if err != nil {
				t.Fatalf("POST with another Host header: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("POST /v1/kms/default with Host %s: %d, want 200", req.Host, resp.StatusCode)
			}
		})

		t.Run(pname+"/BodyLimit", func(t *testing.T) {
			// About 1 MiB in one batch is fine.
			var body []byte
			for range 16 {
				var err error
				body, err = cmds.Encode(body, cmds.KeyEncrypt, &kms.EncryptRequest{Name: "raw", Plaintext: bytes.Repeat([]byte{'x'}, 64<<10)})
				noErr(t, err, "encode")
			}
			r := do(t, root, http.MethodPost, base+"/v1/kms/default", body, map[string]string{"Content-Type": "application/octet-stream"})
			if r.Status != http.StatusOK {
				t.Errorf("POST of %d bytes (16 KEY:ENCRYPT of 64 KiB): %d %q, want 200", len(body), r.Status, r.Body)
			} else if frames, err := parseFrames(r.Body); err != nil || len(frames) != 16 {
				t.Errorf("POST of 16 KEY:ENCRYPT: %d reply frames, %v", len(frames), err)
			}

			// 64 MiB is over any limit of "a few MiB".
			big := appendFrame(nil, cmds.KeyEncrypt, make([]byte, 64<<20))
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/kms/default", bytes.NewReader(big))
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := root.Do(req)
			if err != nil {
				if !h2 {
					// HTTP/1.1: the server may answer and close before it
					// read the body; the client then sees a broken pipe.
					t.Logf("POST of 64 MiB over HTTP/1.1: %v", err)
					return
				}
				t.Fatalf("POST of 64 MiB: %v", err)
			}
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("POST of 64 MiB: %d %q, want 413", resp.StatusCode, buf.Bytes())
			}
			checkLength(t, "413 reply", reply{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes(), Proto: resp.Proto, Length: resp.ContentLength})
		})
	}

	t.Run("TLS", func(t *testing.T) {
		dial := func(conf *tls.Config) (*tls.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			return tls.DialWithDialer(d, "tcp", n.Addr, conf)
		}
		if conn, err := dial(&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
			conn.Close()
			t.Errorf("TLS 1.1 handshake succeeded, want TLS ≥ 1.2 only")
		}
		requested := false
		conn, err := dial(&tls.Config{
			InsecureSkipVerify: true,
			MinVersion:         tls.VersionTLS12,
			MaxVersion:         tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				requested = true
				return &tls.Certificate{}, nil
			},
		})
		if err != nil {
			t.Fatalf("TLS 1.2 handshake: %v", err)
		}
		conn.Close()
		if !requested {
			t.Errorf("the server did not request a client certificate")
		}
		conn, err = dial(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Errorf("ALPN: negotiated %q, want h2", p)
		}
		conn.Close()
	})
}
