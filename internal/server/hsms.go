package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keep-kms/keep/internal/hsm"
)

// Environment variables that configure a node's HSMs when its config file
// has no hsm section.
const (
	EnvSoftHSMKey     = "MINIO_KMS_HSM_KEY"      // a soft HSM key, hsm:aes256:…
	EnvSoftHSMKeyFile = "MINIO_KMS_HSM_KEY_FILE" // or a file holding it
	EnvPKCS11Module   = "KEEP_PKCS11_MODULE"     // path of the PKCS#11 module
	EnvPKCS11Token    = "KEEP_PKCS11_TOKEN"      // #nosec G101 -- names the variable of a token's label, not a credential
	EnvPKCS11Slot     = "KEEP_PKCS11_SLOT"       // or slot ID
	EnvPKCS11Key      = "KEEP_PKCS11_KEY"        // label of the key objects
	EnvPKCS11PIN      = hsm.EnvPKCS11PIN         // user PIN
	EnvPKCS11PINFile  = "KEEP_PKCS11_PIN_FILE"   // or a file holding it
	EnvPKCS11Name     = "KEEP_PKCS11_NAME"       // the HSM's name; default pkcs11:TOKEN/KEY
)

// HSMConfig is one HSM of a node's config file: a soft HSM whose key is in
// an environment variable or a file, or a key on a PKCS#11 token. No secret
// is in the config file itself: the soft key and the PIN come from the
// environment or from a file of their own.
//
//	hsm:
//	  - name: token-a          # the HSM's name in the cluster (keep add-hsm NAME)
//	    pkcs11:
//	      module: /usr/lib/softhsm/libsofthsm2.so
//	      token: keep          # token label; or slot: 0
//	      key: keep-root       # label of the key objects (keep --pkcs11 creates them)
//	      pin_env: KEEP_PKCS11_PIN   # or pin_file: /etc/keep/pin
//	  - name: hsm:aes256
//	    soft:
//	      key_env: MINIO_KMS_HSM_KEY   # or key_file: /run/credentials/keep.service/hsm-key
type HSMConfig struct {
	Name   string        `yaml:"name,omitempty" json:"name,omitempty"`
	Soft   *SoftConfig   `yaml:"soft,omitempty" json:"soft,omitempty"`
	PKCS11 *PKCS11Config `yaml:"pkcs11,omitempty" json:"pkcs11,omitempty"`
}

// SoftConfig is the soft member of an HSMConfig: the environment variable
// or the file that holds the hsm:aes256:… key. A file lets the key come
// from a systemd credential (LoadCredential=) or a mounted Kubernetes
// Secret, and so stay out of the process environment.
type SoftConfig struct {
	KeyEnv  string `yaml:"key_env,omitempty" json:"key_env,omitempty"`
	KeyFile string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
}

// PKCS11Config is the pkcs11 member of an HSMConfig.
type PKCS11Config struct {
	Module  string `yaml:"module" json:"module"`
	Token   string `yaml:"token,omitempty" json:"token,omitempty"`
	Slot    *uint  `yaml:"slot,omitempty" json:"slot,omitempty"`
	Key     string `yaml:"key" json:"key"`
	PINEnv  string `yaml:"pin_env,omitempty" json:"pin_env,omitempty"`
	PINFile string `yaml:"pin_file,omitempty" json:"pin_file,omitempty"`
}

// checkHSMs checks the hsm section of a config file.
func checkHSMs(list []HSMConfig) error {
	names := map[string]bool{}
	for i, h := range list {
		if (h.Soft == nil) == (h.PKCS11 == nil) {
			return fmt.Errorf("hsm[%d]: give exactly one of soft and pkcs11", i)
		}
		if h.Name != "" {
			if err := hsm.ValidName(h.Name); err != nil {
				return fmt.Errorf("hsm[%d]: %w", i, err)
			}
		}
		if s := h.Soft; s != nil && (s.KeyEnv == "") == (s.KeyFile == "") {
			return fmt.Errorf("hsm[%d].soft: give exactly one of key_env and key_file (the key itself never goes into the config file)", i)
		}
		if p := h.PKCS11; p != nil {
			switch {
			case p.Module == "" || p.Key == "":
				return fmt.Errorf("hsm[%d].pkcs11: module and key are required", i)
			case (p.Token == "") == (p.Slot == nil):
				return fmt.Errorf("hsm[%d].pkcs11: give exactly one of token and slot", i)
			case (p.PINEnv == "") == (p.PINFile == ""):
				return fmt.Errorf("hsm[%d].pkcs11: give exactly one of pin_env and pin_file (the PIN itself never goes into the config file)", i)
			}
		}
		name := h.name()
		if names[name] {
			return fmt.Errorf("hsm[%d]: a second HSM named %q", i, name)
		}
		names[name] = true
	}
	return nil
}

// name is the HSM's name in the cluster.
func (h HSMConfig) name() string {
	switch {
	case h.Name != "":
		return h.Name
	case h.PKCS11 != nil:
		return h.PKCS11.defaultName()
	default:
		return hsm.LegacyName
	}
}

// defaultName names a PKCS#11 HSM after its token and key, as
// `keep --pkcs11` does.
func (p *PKCS11Config) defaultName() string { return p.hsmConfig("").DefaultName() }

// hsmsFromEnv returns the HSMs the environment configures: a PKCS#11 token
// (KEEP_PKCS11_*) and a soft HSM key (MINIO_KMS_HSM_KEY, or the file
// MINIO_KMS_HSM_KEY_FILE names), in that order.
func hsmsFromEnv(getenv func(string) string) ([]HSMConfig, error) {
	var list []HSMConfig
	if module := getenv(EnvPKCS11Module); module != "" {
		p := &PKCS11Config{Module: module, Token: getenv(EnvPKCS11Token), Key: getenv(EnvPKCS11Key), PINEnv: EnvPKCS11PIN}
		if s := getenv(EnvPKCS11Slot); s != "" {
			slot, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a slot ID", EnvPKCS11Slot, s)
			}
			v := uint(slot)
			p.Slot = &v
		}
		if f := getenv(EnvPKCS11PINFile); f != "" {
			p.PINEnv, p.PINFile = "", f
		}
		list = append(list, HSMConfig{Name: getenv(EnvPKCS11Name), PKCS11: p})
	}
	switch key, file := getenv(EnvSoftHSMKey), getenv(EnvSoftHSMKeyFile); {
	case key != "" && file != "":
		return nil, fmt.Errorf("the environment's HSM: set one of %s and %s, not both", EnvSoftHSMKey, EnvSoftHSMKeyFile)
	case key != "":
		list = append(list, HSMConfig{Soft: &SoftConfig{KeyEnv: EnvSoftHSMKey}})
	case file != "":
		list = append(list, HSMConfig{Soft: &SoftConfig{KeyFile: file}})
	}
	if err := checkHSMs(list); err != nil {
		return nil, fmt.Errorf("the environment's HSM: %w", err)
	}
	return list, nil
}

// errNoHSM is the start-up error of a node configured with no HSM.
var errNoHSM = errors.New("no HSM: set " + EnvSoftHSMKey + " to a soft HSM key (create one with 'keep --soft-hsm') or " + EnvSoftHSMKeyFile + " to a file holding it, or " +
	EnvPKCS11Module + " and the other KEEP_PKCS11_* variables for a PKCS#11 token (create its key with 'keep --pkcs11'), or list HSMs under hsm: in the config file")

// openHSMs opens every HSM of the node's configuration, in order: those of
// the config file's hsm section, or else those of the environment.
func openHSMs(conf *Config, getenv func(string) string) (*hsm.Keyring, error) {
	list := conf.hsms()
	if len(list) == 0 {
		var err error
		if list, err = hsmsFromEnv(getenv); err != nil {
			return nil, err
		}
	}
	if len(list) == 0 {
		return nil, errNoHSM
	}
	var opened []hsm.HSM
	for _, c := range list {
		h, err := c.open(getenv)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return nil, fmt.Errorf("HSM %s: %w", c.name(), err)
		}
		opened = append(opened, h)
	}
	return hsm.NewKeyring(opened...), nil
}

// open opens the HSM c configures.
func (c HSMConfig) open(getenv func(string) string) (hsm.HSM, error) {
	if c.PKCS11 != nil {
		pin, err := c.PKCS11.pin(getenv)
		if err != nil {
			return nil, err
		}
		return openPKCS11(c.name(), c.PKCS11, pin)
	}
	s, err := c.Soft.open(getenv)
	if err != nil {
		return nil, err
	}
	s.SetName(c.name())
	return s, nil
}

// open reads the soft HSM key from its environment variable or file;
// errors name where it was looked for, never what was found.
func (c *SoftConfig) open(getenv func(string) string) (*hsm.Soft, error) {
	if c.KeyFile != "" {
		return hsm.ReadSoftKeyFile(c.KeyFile)
	}
	key := strings.TrimSpace(getenv(c.KeyEnv))
	if key == "" {
		return nil, fmt.Errorf("%s is not set: set it to the soft HSM key (create one with 'keep --soft-hsm')", c.KeyEnv)
	}
	s, err := hsm.ParseSoftKey(key)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", c.KeyEnv, err)
	}
	return s, nil
}

// pin reads the PIN from its environment variable or file; errors name
// where it was looked for, never what was found.
func (p *PKCS11Config) pin(getenv func(string) string) (string, error) {
	if p.PINEnv != "" {
		pin := getenv(p.PINEnv)
		if pin == "" {
			return "", fmt.Errorf("the PIN: %s is not set", p.PINEnv)
		}
		return pin, nil
	}
	return hsm.ReadPINFile(p.PINFile)
}

// hsms is the hsm section of the config file.
func (c *Config) hsms() []HSMConfig {
	if c == nil {
		return nil
	}
	return c.HSM
}
