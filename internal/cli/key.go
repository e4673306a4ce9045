package cli

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// keyJSON is the JSON form of a key version.
type keyJSON struct {
	Name      string `json:"name"`
	Version   int    `json:"version"`
	Type      string `json:"type"`
	CreatedAt string `json:"created_at,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
	State     string `json:"state,omitempty"` // of the version: active, disabled, pending-deletion
}

func keyView(k *kms.KeyStatusResponse) keyJSON {
	return keyJSON{
		Name:      k.Name,
		Version:   k.Version,
		Type:      k.Type.String(),
		CreatedAt: jsonTime(k.CreatedAt),
		CreatedBy: k.CreatedBy.String(),
	}
}

// dataKeyJSON is the JSON form of a generated data key. Ciphertext is in
// the form decrypt accepts, v<N>:<base64>.
type dataKeyJSON struct {
	Version    int    `json:"version"`
	Plaintext  string `json:"plaintext"`
	Ciphertext string `json:"ciphertext"`
}

// keyCommands returns add-key, rm-key, ls-key, stat-key, keygen,
// decrypt and the lifecycle commands (keylife.go).
func (a *app) keyCommands() []*cobra.Command {
	return []*cobra.Command{
		a.addKeyCommand(),
		a.rmKeyCommand(),
		a.lsKeyCommand(),
		a.statKeyCommand(),
		a.keygenCommand(),
		a.decryptCommand(),
		a.cancelRmKeyCommand(),
		a.disableKeyCommand(),
		a.enableKeyCommand(),
		a.rotateKeyCommand(),
	}
}

func (a *app) addKeyCommand() *cobra.Command {
	var (
		keyType    string
		addVersion bool
		importKey  string
		typ        kms.SecretKeyType
		material   []byte
		rotate     string
		rotation   keyChange
	)
	cmd := &cobra.Command{
		Use:   "add-key NAME",
		Short: "Create a key, add a version to it (--version) or import one (--import)",
		Example: `  keep add-key my-key
  keep add-key my-key --version        rotate: add version N+1
  keep add-key my-key --rotate 90d     rotated every 90 days from now on
  keep add-key my-key --import "$(head -c 32 /dev/urandom | base64)"`,
		Args: argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err = exclusiveFlags(cmd, "version", "import"); err != nil {
				return err
			}
			if typ, err = parseKeyType(keyType); err != nil {
				return err
			}
			if cmd.Flags().Changed("import") {
				if material, err = decodeBase64(importKey); err != nil {
					return usageErrorf("--import: the key is not valid base64: %v", err)
				}
				if len(material) != 32 {
					return usageErrorf("--import: the key must be 32 bytes, got %d", len(material))
				}
			}
			if cmd.Flags().Changed("rotate") {
				return durationFlag("rotate", rotate, &rotation.Every)
			}
			return nil
		},
	}
	enclave := addEnclaveFlag(cmd)
	cmd.Flags().StringVar(&keyType, "type", "", "key type: AES256 or ChaCha20 (default: chosen by the server)")
	cmd.Flags().BoolVar(&addVersion, "version", false, "add a new version to an existing key (rotation)")
	cmd.Flags().StringVar(&importKey, "import", "", "import this key material, 32 bytes in base64, instead of generating it")
	cmd.Flags().StringVar(&rotate, "rotate", "", "rotate the key automatically this often, e.g. 90d; 0: never (default: the cluster's keys.rotate_every for a new key)")
	return a.withKeyClients(cmd, func(cmd *cobra.Command, c *kms.Client, kc *keyClient, args []string) error {
		var err error
		if material != nil {
			err = c.ImportKey(cmd.Context(), *enclave, &kms.ImportKeyRequest{Name: args[0], Type: typ, Key: material})
		} else {
			err = c.CreateKey(cmd.Context(), *enclave, &kms.CreateKeyRequest{Name: args[0], Type: typ, AddVersion: addVersion})
		}
		if err != nil || rotation.Every == nil {
			return err
		}
		k, err := kc.put(cmd.Context(), *enclave, args[0], "rotation", &rotation)
		if err != nil {
			// The key is there: say so, so that a retry is not an add-key
			// that fails with "key already exists".
			return fmt.Errorf("key %s was created, but its rotation period was not set (set it with 'keep rotate-key %s --every %s'): %s", args[0], args[0], rotate, describeError(err))
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), describeRotation(k, time.Now()))
		return err
	})
}

func (a *app) keygenCommand() *cobra.Command {
	var version, length uint
	cmd := &cobra.Command{
		Use:   "keygen NAME",
		Short: "Generate a data encryption key: its plaintext and its ciphertext under key NAME",
		Args:  argsRange(1, 1),
		PreRunE: func(*cobra.Command, []string) error {
			if length > 1024 {
				return usageErrorf("--length: at most 1024 bytes, got %d", length)
			}
			return nil
		},
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	cmd.Flags().UintVarP(&version, "version", "v", 0, "key version to encrypt with (default: the latest)")
	cmd.Flags().UintVar(&length, "length", 0, "length of the data key in bytes, at most 1024 (default 32)")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		reply, err := single(c.GenerateKey(cmd.Context(), *enclave, &kms.GenerateKeyRequest{
			Name:    args[0],
			Version: int(version),
			Length:  int(length),
		}))
		if err != nil {
			return err
		}
		dek := dataKeyJSON{
			Version:    reply.Version,
			Plaintext:  base64.StdEncoding.EncodeToString(reply.Plaintext),
			Ciphertext: formatCiphertext(reply.Version, reply.Ciphertext),
		}
		return output(cmd, *asJSON, dek, func(w io.Writer) error {
			return writeDetails(w, []field{
				{"Plaintext", dek.Plaintext},
				{"Ciphertext", dek.Ciphertext},
			})
		})
	})
}

func (a *app) decryptCommand() *cobra.Command {
	var (
		version    int
		ciphertext []byte
	)
	cmd := &cobra.Command{
		Use:   "decrypt NAME CIPHERTEXT",
		Short: "Decrypt a data key made by keygen and print its plaintext in base64",
		Long: `Decrypt a data key made by keygen and print its plaintext in base64.

CIPHERTEXT is v<N>:<base64>, as keygen prints it, or plain base64; without
the v<N>: prefix the server reads the key version from the ciphertext.`,
		Args: argsRange(2, 2),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			version, ciphertext, err = parseCiphertext(args[1])
			if err != nil {
				return usageErrorf("%v", err)
			}
			return nil
		},
	}
	enclave := addEnclaveFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		reply, err := single(c.Decrypt(cmd.Context(), *enclave, &kms.DecryptRequest{
			Name:       args[0],
			Version:    version,
			Ciphertext: ciphertext,
		}))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(reply.Plaintext))
		return err
	})
}

// parseKeyType parses a key type name, ignoring case. The empty string is
// the zero type: the server picks one.
func parseKeyType(s string) (kms.SecretKeyType, error) {
	if s == "" {
		return 0, nil
	}
	for _, t := range []kms.SecretKeyType{kms.AES256, kms.ChaCha20} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, usageErrorf("--type: unknown key type %q: use AES256 or ChaCha20", s)
}

// formatCiphertext returns "v<version>:<base64 of ciphertext>".
func formatCiphertext(version int, ciphertext []byte) string {
	return "v" + strconv.Itoa(version) + ":" + base64.StdEncoding.EncodeToString(ciphertext)
}

// parseCiphertext parses "v<N>:<base64>" or "<base64>" and returns the
// version, 0 if there is no prefix, and the decoded ciphertext. Standard
// base64 has no ':', so a colon always ends a version prefix.
func parseCiphertext(s string) (version int, ciphertext []byte, err error) {
	s = strings.TrimSpace(s)
	if prefix, rest, ok := strings.Cut(s, ":"); ok {
		digits, ok := strings.CutPrefix(prefix, "v")
		if !ok {
			return 0, nil, fmt.Errorf("invalid ciphertext: expected v<N>:<base64> or <base64>, got prefix %q", prefix+":")
		}
		n, err := strconv.ParseUint(digits, 10, 32)
		if err != nil {
			return 0, nil, fmt.Errorf("invalid ciphertext: key version %q is not a number", digits)
		}
		version, s = int(n), rest
	}
	if s == "" {
		return 0, nil, errors.New("invalid ciphertext: it is empty")
	}
	if ciphertext, err = decodeBase64(s); err != nil {
		return 0, nil, fmt.Errorf("invalid ciphertext: not base64: %v", err)
	}
	return version, ciphertext, nil
}

// decodeBase64 decodes standard base64, with or without padding.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
