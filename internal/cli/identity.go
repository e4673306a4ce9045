package cli

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// identityJSON is the JSON form of an identity registered on the server.
type identityJSON struct {
	Identity         string            `json:"identity"`
	Privilege        string            `json:"privilege,omitempty"`
	Policy           string            `json:"policy,omitempty"`
	IsServiceAccount bool              `json:"service_account,omitempty"`
	ServiceAccounts  []string          `json:"service_accounts,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	CreatedAt        string            `json:"created_at,omitempty"`
	CreatedBy        string            `json:"created_by,omitempty"`
}

func identityView(r *kms.IdentityResponse) identityJSON {
	v := identityJSON{
		Identity:         r.Identity.String(),
		Privilege:        privilegeString(r.Privilege),
		Policy:           r.Policy,
		IsServiceAccount: r.IsServiceAccount,
		Tags:             r.Tags,
		CreatedAt:        jsonTime(r.CreatedAt),
		CreatedBy:        r.CreatedBy.String(),
	}
	for _, id := range r.ServiceAccounts {
		v.ServiceAccounts = append(v.ServiceAccounts, id.String())
	}
	return v
}

// privilegeString is p's name, or "" if p is unset.
func privilegeString(p kms.Privilege) string {
	if p == 0 {
		return ""
	}
	return p.String()
}

// identityCommands returns add-identity, rm-identity, ls-identity,
// get-identity and the local identity command.
func (a *app) identityCommands() []*cobra.Command {
	return []*cobra.Command{
		a.addIdentityCommand(),
		a.rmIdentityCommand(),
		a.lsIdentityCommand(),
		a.getIdentityCommand(),
		a.identityCommand(),
	}
}

func (a *app) addIdentityCommand() *cobra.Command {
	var (
		admin, sysAdmin, service bool
		ed25519Key               bool
		tagList                  []string
		ids                      []mtls.Identity
		tags                     map[string]string
	)
	cmd := &cobra.Command{
		Use:   "add-identity [IDENTITY...]",
		Short: "Register identities, or create a new API key and register its identity",
		Long: `Register identities, or create a new API key and register its identity.

Without IDENTITY, add-identity generates a new API key (k2:…), registers its
identity and prints both. With --ed25519 the key is an Ed25519 key (k1:…),
which KES clients and MinIO in KES mode also accept, spelled kes:v1:…; both
spellings are printed. The API key is not stored anywhere: keep it safe.
An identity is User unless --admin or --sysadmin is given; a User may do
only what its policy (set-policy) allows.`,
		Example: `  keep add-identity -e tenant-1 --admin
  keep add-identity -e minio --admin --ed25519     # a key for MinIO in KES mode
  keep add-identity h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0 --tag team=storage`,
		Args: argsRange(0, -1),
		PreRunE: func(cmd *cobra.Command, args []string) (err error) {
			if err = exclusiveFlags(cmd, "admin", "sysadmin"); err != nil {
				return err
			}
			if ids, err = parseIdentityArgs(args); err != nil {
				return err
			}
			tags, err = parseTags(tagList)
			return err
		},
	}
	enclave := addEnclaveFlag(cmd)
	cmd.Flags().BoolVar(&admin, "admin", false, "give the identity the Admin privilege: everything within its enclave")
	cmd.Flags().BoolVar(&sysAdmin, "sysadmin", false, "give the identity the SysAdmin privilege: everything, in every enclave")
	cmd.Flags().BoolVar(&service, "service", false, "make it a service account of the calling identity")
	cmd.Flags().StringArrayVar(&tagList, "tag", nil, "attach a KEY=VALUE tag (repeatable)")
	cmd.Flags().BoolVar(&ed25519Key, "ed25519", false, "generate an Ed25519 API key (k1:…, also usable as kes:v1:…) instead of a P-256 one (k2:…)")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		privilege := kms.User
		switch {
		case admin:
			privilege = kms.Admin
		case sysAdmin:
			privilege = kms.SysAdmin
		}
		create := func(id mtls.Identity) error {
			return c.CreateIdentity(cmd.Context(), *enclave, &kms.CreateIdentityRequest{
				Identity:         id,
				Privilege:        privilege,
				IsServiceAccount: service,
				Tags:             tags,
			})
		}

		if len(ids) > 0 {
			for _, id := range ids {
				if err := create(id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
			}
			return nil
		}

		var key mtls.PrivateKey
		var err error
		if ed25519Key {
			key, err = mtls.GenerateKeyEdDSA(rand.Reader)
		} else {
			key, err = mtls.GenerateKeyECDSA(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return fmt.Errorf("cannot generate API key: %v", err)
		}
		if err := create(key.Identity()); err != nil {
			return err
		}
		details := []field{{"API Key", key.String()}}
		if kes := kesAPIKey(key); kes != "" {
			details = append(details, field{"KES API Key", kes})
		}
		details = append(details, field{"Identity", key.Identity().String()})
		if err := writeDetails(cmd.OutOrStdout(), details); err != nil {
			return err
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "Store the API key safely: it is shown only once.")
		return nil
	})
}

func (a *app) rmIdentityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm-identity IDENTITY",
		Short: "Delete an identity and its service accounts",
		Args:  argsRange(1, 1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			_, err := parseIdentityArg(args[0])
			return err
		},
	}
	enclave := addEnclaveFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		id, _ := parseIdentityArg(args[0])
		return c.DeleteIdentity(cmd.Context(), *enclave, &kms.DeleteIdentityRequest{Identity: id})
	})
}

func (a *app) lsIdentityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls-identity [PREFIX]",
		Short: "List identities",
		Args:  argsRange(0, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		list, err := listAll(cmd.Context(), c.ListIdentities, *enclave, prefixArg(args))
		if err != nil {
			return err
		}
		views := make([]identityJSON, 0, len(list))
		for i := range list {
			views = append(views, identityView(&list[i]))
		}
		return output(cmd, *asJSON, views, func(w io.Writer) error {
			t := newTable(w, "IDENTITY", "PRIVILEGE", "POLICY", "CREATED")
			for i, v := range views {
				t.row(v.Identity, v.Privilege, v.Policy, formatTime(list[i].CreatedAt))
			}
			return t.flush()
		})
	})
}

func (a *app) getIdentityCommand() *cobra.Command {
	var ids []mtls.Identity
	cmd := &cobra.Command{
		Use:   "get-identity [IDENTITY...]",
		Short: "Show identities; without IDENTITY, the caller's own",
		Args:  argsRange(0, -1),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			ids, err = parseIdentityArgs(args)
			return err
		},
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		reqs := []*kms.IdentityRequest{{}} // the empty identity asks for the caller
		if len(ids) > 0 {
			reqs = reqs[:0]
			for _, id := range ids {
				reqs = append(reqs, &kms.IdentityRequest{Identity: id})
			}
		}
		list, err := c.GetIdentity(cmd.Context(), *enclave, reqs...)
		if err != nil {
			return err
		}
		views := make([]identityJSON, 0, len(list))
		blocks := make([][]field, 0, len(list))
		now := time.Now()
		for _, r := range list {
			v := identityView(r)
			views = append(views, v)
			blocks = append(blocks, []field{
				{"Identity", v.Identity},
				{"Privilege", v.Privilege},
				{"Policy", v.Policy},
				{"Service account", yesNo(v.IsServiceAccount)},
				{"Service accounts", strings.Join(v.ServiceAccounts, ", ")},
				{"Tags", formatTags(v.Tags)},
				{"Created", formatTimeAge(r.CreatedAt, now)},
				{"Created by", v.CreatedBy},
			})
		}
		return output(cmd, *asJSON, oneOrMany(views), func(w io.Writer) error {
			return writeDetails(w, blocks...)
		})
	})
}

// identityInfoJSON is what the identity command prints: an identity in
// both spellings and, for a key, the API key in both spellings.
type identityInfoJSON struct {
	APIKey      string `json:"api_key,omitempty"`
	KESAPIKey   string `json:"kes_api_key,omitempty"`
	Identity    string `json:"identity"`
	KESIdentity string `json:"kes_identity"`
}

func (a *app) identityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity API-KEY|HSM-KEY|CERT-FILE|IDENTITY",
		Short: "Compute the identity of an API key, HSM key or certificate (local)",
		Long: `Compute the identity of an API key, HSM key or certificate. Nothing is sent
to a server.

  API key (k1:…, k2:… or kes:v1:…)  its identity
  HSM key (hsm:aes256:…)            the root API key it derives and its identity
  certificate file (PEM)            the identity of its public key
  identity (h1:… or 64 hex digits)  the same identity

Every identity is also printed as KES spells it (hex), and Ed25519 API keys
as KES spells them (kes:v1:…).`,
		Args: argsRange(1, 1),
	}
	asJSON := addJSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		info, err := identityInfo(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return output(cmd, *asJSON, info, func(w io.Writer) error {
			var fields []field
			if info.APIKey != "" {
				fields = append(fields, field{"API Key", info.APIKey})
			}
			if info.KESAPIKey != "" {
				fields = append(fields, field{"KES API Key", info.KESAPIKey})
			}
			fields = append(fields, field{"Identity", info.Identity}, field{"KES Identity", info.KESIdentity})
			return writeDetails(w, fields)
		})
	}
	return cmd
}

// identityInfo computes what the identity command prints for arg.
func identityInfo(ctx context.Context, arg string) (*identityInfoJSON, error) {
	arg = strings.TrimSpace(arg)
	var (
		key mtls.PrivateKey
		id  mtls.Identity
		err error
	)
	switch {
	case arg == "":
		return nil, usageErrorf("identity: the argument is empty")
	case strings.HasPrefix(arg, "k1:"), strings.HasPrefix(arg, "k2:"), strings.HasPrefix(arg, "kes:"):
		key, err = parseAPIKey(arg)
	case strings.HasPrefix(arg, "hsm:"):
		key, err = rootAPIKey(ctx, arg)
	case strings.HasPrefix(arg, "h1:"):
		id, err = mtls.ParseIdentity(arg)
	case isHexIdentity(arg):
		id, err = hexIdentity(arg)
	default:
		id, err = certificateFileIdentity(arg)
	}
	if err != nil {
		return nil, err
	}

	info := new(identityInfoJSON)
	if key != nil {
		id = key.Identity()
		info.APIKey = key.String()
		info.KESAPIKey = kesAPIKey(key)
	}
	info.Identity = id.String()
	info.KESIdentity = kesIdentity(id)
	return info, nil
}

// kesIdentity is the KES spelling of id: the hash in lowercase hex.
func kesIdentity(id mtls.Identity) string {
	b, _ := id.MarshalBinary() // "h1:" and the 32-byte hash; never fails
	return hex.EncodeToString(b[len("h1:"):])
}

// isHexIdentity reports whether s looks like a KES identity: 64 hex digits.
func isHexIdentity(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil
}

// hexIdentity parses a KES identity, the hash in hex.
func hexIdentity(s string) (mtls.Identity, error) {
	hash, err := hex.DecodeString(s)
	if err != nil {
		return mtls.Identity{}, err
	}
	var id mtls.Identity
	err = id.UnmarshalBinary(append([]byte("h1:"), hash...))
	return id, err
}

// certificateFileIdentity returns the identity of the first certificate in
// the PEM (or DER) file name.
func certificateFileIdentity(name string) (mtls.Identity, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return mtls.Identity{}, usageErrorf("%s: no such file; expected an API key (k1:…, k2:…, kes:v1:…), an HSM key (hsm:aes256:…), an identity (h1:…) or a certificate file", name)
	}
	if err != nil {
		return mtls.Identity{}, fmt.Errorf("cannot read certificate: %v", err)
	}
	der := data
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			der = block.Bytes
			break
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return mtls.Identity{}, fmt.Errorf("%s: not a certificate: %v", name, err)
	}
	return mtls.CertificateIdentity(cert), nil
}

// parseIdentityArg parses an identity given on the command line.
func parseIdentityArg(s string) (mtls.Identity, error) {
	switch {
	case strings.HasPrefix(s, "k1:"), strings.HasPrefix(s, "k2:"), strings.HasPrefix(s, "kes:"):
		// Do not repeat the secret in the message.
		return mtls.Identity{}, usageErrorf("an API key was given where an identity (h1:…) belongs; 'keep identity API-KEY' shows its identity")
	case !strings.HasPrefix(s, "h1:"):
		return mtls.Identity{}, usageErrorf("invalid identity %q: expected h1:… ('keep identity' computes it from an API key or certificate)", s)
	}
	id, err := mtls.ParseIdentity(s)
	if err != nil {
		return mtls.Identity{}, usageErrorf("invalid identity %q: %v", s, err)
	}
	return id, nil
}

// parseIdentityArgs parses each argument with parseIdentityArg.
func parseIdentityArgs(args []string) ([]mtls.Identity, error) {
	ids := make([]mtls.Identity, 0, len(args))
	for _, s := range args {
		id, err := parseIdentityArg(s)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// parseTags parses KEY=VALUE pairs. It returns nil for no pairs.
func parseTags(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	tags := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--tag %q: expected KEY=VALUE", p)
		}
		tags[k] = v
	}
	return tags, nil
}

// formatTags formats tags as "k1=v1, k2=v2", sorted by key.
func formatTags(tags map[string]string) string {
	parts := make([]string, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return strings.Join(parts, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
