package service

import (
	"fmt"
	"strconv"
)

// Cluster-wide settings of the per-identity rate limit (see
// internal/ratelimit). They override the limits of each node's config
// file; with neither, identities are not limited.
const (
	SettingLimitsRate  = "limits.rate"  // requests a second per identity; 0 = no limit
	SettingLimitsBurst = "limits.burst" // requests an identity may send at once; 0 = the rate
)

// They are registered here rather than in the table of settings.go, so
// that the rate limit keeps to one file.
func init() {
	settings[SettingLimitsRate] = func(v string) error {
		_, err := ParseRate(v)
		return err
	}
	settings[SettingLimitsBurst] = func(v string) error {
		_, err := ParseBurst(v)
		return err
	}
}

// ParseRate parses a rate limit: a non-negative number of requests a
// second (fractions allowed, 0.5 is one request every two seconds).
func ParseRate(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0 && f <= 1e9) { // NaN fails both
		return 0, fmt.Errorf("must be a number of requests a second between 0 (no limit) and 1e9")
	}
	return f, nil
}

// ParseBurst parses a burst: a non-negative whole number of requests.
func ParseBurst(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1e9 {
		return 0, fmt.Errorf("must be a whole number of requests between 0 (as many as the rate) and 1e9")
	}
	return n, nil
}
