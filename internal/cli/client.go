package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// Environment variables read by the client commands: their names, not
// credentials.
const (
	EnvServer = "MINIO_KMS_SERVER" // comma-separated server endpoints
	// EnvAPIKey names the variable of the API key used when --api-key is
	// not given.
	EnvAPIKey = "MINIO_KMS_API_KEY" // #nosec G101 -- the name of a variable, not a credential
)

// DefaultServer is the endpoint used when MINIO_KMS_SERVER is not set.
const DefaultServer = "https://localhost:7373"

// clientFlags are the connection flags every client command takes.
type clientFlags struct {
	apiKey   string
	insecure bool
}

// addClientFlags registers -a/--api-key and -k/--insecure on cmd.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	f := new(clientFlags)
	cmd.Flags().StringVarP(&f.apiKey, "api-key", "a", "", "API key to authenticate with (default $"+EnvAPIKey+")")
	cmd.Flags().BoolVarP(&f.insecure, "insecure", "k", false, "skip verification of the server certificate")
	return f
}

// addEnclaveFlag registers -e/--enclave on cmd and returns where its
// value is stored. The empty default makes the server use its default
// enclave.
func addEnclaveFlag(cmd *cobra.Command) *string {
	return cmd.Flags().StringP("enclave", "e", "", "enclave to operate in (default: the server's default enclave)")
}

// addJSONFlag registers --json on cmd.
func addJSONFlag(cmd *cobra.Command) *bool {
	return cmd.Flags().Bool("json", false, "print JSON instead of text")
}

// client returns a kms-go client for the servers in MINIO_KMS_SERVER,
// authenticated with the API key from f or MINIO_KMS_API_KEY.
func (a *app) client(f *clientFlags) (*kms.Client, error) {
	return a.clientTo(f, endpoints(a.getenv(EnvServer)))
}

// clientTo returns a kms-go client for the given endpoints, authenticated
// as a.client's.
func (a *app) clientTo(f *clientFlags, endpoints []string) (*kms.Client, error) {
	key, err := a.apiKey(f)
	if err != nil {
		return nil, err
	}
	return kms.NewClient(&kms.Config{
		Endpoints: endpoints,
		APIKey:    key,
		TLS:       clientTLS(f),
	})
}

// apiKey returns the API key from f or MINIO_KMS_API_KEY.
func (a *app) apiKey(f *clientFlags) (mtls.PrivateKey, error) {
	s := f.apiKey
	if s == "" {
		s = strings.TrimSpace(a.getenv(EnvAPIKey))
	}
	if s == "" {
		return nil, fmt.Errorf("no API key: set %s or pass --api-key", EnvAPIKey)
	}
	return parseAPIKey(s)
}

// clientTLS returns the TLS configuration of the client commands, without
// a client certificate.
func clientTLS(f *clientFlags) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: f.insecure, // #nosec G402 -- only with --insecure / -k, the user's explicit request for a self-signed server
	}
}

// endpoints splits the value of MINIO_KMS_SERVER into endpoints, dropping
// empty entries. It returns DefaultServer if there are none.
func endpoints(env string) []string {
	var list []string
	for _, e := range strings.Split(env, ",") {
		if e = strings.TrimSpace(e); e != "" {
			list = append(list, e)
		}
	}
	if len(list) == 0 {
		return []string{DefaultServer}
	}
	return list
}

// parseAPIKey parses an API key in the MinIO KMS spelling (k1:…, k2:…) or
// the KES spelling (kes:v1:…) of the same Ed25519 seed.
func parseAPIKey(s string) (mtls.PrivateKey, error) {
	if strings.HasPrefix(s, "kes:") {
		k, err := kes.ParseAPIKey(s)
		if err != nil {
			return nil, fmt.Errorf("invalid API key: %v", err)
		}
		seed := k.Private().(ed25519.PrivateKey).Seed()
		return mtls.ParsePrivateKey("k1:" + base64.RawURLEncoding.EncodeToString(seed))
	}
	key, err := mtls.ParsePrivateKey(s)
	if err != nil {
		return nil, fmt.Errorf("invalid API key: expected k1:…, k2:… or kes:v1:… (%v)", err)
	}
	return key, nil
}

// kesAPIKey returns the KES spelling, kes:v1:…, of an Ed25519 API key, or
// "" if key is not an Ed25519 key. KES writes a type byte (0 = Ed25519)
// followed by the 32-byte seed, in padded standard base64.
func kesAPIKey(key mtls.PrivateKey) string {
	priv, ok := key.Private().(ed25519.PrivateKey)
	if !ok {
		return ""
	}
	const ed25519Type = 0
	b := append([]byte{ed25519Type}, priv.Seed()...)
	return "kes:v1:" + base64.StdEncoding.EncodeToString(b)
}

// listAll fetches every page of a paginated listing, starting at prefix,
// and returns all items. next is one of the kms.Client List methods.
func listAll[T any](ctx context.Context, next func(context.Context, *kms.ListRequest) (*kms.Page[T], error), enclave, prefix string) ([]T, error) {
	items := []T{}
	req := &kms.ListRequest{Enclave: enclave, Prefix: prefix}
	for {
		page, err := next(ctx, req)
		if err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.ContinueAt == "" || len(page.Items) == 0 {
			return items, nil
		}
		if page.ContinueAt == req.ContinueAt {
			return nil, fmt.Errorf("listing does not advance: the server returned the page at %q twice", req.ContinueAt)
		}
		req.ContinueAt = page.ContinueAt
	}
}

// withClient adds the connection flags to cmd and makes it run fn with a
// client built from them. Checks of the command line that need no server
// belong in cmd.PreRunE, so they come before a missing API key.
func (a *app) withClient(cmd *cobra.Command, fn func(cmd *cobra.Command, c *kms.Client, args []string) error) *cobra.Command {
	return a.withKeyClients(cmd, func(cmd *cobra.Command, c *kms.Client, _ *keyClient, args []string) error {
		return fn(cmd, c, args)
	})
}

// single returns the only reply of a batch call made with one request,
// as in single(c.KeyStatus(ctx, enclave, req)).
func single[T any](replies []*T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	if len(replies) != 1 {
		return nil, fmt.Errorf("the server sent %d replies to 1 request", len(replies))
	}
	return replies[0], nil
}

// prefixArg returns the listing prefix given as args[0], or "" for none.
// A trailing '*' is dropped, so "my-*" and "*" work as patterns.
func prefixArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return strings.TrimSuffix(args[0], "*")
}
