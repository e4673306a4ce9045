package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
)

func TestEndpoints(t *testing.T) {
	tests := []struct {
		env  string
		want []string
	}{
		{"", []string{DefaultServer}},
		{" , ", []string{DefaultServer}},
		{"https://a:7373", []string{"https://a:7373"}},
		{"https://a:7373, https://b:7373,,c:7373 ", []string{"https://a:7373", "https://b:7373", "c:7373"}},
	}
	for _, tt := range tests {
		if got := endpoints(tt.env); !slices.Equal(got, tt.want) {
			t.Errorf("endpoints(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestClientAPIKey(t *testing.T) {
	const (
		k1 = "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag"
		k2 = "k2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
	)
	tests := []struct {
		name    string
		env     map[string]string
		flag    string
		wantErr string
	}{
		{name: "none", wantErr: "no API key: set MINIO_KMS_API_KEY or pass --api-key"},
		{name: "blank env", env: map[string]string{EnvAPIKey: "  "}, wantErr: "no API key"},
		{name: "env", env: map[string]string{EnvAPIKey: k1}},
		{name: "env with spaces", env: map[string]string{EnvAPIKey: " " + k1 + "\n"}},
		{name: "flag", flag: k2},
		{name: "flag over bad env", env: map[string]string{EnvAPIKey: "garbage"}, flag: k1},
		{name: "kes spelling", flag: "kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw"},
		{name: "bad key", flag: "k1:short", wantErr: "invalid API key: expected k1:…, k2:… or kes:v1:…"},
		{name: "bad kes key", flag: "kes:v1:sbDvZFqUPFFwxRS4EkuoEb2nyyInkdKSUEYHXFHeTouW", wantErr: "invalid API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{getenv: func(k string) string { return tt.env[k] }}
			c, err := a.client(&clientFlags{apiKey: tt.flag})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if tt.flag != "" && strings.Contains(err.Error(), tt.flag) {
					t.Errorf("error repeats the API key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Hosts(); !slices.Equal(got, []string{"localhost:7373"}) {
				t.Errorf("hosts %q, want the default localhost:7373", got)
			}
		})
	}
}

func TestKESAPIKey(t *testing.T) {
	for _, s := range []string{
		"k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag",
		"k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
	} {
		key, err := parseAPIKey(s)
		if err != nil {
			t.Fatal(err)
		}
		spelled := kesAPIKey(key)
		kesKey, err := kes.ParseAPIKey(spelled)
		if err != nil {
			t.Fatalf("kes cannot parse %s: %v", spelled, err)
		}
		if got, want := kesKey.Identity().String(), kesIdentity(key.Identity()); got != want {
			t.Errorf("%s: KES identity %s, want %s", s, got, want)
		}
		back, err := parseAPIKey(spelled)
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != s {
			t.Errorf("%s → %s → %s", s, spelled, back)
		}
	}

	k2, err := parseAPIKey("k2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA")
	if err != nil {
		t.Fatal(err)
	}
	if s := kesAPIKey(k2); s != "" {
		t.Errorf("ECDSA key got a KES spelling: %s", s)
	}
}

func TestListAll(t *testing.T) {
	// pages maps ContinueAt to the page the fake server returns.
	pages := map[string]*kms.Page[string]{
		"":  {Items: []string{"a", "b"}, ContinueAt: "c"},
		"c": {Items: []string{"c", "d"}, ContinueAt: "e"},
		"e": {Items: []string{"e"}},
	}
	var seen []*kms.ListRequest
	next := func(_ context.Context, req *kms.ListRequest) (*kms.Page[string], error) {
		r := *req
		seen = append(seen, &r)
		return pages[req.ContinueAt], nil
	}
	got, err := listAll(context.Background(), next, "enc", "p")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("items %q, want %q", got, want)
	}
	if len(seen) != 3 || seen[0].Enclave != "enc" || seen[2].Prefix != "p" {
		t.Errorf("unexpected requests: %+v", seen)
	}

	stuck := func(context.Context, *kms.ListRequest) (*kms.Page[string], error) {
		return &kms.Page[string]{Items: []string{"x"}, ContinueAt: "x"}, nil
	}
	if _, err := listAll(context.Background(), stuck, "", ""); err == nil || !strings.Contains(err.Error(), "does not advance") {
		t.Errorf("a page returned twice gave %v", err)
	}

	empty := func(context.Context, *kms.ListRequest) (*kms.Page[string], error) { return &kms.Page[string]{}, nil }
	if got, err := listAll(context.Background(), empty, "", ""); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty listing gave %q, %v; want an empty, non-nil slice", got, err)
	}

	failing := func(context.Context, *kms.ListRequest) (*kms.Page[string], error) { return nil, kms.ErrPermission }
	if _, err := listAll(context.Background(), failing, "", ""); !errors.Is(err, kms.ErrPermission) {
		t.Errorf("error %v, want %v", err, kms.ErrPermission)
	}
}

func TestDescribeError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&kms.HostError{Host: "a:7373", Err: kms.ErrPermission}, "access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)"},
		{&kms.HostError{Host: "a:7373", Err: kms.ErrKeyNotFound}, "key does not exist"},
		{&kms.HostError{Host: "a:7373", Err: kms.ErrEnclaveNotFound}, "enclave does not exist (check the enclave name)"},
		{&kms.HostError{Host: "a:7373", Err: kms.Error{Code: 409, Err: "key already exists"}}, "key already exists"},
		{&kms.HostError{Host: "a:7373", Err: kms.Error{Code: 500}}, "internal server error"},
		{fmt.Errorf("wrapped: %w", context.Canceled), "interrupted"},
		{errors.New("plain"), "plain"},
		// Transport advice is for requests to a server only, not for
		// the server command's own errors.
		{&kms.HostError{Host: "a:7373", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, "a:7373: connection refused (is the server running? check MINIO_KMS_SERVER)"},
		{&kms.HostError{Host: "a:7373", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, "a:7373: cannot reach server: connection reset by peer (check MINIO_KMS_SERVER)"},
		{
			fmt.Errorf("failed to listen on 127.0.0.1:7373: %w", &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7373}, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}),
			"failed to listen on 127.0.0.1:7373: listen tcp 127.0.0.1:7373: bind: address already in use",
		},
	}
	for _, tt := range tests {
		if got := describeError(tt.err); got != tt.want {
			t.Errorf("describeError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestPrefixArg(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"*"}, ""},
		{[]string{"my-"}, "my-"},
		{[]string{"my-*"}, "my-"},
	}
	for _, tt := range tests {
		if got := prefixArg(tt.args); got != tt.want {
			t.Errorf("prefixArg(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestSingle(t *testing.T) {
	one := &kms.DecryptResponse{Plaintext: []byte("x")}
	if got, err := single([]*kms.DecryptResponse{one}, nil); got != one || err != nil {
		t.Errorf("one reply: %v, %v", got, err)
	}
	if _, err := single([]*kms.DecryptResponse{one, one}, nil); err == nil {
		t.Error("two replies to one request were accepted")
	}
	if _, err := single[kms.DecryptResponse](nil, kms.ErrKeyNotFound); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Errorf("error %v, want %v", err, kms.ErrKeyNotFound)
	}
}
