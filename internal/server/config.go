package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// Config is the YAML configuration file of a node.
//
//	version: v1
//	admin:
//	  identity: h1:…          # this node's root instead of the HSM-derived root API key; the cluster setting admin.identity overrides it
//	tls:
//	  certs:
//	    - key: private.key
//	      cert: public.crt
//	  ca: ca.crt              # offered to clients as acceptable issuers
//	cluster:
//	  max_staleness: 30s      # how long a node cut off from the leader serves reads; 0 = for ever
//	  snapshot_threshold: 8192 # raft snapshots after this many new entries
//	  snapshot_interval: 2m   # how often raft checks whether to snapshot
//	  trailing_logs: 10240    # entries kept after a snapshot for lagging followers
//	log:
//	  level: info             # debug, info, warn or error
//	audit:
//	  sink: stdout            # stdout, a file path, or empty for none
//	  fail_open: false        # serve requests even when the sink cannot be written
//	kes:
//	  enclave: default        # the enclave the KES API acts on
//	limits:
//	  rate: 1000              # requests a second per identity; 0 or absent = no limit
//	  burst: 2000             # requests an identity may send at once; 0 = rate
//	hsm:                      # the node's HSMs, see HSMConfig; default: from the environment
//	  - name: token-a
//	    pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token: keep, key: keep-root, pin_env: KEEP_PKCS11_PIN}
type Config struct {
	Version string `yaml:"version" json:"version"`
	Admin   struct {
		Identity string `yaml:"identity" json:"identity,omitempty"`
	} `yaml:"admin" json:"admin"`
	TLS struct {
		Certs []struct {
			Key  string `yaml:"key" json:"key"`
			Cert string `yaml:"cert" json:"cert"`
		} `yaml:"certs" json:"certs,omitempty"`
		CA string `yaml:"ca" json:"ca,omitempty"`
	} `yaml:"tls" json:"tls"`
	Cluster struct {
		MaxStaleness      time.Duration `yaml:"max_staleness" json:"max_staleness"`
		SnapshotThreshold uint64        `yaml:"snapshot_threshold" json:"snapshot_threshold,omitempty"`
		SnapshotInterval  time.Duration `yaml:"snapshot_interval" json:"snapshot_interval,omitempty"`
		TrailingLogs      uint64        `yaml:"trailing_logs" json:"trailing_logs,omitempty"`
	} `yaml:"cluster" json:"cluster"`
	Log struct {
		Level string `yaml:"level" json:"level,omitempty"`
	} `yaml:"log" json:"log"`
	Audit struct {
		Sink     string `yaml:"sink" json:"sink,omitempty"`
		FailOpen bool   `yaml:"fail_open" json:"fail_open,omitempty"`
	} `yaml:"audit" json:"audit"`
	KES struct {
		Enclave string `yaml:"enclave" json:"enclave,omitempty"`
	} `yaml:"kes" json:"kes"`
	// Limits is the per-identity rate limit; the cluster settings
	// limits.rate and limits.burst override it.
	Limits struct {
		Rate  float64 `yaml:"rate" json:"rate,omitempty"`
		Burst int     `yaml:"burst" json:"burst,omitempty"`
	} `yaml:"limits" json:"limits"`
	// HSM lists the node's HSMs (HSMConfig); without it, the environment
	// names them (MINIO_KMS_HSM_KEY, KEEP_PKCS11_*).
	HSM []HSMConfig `yaml:"hsm" json:"hsm,omitempty"`
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
	if c.Cluster.SnapshotInterval < 0 {
		return nil, fmt.Errorf("invalid config file %s: cluster.snapshot_interval must not be negative", path)
	}
	if c.Cluster.MaxStaleness < 0 {
		return nil, fmt.Errorf("invalid config file %s: cluster.max_staleness must not be negative", path)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return nil, fmt.Errorf("invalid config file %s: log.level: %w", path, err)
	}
	if c.KES.Enclave != "" {
		if err := state.ValidEnclaveName(c.KES.Enclave); err != nil {
			return nil, fmt.Errorf("invalid config file %s: kes.enclave: %w", path, err)
		}
	}
	if _, err := service.ParseRate(strconv.FormatFloat(c.Limits.Rate, 'g', -1, 64)); err != nil {
		return nil, fmt.Errorf("invalid config file %s: limits.rate: %w", path, err)
	}
	if _, err := service.ParseBurst(strconv.Itoa(c.Limits.Burst)); err != nil {
		return nil, fmt.Errorf("invalid config file %s: limits.burst: %w", path, err)
	}
	if err := checkHSMs(c.HSM); err != nil {
		return nil, fmt.Errorf("invalid config file %s: %w", path, err)
	}
	for i, kc := range c.TLS.Certs {
		if kc.Key == "" || kc.Cert == "" {
			return nil, fmt.Errorf("invalid config file %s: tls.certs[%d] needs both key and cert", path, i)
		}
	}
	return &c, nil
}

// kesEnclave is the enclave KES calls act on: kes.enclave, by default the
// default enclave, which exists from the first start. Another enclave
// must be created (keep enclave create) before KES calls can use it.
func (c *Config) kesEnclave() string {
	if c == nil || c.KES.Enclave == "" {
		return state.DefaultEnclave
	}
	return c.KES.Enclave
}

// limits is the configured rate limit: requests a second per identity
// and burst; 0 for none.
func (c *Config) limits() (rate float64, burst int) {
	if c == nil {
		return 0, 0
	}
	return c.Limits.Rate, c.Limits.Burst
}

// maxStaleness is the configured staleness bound; 0 (serve for ever)
// without a config file.
func (c *Config) maxStaleness() time.Duration {
	if c == nil {
		return 0
	}
	return c.Cluster.MaxStaleness
}

// parseLevel parses a log level; empty means info.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}

// logLevel is the configured log level.
func (c *Config) logLevel() slog.Level {
	if c == nil {
		return slog.LevelInfo
	}
	l, _ := parseLevel(c.Log.Level)
	return l
}

// openAudit opens the configured audit log: to stdout, to a file
// (appended to), or to no sink.
func (c *Config) openAudit(stdout io.Writer) *audit.Log {
	switch {
	case c == nil || c.Audit.Sink == "":
		return audit.New(nil, false)
	case c.Audit.Sink == "stdout":
		return audit.New(stdout, c.Audit.FailOpen)
	default:
		return audit.NewFile(c.Audit.Sink, c.Audit.FailOpen)
	}
}

// nodeView is a node's configuration as /v1/config shows it. It holds no
// secret: the HSM key appears by its HSM's name only.
type nodeView struct {
	Address    string  `json:"address"`
	Host       string  `json:"host"`
	Dir        string  `json:"dir,omitempty"`
	Dev        bool    `json:"dev,omitempty"`
	HSM        string  `json:"hsm"`
	Admin      string  `json:"admin"`
	ConfigFile string  `json:"config_file,omitempty"`
	Config     *Config `json:"config,omitempty"`
}

// snapshots are the configured raft snapshot settings; zero for defaults.
func (c *Config) snapshots() cluster.Snapshots {
	if c == nil {
		return cluster.Snapshots{}
	}
	return cluster.Snapshots{
		Threshold:    c.Cluster.SnapshotThreshold,
		Interval:     c.Cluster.SnapshotInterval,
		TrailingLogs: c.Cluster.TrailingLogs,
	}
}
