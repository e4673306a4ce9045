package server

import (
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/ratelimit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// settingsCommand is the command of the audit record a node writes when it
// applies a change of the cluster-wide settings.
const settingsCommand = "CLUSTER:SETTINGS"

// runtimeSettings are the settings a running node applies: those of its
// config file, overridden by the cluster-wide settings of the replicated
// state, which change without a restart.
type runtimeSettings struct {
	file      map[string]string // from the config file
	host      string            // this node, as audit records name it
	level     *slog.LevelVar
	audit     *audit.Log
	live      atomic.Bool  // caught up: changes applied from now on are new
	staleness atomic.Int64 // time.Duration
	usage     atomic.Int64 // time.Duration: how often to report key usage
	limits    *ratelimit.Limiter

	mu        sync.Mutex
	effective map[string]string
}

// newRuntimeSettings returns the settings of node host, whose config file
// is c (nil for none), whose own root identity is admin, and whose audit
// log is log.
func newRuntimeSettings(c *Config, log *audit.Log, host, admin string) *runtimeSettings {
	rate, burst := c.limits()
	r := &runtimeSettings{level: new(slog.LevelVar), audit: log, host: host, limits: new(ratelimit.Limiter), file: map[string]string{
		service.SettingLogLevel:            strings.ToLower(c.logLevel().String()), // as the setting is spelt: info, not INFO
		service.SettingAudit:               "on",
		service.SettingMaxStaleness:        c.maxStaleness().String(),
		service.SettingMetricsAuth:         "sysadmin",
		service.SettingDeletionWindow:      service.DefaultDeletionWindow.String(),
		service.SettingRotateEvery:         "0s",
		service.SettingAdminIdentity:       admin,
		service.SettingLimitsRate:          strconv.FormatFloat(rate, 'g', -1, 64),
		service.SettingLimitsBurst:         strconv.Itoa(burst),
		service.SettingUsageReportInterval: service.DefaultUsageReportInterval.String(),
	}}
	r.apply(state.SettingsUpdate{})
	return r
}

// caughtUp tells r that the node has applied the log it had: changes it
// applies from now on are new, and are audited. Those applied while it
// catches up were audited when they were made; after a restart they are
// the node's history, not news.
func (r *runtimeSettings) caughtUp() { r.live.Store(true) }

// apply makes the node follow the cluster-wide settings; it is the state's
// OnSettings function.
//
// A change is audited (settingsCommand) before it takes effect, and so
// with the audit log on if it was on before or is on after: turning the
// audit log off leaves a record of who did it in the sink, and turning it
// on again does too.
func (r *runtimeSettings) apply(u state.SettingsUpdate) {
	eff := maps.Clone(r.file)
	maps.Copy(eff, u.Settings)

	auditOn := eff[service.SettingAudit] != "off"
	if auditOn {
		r.audit.SetEnabled(true)
	}
	if u.Changes != nil && r.live.Load() {
		r.record(u)
	}
	r.audit.SetEnabled(auditOn)

	var level slog.Level
	level.UnmarshalText([]byte(eff[service.SettingLogLevel]))
	r.level.Set(level)
	d, _ := service.ParseDuration(eff[service.SettingMaxStaleness])
	r.staleness.Store(int64(d))
	d, _ = time.ParseDuration(eff[service.SettingUsageReportInterval])
	r.usage.Store(int64(d))
	rate, _ := service.ParseRate(eff[service.SettingLimitsRate])
	burst, _ := service.ParseBurst(eff[service.SettingLimitsBurst])
	r.limits.Set(rate, burst)

	r.mu.Lock()
	r.effective = eff
	r.mu.Unlock()
}

// record writes the audit record of a change of the settings. The change
// is committed whatever happens here, so a record that cannot be written
// is logged, not refused: the requests that follow are refused while the
// sink stays broken, unless the change turned the audit log off.
func (r *runtimeSettings) record(u state.SettingsUpdate) {
	err := r.audit.Record(audit.Event{
		Time: time.Now().UTC(), Node: r.host, Identity: u.By, API: "cluster",
		Command: settingsCommand, Resource: service.DescribeSettings(u.Changes, true), Status: http.StatusOK,
	})
	if err != nil {
		slog.Error("failed to audit a change of the cluster-wide settings", "by", u.By, "err", err)
	}
}

// Effective returns the settings this node follows now.
func (r *runtimeSettings) Effective() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.effective)
}

func (r *runtimeSettings) maxStaleness() time.Duration { return time.Duration(r.staleness.Load()) }

func (r *runtimeSettings) usageReportInterval() time.Duration { return time.Duration(r.usage.Load()) }
