package cli

import (
	"context"
	"fmt"

	"aead.dev/mtls"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/spf13/cobra"
)

// printSoftHSMKey prints a new software HSM key on stdout and a warning
// about it on stderr, so that "keep --soft-hsm > file" captures only the key.
func (a *app) printSoftHSMKey(cmd *cobra.Command) error {
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		return fmt.Errorf("cannot generate HSM key: %v", err)
	}
	if _, err := fmt.Fprintln(cmd.OutOrStdout(), key); err != nil {
		return err
	}
	fmt.Fprintln(cmd.ErrOrStderr(), `
This HSM key is shown only once. Store it safely: it decrypts the root
encryption key, and with it every key in the cluster. Start every node of
a cluster with the same key in MINIO_KMS_HSM_KEY. If it is lost, the data
of the cluster cannot be recovered.`)
	return nil
}

// rootAPIKey returns the root API key derived from the soft HSM key s.
func rootAPIKey(ctx context.Context, s string) (mtls.PrivateKey, error) {
	h, err := hsm.ParseSoftKey(s) // its errors never repeat the key
	if err != nil {
		return nil, err
	}
	defer h.Close()
	key, err := hsm.RootAPIKey(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("cannot derive the root API key: %v", err)
	}
	return key, nil
}
