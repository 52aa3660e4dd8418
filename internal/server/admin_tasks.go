package server

import (
	"encoding/base64"
	"github.com/flowgate/flowgate/internal/task/record"
	"github.com/flowgate/flowgate/internal/tenant"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/auth"
)

// GET /v1/admin/tasks (DESIGN §9): task:admin of the caller's own tenant, newest first.
// Filters: owner, status, limit (1-200, default 50), before (an RFC 3339 time, or the "next"
// cursor of the previous page). A platform admin may name another tenant with ?tenant=.

// maxListedSummaryBytes bounds the result summary of each listed task, so a page stays small
// whatever the engines wrote.
const maxListedSummaryBytes = 1024

// taskView is a task as the admin list shows it.
type taskView struct {
	ID                     string `json:"id"`
	Tenant                 string `json:"tenant"`
	Owner                  string `json:"owner"`
	Objective              string `json:"objective"`
	Agents                 int    `json:"agents"`
	Strategy               string `json:"strategy"`
	Mode                   string `json:"mode"`
	TimeoutSeconds         int    `json:"timeoutSeconds"`
	Status                 string `json:"status"`
	Node                   string `json:"node,omitempty"`
	CreatedAt              string `json:"createdAt"`
	StartedAt              string `json:"startedAt,omitempty"`
	EndedAt                string `json:"endedAt,omitempty"`
	ExitCode               *int   `json:"exitCode,omitempty"`
	ResultSummary          string `json:"resultSummary,omitempty"`
	ResultSummaryTruncated bool   `json:"resultSummaryTruncated,omitempty"`
	Error                  string `json:"error,omitempty"`
	LastSeq                int64  `json:"lastSeq"`
}

func viewTask(t record.Task) taskView {
	v := taskView{
		ID: t.ID, Tenant: t.Tenant, Owner: t.Owner, Objective: t.Objective, Agents: t.Agents,
		Strategy: t.Strategy, Mode: t.Mode, TimeoutSeconds: t.TimeoutSec, Status: t.Status, Node: t.Node,
		CreatedAt: apiTime(t.CreatedAt), ExitCode: t.ExitCode, Error: t.Error, LastSeq: t.LastSeq,
		ResultSummary: t.ResultSummary,
	}
	if t.StartedAt != nil {
		v.StartedAt = apiTime(*t.StartedAt)
	}
	if t.EndedAt != nil {
		v.EndedAt = apiTime(*t.EndedAt)
	}
	if len(v.ResultSummary) > maxListedSummaryBytes {
		cut := maxListedSummaryBytes
		for cut > 0 && !utf8.RuneStart(v.ResultSummary[cut]) {
			cut--
		}
		v.ResultSummary, v.ResultSummaryTruncated = v.ResultSummary[:cut], true
	}
	return v
}

func handleTaskList(api *adminAPI, store TenantStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := api.authenticate(w, r)
		if !ok {
			return
		}
		q, errs := queryParams(r.URL.Query(), "tenant", "owner", "status", "limit", "before")
		// Scope before anything else is answered: another tenant's tasks are a 404.
		scope := scopeParam(q, p, errs)
		if !api.authorize(w, r, p, scope, auth.PermTaskAdmin) {
			return
		}
		f := record.Filter{Tenant: scope, Limit: pageLimit(q, errs)}
		if v, ok := q["owner"]; ok {
			if v == "" || len(v) > record.MaxOwnerBytes || !printable(v) {
				errs.add("owner", "must be a user id of 1 to 256 printable characters")
			}
			f.Owner = v
		}
		if v, ok := q["status"]; ok {
			if !record.ValidStatus(v) {
				errs.add("status", "must be one of pending, running, success, failed, timeout, cancelled, interrupted")
			}
			f.Status = v
		}
		if v, ok := q["before"]; ok {
			before, beforeID, ok := parseTaskCursor(v)
			if !ok {
				errs.add("before", "must be an RFC 3339 time like 2026-01-02T15:04:05Z or the next cursor of the previous page")
			}
			f.Before, f.BeforeID = before, beforeID
		}
		if errs.any() {
			api.invalid(w, r, p, p.Tenant, errs.err())
			return
		}
		limit := f.Limit
		f.Limit = limit + 1
		list, err := store.ListTasks(r.Context(), f)
		if err != nil {
			api.internalError(w, r, err)
			return
		}
		out := struct {
			Tasks []taskView `json:"tasks"`
			Next  string     `json:"next,omitempty"`
		}{Tasks: make([]taskView, 0, min(len(list), limit))}
		if len(list) > limit {
			list = list[:limit]
			last := list[limit-1]
			out.Next = taskCursor(last.CreatedAt, last.ID)
		}
		for _, t := range list {
			out.Tasks = append(out.Tasks, viewTask(t))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// scopeParam is the tenant a list names with ?tenant= (a platform admin's reach), or the
// caller's own; a malformed one is reported in errs, after the caller's own scope answered.
func scopeParam(q map[string]string, p *auth.Principal, errs fieldErrs) string {
	v, ok := q["tenant"]
	if !ok {
		return p.Tenant
	}
	if !tenant.ValidID(v) {
		errs.add("tenant", "must be a tenant id")
		return p.Tenant
	}
	return v
}

// taskCursor names a position in the newest-first task list: the stored creation time at
// full precision and the task id, which breaks ties between tasks created together.
func taskCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(created.UTC().Format(time.RFC3339Nano) + " " + id))
}

// parseTaskCursor reads ?before=: an RFC 3339 time, or a cursor from taskCursor.
func parseTaskCursor(s string) (time.Time, string, bool) {
	if len(s) > 256 {
		return time.Time{}, "", false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, "", true
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", false
	}
	ts, id, ok := strings.Cut(string(raw), " ")
	if !ok || id == "" || len(id) > record.MaxIDBytes || !printable(id) {
		return time.Time{}, "", false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", false
	}
	return t, id, true
}

// printable reports whether s is valid UTF-8 without control or format characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}
