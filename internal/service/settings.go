package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	// SettingAdminIdentity names the cluster's admin, a registered
	// SysAdmin identity (h1:…) that replaces every node's own root (the
	// HSM-derived root API key, or its config file's admin.identity).
	// Only the current admin may change it; see state.SettingAdminIdentity.
	SettingAdminIdentity = state.SettingAdminIdentity
	// SettingUsageReportInterval is how often every node reports the use
	// of its key versions (a duration of at least 100ms, default
	// DefaultUsageReportInterval).
	SettingUsageReportInterval = "usage.report_interval"
	// SettingDeletionWindow is how long a deleted key version stays
	// pending deletion, and can be restored, before it is destroyed (a
	// duration; 0 destroys at once). Default DefaultDeletionWindow.
	SettingDeletionWindow = "keys.deletion_window"
	// SettingRotateEvery is the rotation period new keys get (a duration;
	// unset or 0: none).
	SettingRotateEvery = "keys.rotate_every"
)

// DefaultDeletionWindow is the deletion window when keys.deletion_window
// is not set: a week, as the shortest windows of the cloud KMSs.
const DefaultDeletionWindow = 7 * 24 * time.Hour

// settings validates the value of each setting.
var settings = map[string]func(string) error{
	SettingLogLevel: func(v string) error {
		var l slog.Level
		return l.UnmarshalText([]byte(v))
	},
	SettingAudit:          oneOf("on", "off"),
	SettingMaxStaleness:   nonNegativeDuration,
	SettingDeletionWindow: nonNegativeDuration,
	SettingRotateEvery:    nonNegativeDuration,
	SettingMetricsAuth:    oneOf("sysadmin", "public"),
	SettingAdminIdentity:  validAdminIdentity,
	SettingUsageReportInterval: func(v string) error {
		d, err := time.ParseDuration(v)
		if err == nil && d < minUsageReportInterval {
			err = fmt.Errorf("must be at least %s", minUsageReportInterval)
		}
		return err
	},
}

// nonNegativeDuration checks a duration setting: days may be given as
// "7d" (ParseDuration).
func nonNegativeDuration(v string) error {
	_, err := ParseDuration(v)
	return err
}

// ParseDuration parses a duration of Go's syntax, or a whole number of
// days ("90d"), and refuses negative ones.
func ParseDuration(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = fmt.Errorf("negative duration %q", v)
	}
	return d, err
}

// validAdminIdentity checks the spelling of an admin identity; whether it
// is registered, and a SysAdmin, is checked when the change is applied.
// An API key is the likeliest mistake, and a secret: the message does not
// repeat it.
func validAdminIdentity(v string) error {
	if state.ValidIdentity(v) != nil {
		return errors.New("must be an identity h1:…, not an API key or anything else: keep identity API-KEY computes it")
	}
	return nil
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
// none of the changes are made. It returns the cluster-wide settings after
// the change: a caller that handed over the admin may no longer read them.
//
// Only the current admin may change SettingAdminIdentity: a SysAdmin must
// not make itself the one identity that cannot be deleted, nor give the
// HSM-derived root back its power.
func (s *Service) SetSettings(ctx context.Context, c Caller, changes map[string]string) (map[string]string, error) {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: no settings to change", state.ErrInvalidArgument)
	}
	for k, v := range changes {
		valid, ok := settings[k]
		if !ok {
			return nil, fmt.Errorf("%w: unknown setting %q: use one of %v", state.ErrInvalidArgument, k, SettingNames())
		}
		if v == "" {
			continue
		}
		if err := valid(v); err != nil {
			// The value is not repeated: it may be a secret typed into
			// the wrong setting.
			return nil, fmt.Errorf("%w: %s: %v", state.ErrInvalidArgument, k, err)
		}
	}
	if _, ok := changes[SettingAdminIdentity]; ok && !s.isRoot(c.Identity) {
		return nil, fmt.Errorf("%w: only the current admin may change %s", ErrPermission, SettingAdminIdentity)
	}
	if err := s.apply(ctx, c, &state.Entry{Op: state.OpSetSettings, Settings: changes}); err != nil {
		return nil, err
	}
	return s.state.Settings(), nil
}

// secretSettings are the settings whose values are secrets: audit records
// name them without their values. No setting holds a secret today
// (admin.identity is the hash of a public key, the others are levels,
// switches and durations); one that ever does, such as an API key or a
// token, must be listed here.
var secretSettings = map[string]bool{}

// settingValue spells the value of setting k for an audit record: quoted,
// or "(secret)" for a secret setting and for settings this node does not
// know (a newer node may have made them), whose values may be secrets for
// all it knows.
func settingValue(k, v string) string {
	if _, known := settings[k]; !known || secretSettings[k] {
		return "(secret)"
	}
	return strconv.Quote(v)
}

// DescribeSettings spells changes of settings for an audit record, sorted
// by name: `audit="off" log.level=""` (an empty value resets a setting).
// Secret values are left out (settingValue), and so are all values of
// changes that were refused (applied false): a refused value may be a
// secret typed into the wrong setting. Names this node does not know are
// spelt "(unknown)".
func DescribeSettings(changes map[string]string, applied bool) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(changes)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if _, known := settings[k]; !known && !applied {
			b.WriteString("(unknown)")
			continue
		}
		b.WriteString(k)
		if applied {
			b.WriteByte('=')
			b.WriteString(settingValue(k, changes[k]))
		}
	}
	return b.String()
}
