package main

import (
	"testing"
	"time"
)

func TestRangeTimes(t *testing.T) {
	now := time.Date(2026, 12, 7, 13, 30, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2026, 12, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		in          string
		since, till time.Time
		bad         bool
	}{
		{in: "24h", since: now.Add(-24 * time.Hour), till: now.Add(-24 * time.Hour)},
		{in: "90m", since: now.Add(-90 * time.Minute), till: now.Add(-90 * time.Minute)},
		{in: "7d", since: now.AddDate(0, 0, -7), till: now.AddDate(0, 0, -7)},
		{in: "2026-12-01", since: day(1), till: day(2)},
		{in: "2026-12-07T10:00:00+01:00", since: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), till: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)},
		{in: "", bad: true},
		{in: "-24h", bad: true},
		{in: "0d", bad: true},
		{in: "yesterday", bad: true},
		{in: "2026-13-01", bad: true},
		{in: "99999d", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			since, errS := parseSince(tt.in, now)
			till, errU := parseUntil(tt.in, now)
			if tt.bad {
				if errS == nil || errU == nil {
					t.Fatalf("parse(%q) = %v, %v; want errors", tt.in, since, till)
				}
				return
			}
			if errS != nil || errU != nil || !since.Equal(tt.since) || !till.Equal(tt.till) {
				t.Fatalf("parse(%q) = since %v (%v), until %v (%v); want %v, %v", tt.in, since, errS, till, errU, tt.since, tt.till)
			}
		})
	}
}
