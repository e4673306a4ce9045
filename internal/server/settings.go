package server

import (
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/ratelimit"
	"github.com/keep-kms/keep/internal/service"
)

// runtimeSettings are the settings a running node applies: those of its
// config file, overridden by the cluster-wide settings of the replicated
// state, which change without a restart.
type runtimeSettings struct {
	file      map[string]string // from the config file
	level     *slog.LevelVar
	audit     *audit.Log
	staleness atomic.Int64 // time.Duration
	limits    *ratelimit.Limiter

	mu        sync.Mutex
	effective map[string]string
}

func newRuntimeSettings(c *Config, log *audit.Log) *runtimeSettings {
	rate, burst := c.limits()
	r := &runtimeSettings{level: new(slog.LevelVar), audit: log, limits: new(ratelimit.Limiter), file: map[string]string{
		service.SettingLogLevel:     strings.ToLower(c.logLevel().String()), // as the setting is spelt: info, not INFO
		service.SettingAudit:        "on",
		service.SettingMaxStaleness: c.maxStaleness().String(),
		service.SettingMetricsAuth:  "sysadmin",
		service.SettingLimitsRate:   strconv.FormatFloat(rate, 'g', -1, 64),
		service.SettingLimitsBurst:  strconv.Itoa(burst),
	}}
	r.apply(nil)
	return r
}

// apply makes the node follow the cluster-wide settings; it is the state's
// OnSettings function.
func (r *runtimeSettings) apply(cluster map[string]string) {
	eff := maps.Clone(r.file)
	maps.Copy(eff, cluster)

	var level slog.Level
	level.UnmarshalText([]byte(eff[service.SettingLogLevel]))
	r.level.Set(level)
	r.audit.SetEnabled(eff[service.SettingAudit] != "off")
	d, _ := time.ParseDuration(eff[service.SettingMaxStaleness])
	r.staleness.Store(int64(d))
	rate, _ := service.ParseRate(eff[service.SettingLimitsRate])
	burst, _ := service.ParseBurst(eff[service.SettingLimitsBurst])
	r.limits.Set(rate, burst)

	r.mu.Lock()
	r.effective = eff
	r.mu.Unlock()
}

// Effective returns the settings this node follows now.
func (r *runtimeSettings) Effective() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.effective)
}

func (r *runtimeSettings) maxStaleness() time.Duration { return time.Duration(r.staleness.Load()) }
