package service

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/keep-kms/keep/internal/state"
)

// Cluster-wide settings: stored in the replicated state, changed on every
// node at once without a restart. They override the node's config file.
const (
	SettingLogLevel     = "log.level"             // debug, info, warn or error
	SettingAudit        = "audit"                 // on or off
	SettingMaxStaleness = "cluster.max_staleness" // a duration; 0 serves reads for ever
	SettingMetricsAuth  = "metrics.auth"          // sysadmin, or public: scrape without a client certificate
)

// settings validates the value of each setting.
var settings = map[string]func(string) error{
	SettingLogLevel: func(v string) error {
		var l slog.Level
		return l.UnmarshalText([]byte(v))
	},
	SettingAudit: oneOf("on", "off"),
	SettingMaxStaleness: func(v string) error {
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			err = fmt.Errorf("negative duration")
		}
		return err
	},
	SettingMetricsAuth: oneOf("sysadmin", "public"),
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("must be one of %v", values)
		}
		return nil
	}
}

// SettingNames lists the cluster-wide settings.
func SettingNames() []string { return slices.Sorted(maps.Keys(settings)) }

// Settings returns the cluster-wide settings that are set.
func (s *Service) Settings(c Caller) (map[string]string, error) {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return nil, err
	}
	return s.state.Settings(), nil
}

// SetSettings changes cluster-wide settings on every node at once; an
// empty value resets a setting to each node's own configuration. All or
// none of the changes are made.
func (s *Service) SetSettings(ctx context.Context, c Caller, changes map[string]string) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	if len(changes) == 0 {
		return fmt.Errorf("%w: no settings to change", state.ErrInvalidArgument)
	}
	for k, v := range changes {
		valid, ok := settings[k]
		if !ok {
			return fmt.Errorf("%w: unknown setting %q: use one of %v", state.ErrInvalidArgument, k, SettingNames())
		}
		if v == "" {
			continue
		}
		if err := valid(v); err != nil {
			return fmt.Errorf("%w: %s=%s: %v", state.ErrInvalidArgument, k, strconv.Quote(v), err)
		}
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpSetSettings, Settings: changes})
}
