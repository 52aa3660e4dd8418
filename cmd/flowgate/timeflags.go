package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseSince reads the start of a time range the way an operator types it (DESIGN §19): a
// duration back from now (Go's, like 36h, or whole days like 7d), a date (its midnight, UTC)
// or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	return parseRangeTime(s, now, false)
}

// parseUntil reads the end of a time range: as parseSince, except that a date means through
// the end of that UTC day (the admin API's `to` reads a date the same way).
func parseUntil(s string, now time.Time) (time.Time, error) {
	return parseRangeTime(s, now, true)
}

func parseRangeTime(s string, now time.Time, endOfDay bool) (time.Time, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 && days <= 3660 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a duration (24h, 7d), a date (2026-12-01) or an RFC 3339 time", s)
}
