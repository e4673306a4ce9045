package cli

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/server"
)

// pkcs11Flags are the root command's flags of `keep --pkcs11`.
type pkcs11Flags struct {
	create  bool
	module  string
	token   string
	slot    uint
	key     string
	name    string
	pinFile string
}

// pkcs11FlagNames are the flags that only --pkcs11 takes.
var pkcs11FlagNames = []string{"module", "token", "slot", "key", "name", "pin-file"}

// addPKCS11Flags adds --pkcs11 and its flags to root.
func addPKCS11Flags(root *cobra.Command) *pkcs11Flags {
	f := new(pkcs11Flags)
	fs := root.Flags()
	fs.BoolVar(&f.create, "pkcs11", false, "create an HSM key on a PKCS#11 token and print its config (with --module, --token or --slot, --key)")
	fs.StringVar(&f.module, "module", "", "--pkcs11: path of the PKCS#11 module (.so)")
	fs.StringVar(&f.token, "token", "", "--pkcs11: label of the token")
	fs.UintVar(&f.slot, "slot", 0, "--pkcs11: slot ID of the token, instead of --token")
	fs.StringVar(&f.key, "key", "", "--pkcs11: label of the key objects to create")
	fs.StringVar(&f.name, "name", "", "--pkcs11: name of the HSM in the cluster (default pkcs11:TOKEN/KEY)")
	fs.StringVar(&f.pinFile, "pin-file", "", "--pkcs11: file holding the user PIN (default: the PIN in "+hsm.EnvPKCS11PIN+")")
	return f
}

// config checks the --pkcs11 command line and returns the HSM config it
// names, with the PIN read from the file or the environment.
func (f *pkcs11Flags) config(a *app, cmd *cobra.Command) (hsm.PKCS11Config, error) {
	c := hsm.PKCS11Config{Name: f.name, Module: f.module, Token: f.token, Key: f.key}
	if cmd.Flags().Changed("slot") {
		c.Slot = &f.slot
	}
	switch {
	case cmd.Flags().Changed("soft-hsm"):
		return c, usageErrorf("--pkcs11 and --soft-hsm cannot be used together")
	case f.module == "":
		return c, usageErrorf("--pkcs11: give the module with --module PATH")
	case f.key == "":
		return c, usageErrorf("--pkcs11: give the label of the key to create with --key LABEL")
	}
	if err := exclusiveFlags(cmd, "token", "slot"); err != nil {
		return c, err
	}
	if c.Token == "" && c.Slot == nil {
		return c, usageErrorf("--pkcs11: name the token with --token LABEL or --slot ID")
	}
	if f.pinFile != "" {
		pin, err := hsm.ReadPINFile(f.pinFile)
		if err != nil {
			return c, err
		}
		c.PIN = pin
	} else if c.PIN = a.getenv(hsm.EnvPKCS11PIN); c.PIN == "" {
		return c, usageErrorf("--pkcs11: no PIN: set %s or use --pin-file FILE (a PIN is never a flag, so that it stays out of the process list)", hsm.EnvPKCS11PIN)
	}
	if err := c.Validate(); err != nil {
		return c, usageErrorf("--pkcs11: %v", err) // all that is left is what the flags said
	}
	return c, nil
}

// createPKCS11Key creates the key objects, opens the HSM and prints its
// config on stdout and its root API key on stderr.
func (a *app) createPKCS11Key(cmd *cobra.Command, f *pkcs11Flags) error {
	c, err := f.config(a, cmd)
	if err != nil {
		return err
	}
	if err := hsm.CreatePKCS11Key(c); err != nil {
		return err
	}
	// Opening what was just created proves that a node will start on it.
	h, err := hsm.OpenPKCS11(c)
	if err != nil {
		return fmt.Errorf("the key was created but cannot be opened: %w", err)
	}
	defer h.Close()
	root, err := hsm.RootAPIKey(cmd.Context(), h)
	if err != nil {
		return fmt.Errorf("the key was created but cannot derive the root API key: %w", err)
	}
	config, err := pkcs11ConfigYAML(h.Name(), c, f.pinFile)
	if err != nil {
		return err
	}
	if _, err := cmd.OutOrStdout().Write(config); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), `
Created the key %q on PKCS#11 %s. Put the YAML printed on stdout in
the config file of every node that is to use this HSM.

Root API key of HSM %q (shown only once; store it safely):
  API key:  %s
  Identity: %s
It is derived inside the token, so every node started with this HSM
computes the same one. Every node of the cluster that uses this HSM must
reach this token and its key %q; the key never leaves the token.
`, c.Key, tokenDescription(c), h.Name(), root.String(), root.Identity(), c.Key)
	return nil
}

// tokenDescription names the token as the user gave it.
func tokenDescription(c hsm.PKCS11Config) string {
	if c.Slot != nil {
		return fmt.Sprintf("slot %d", *c.Slot)
	}
	return fmt.Sprintf("token %q", c.Token)
}

// pkcs11ConfigYAML is the hsm section of the config file for c: the PIN
// comes from pinFile if given, else from the environment, never the file.
func pkcs11ConfigYAML(name string, c hsm.PKCS11Config, pinFile string) ([]byte, error) {
	entry := server.HSMConfig{Name: name, PKCS11: &server.PKCS11Config{Module: c.Module, Token: c.Token, Slot: c.Slot, Key: c.Key, PINFile: pinFile}}
	if pinFile == "" {
		entry.PKCS11.PINEnv = hsm.EnvPKCS11PIN
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	// A whole config file: it starts a node as it is, and its hsm section
	// goes into an existing config file unchanged.
	err := enc.Encode(struct {
		Version string             `yaml:"version"`
		HSM     []server.HSMConfig `yaml:"hsm"`
	}{"v1", []server.HSMConfig{entry}})
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return nil, errors.New("cannot encode the config: " + err.Error())
	}
	return buf.Bytes(), nil
}
