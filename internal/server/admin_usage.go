package server

import (
	"net/http"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/task/record"
)

// GET /v1/admin/usage (DESIGN §18): what a tenant's engines reported spending, summed over
// the tasks that ended in [from, to), grouped by UTC day, user or task. tenant:admin of the
// caller's own tenant; a platform admin may name any tenant with ?tenant=.

// defaultUsageDays is the range without ?from=: the last 30 days.
const defaultUsageDays = 30

// usageTotal is every group of a usage answer together.
type usageTotal struct {
	Tasks int64 `json:"tasks"`
	record.Usage
}

func handleUsage(api *adminAPI, store TenantStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := api.authenticate(w, r)
		if !ok {
			return
		}
		q, errs := queryParams(r.URL.Query(), "tenant", "from", "to", "groupBy")
		// Scope before anything else is answered: another tenant's usage is a 404.
		scope := scopeParam(q, p, errs)
		if !api.authorize(w, r, p, scope, auth.PermTenantAdmin) {
			return
		}
		f := record.UsageFilter{Tenant: scope, GroupBy: record.UsageByDay, To: time.Now().UTC()}
		if v, ok := q["groupBy"]; ok {
			switch v {
			case record.UsageByDay, record.UsageByUser, record.UsageByTask:
				f.GroupBy = v
			default:
				errs.add("groupBy", "must be day, user or task")
			}
		}
		if v, ok := q["to"]; ok {
			// A date names the whole day: the range ends where the next one starts.
			t, date, ok := parseTimeOrDate(v)
			if !ok {
				errs.add("to", "must be an RFC 3339 time like 2026-12-07T15:04:05Z or a date like 2026-12-07")
			} else if date {
				t = t.AddDate(0, 0, 1)
			}
			f.To = t
		}
		f.From = f.To.AddDate(0, 0, -defaultUsageDays)
		if v, ok := q["from"]; ok {
			t, _, ok := parseTimeOrDate(v)
			if !ok {
				errs.add("from", "must be an RFC 3339 time like 2026-12-07T15:04:05Z or a date like 2026-12-07")
			}
			f.From = t
		}
		_, badFrom := errs["from"]
		_, badTo := errs["to"]
		if !badFrom && !badTo && !f.From.Before(f.To) {
			errs.add("from", "must be before to")
		}
		if errs.any() {
			api.invalid(w, r, p, p.Tenant, errs.err())
			return
		}
		f.Limit = maxUsageRows + 1
		rows, err := store.UsageSummary(r.Context(), f)
		if err != nil {
			api.internalError(w, r, err)
			return
		}
		out := struct {
			Tenant    string            `json:"tenant"`
			From      string            `json:"from"`
			To        string            `json:"to"`
			GroupBy   string            `json:"groupBy"`
			Rows      []record.UsageRow `json:"rows"`
			Total     usageTotal        `json:"total"`
			Truncated bool              `json:"truncated,omitempty"`
		}{Tenant: scope, From: apiTime(f.From), To: apiTime(f.To), GroupBy: f.GroupBy, Rows: rows}
		if len(rows) > maxUsageRows {
			out.Rows, out.Truncated = rows[:maxUsageRows], true
		}
		if out.Rows == nil {
			out.Rows = []record.UsageRow{}
		}
		for _, row := range out.Rows {
			out.Total.Tasks += row.Tasks
			out.Total.Usage = record.AddUsage(out.Total.Usage, row.Usage)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// maxUsageRows bounds the groups of one answer (a year of days, or that many users or tasks);
// past it the answer says truncated and a narrower range gets the rest.
const maxUsageRows = 500

// parseTimeOrDate reads an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
func parseTimeOrDate(s string) (t time.Time, date, ok bool) {
	if len(s) > 64 {
		return time.Time{}, false, false
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true, true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), false, err == nil
}
