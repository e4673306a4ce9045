package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/state"
)

// Config is the YAML configuration file of a node.
//
//	version: v1
//	admin:
//	  identity: h1:…          # replaces the HSM-derived root API key
//	tls:
//	  certs:
//	    - key: private.key
//	      cert: public.crt
//	  ca: ca.crt              # offered to clients as acceptable issuers
//	cluster:
//	  max_staleness: 30s      # how long a node cut off from the leader serves reads; 0 = for ever
type Config struct {
	Version string `yaml:"version"`
	Admin   struct {
		Identity string `yaml:"identity"`
	} `yaml:"admin"`
	TLS struct {
		Certs []struct {
			Key  string `yaml:"key"`
			Cert string `yaml:"cert"`
		} `yaml:"certs"`
		CA string `yaml:"ca"`
	} `yaml:"tls"`
	Cluster struct {
		MaxStaleness time.Duration `yaml:"max_staleness"`
	} `yaml:"cluster"`
}

// LoadConfig reads and checks a configuration file. Unknown fields are
// errors: a misspelt setting must not be silently ignored.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config file: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid config file %s: %w", path, err)
	}
	if c.Version != "v1" {
		return nil, fmt.Errorf("invalid config file %s: version must be v1, not %q", path, c.Version)
	}
	if c.Admin.Identity != "" {
		if err := state.ValidIdentity(c.Admin.Identity); err != nil {
			return nil, fmt.Errorf("invalid config file %s: admin.identity: %w", path, err)
		}
	}
	if c.Cluster.MaxStaleness < 0 {
		return nil, fmt.Errorf("invalid config file %s: cluster.max_staleness must not be negative", path)
	}
	for i, kc := range c.TLS.Certs {
		if kc.Key == "" || kc.Cert == "" {
			return nil, fmt.Errorf("invalid config file %s: tls.certs[%d] needs both key and cert", path, i)
		}
	}
	return &c, nil
}

// maxStaleness is the configured staleness bound; 0 (serve for ever)
// without a config file.
func (c *Config) maxStaleness() time.Duration {
	if c == nil {
		return 0
	}
	return c.Cluster.MaxStaleness
}
