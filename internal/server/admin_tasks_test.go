package server

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/store"
)

func TestTaskList(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	ctx := t.Context()
	base := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	// acme: 7 tasks, two owners, three at the same instant (paging must break the tie).
	var want []string
	for i := range 7 {
		owner, status := "alice", store.TaskSuccess
		if i%2 == 1 {
			owner, status = "bob", store.TaskFailed
		}
		created := base.Add(time.Duration(min(i, 4)) * time.Minute)
		id := fmt.Sprintf("task-acme-%d", i)
		if _, err := f.db.CreateTask(ctx, store.Task{ID: id, Tenant: "acme", Owner: owner, Objective: "objective " + id,
			Agents: 2, Strategy: "auto", Mode: "centralized", TimeoutSec: 60, Status: status, CreatedAt: created,
			ResultSummary: strings.Repeat("r", 3000)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if _, err := f.db.CreateTask(ctx, store.Task{ID: "task-globex-1", Tenant: "globex", Owner: "carol", Objective: "theirs",
		Agents: 1, Strategy: "auto", Mode: "centralized", TimeoutSec: 60}); err != nil {
		t.Fatal(err)
	}
	admin := f.token("acme", auth.PermTaskAdmin)

	type page struct {
		Tasks []taskView `json:"tasks"`
		Next  string     `json:"next"`
	}
	list := func(token, query string) page {
		t.Helper()
		r := f.do("GET", "/v1/admin/tasks?"+query, token, "")
		f.expect(r, 200, "")
		var p page
		r.json(t, &p)
		return p
	}

	p := list(admin, "")
	if len(p.Tasks) != 7 || p.Next != "" {
		t.Fatalf("%d tasks, next %q", len(p.Tasks), p.Next)
	}
	for i := 1; i < len(p.Tasks); i++ {
		if p.Tasks[i].CreatedAt > p.Tasks[i-1].CreatedAt {
			t.Fatal("not newest first")
		}
	}
	for _, tv := range p.Tasks {
		if tv.Tenant != "acme" || !tv.ResultSummaryTruncated || len(tv.ResultSummary) != maxListedSummaryBytes {
			t.Fatalf("task view %+v", tv)
		}
	}

	// Paging by two covers everything once.
	seen := map[string]bool{}
	query := "limit=2"
	for range 10 {
		p := list(admin, query)
		for _, tv := range p.Tasks {
			if seen[tv.ID] {
				t.Fatalf("%s listed twice", tv.ID)
			}
			seen[tv.ID] = true
		}
		if p.Next == "" {
			break
		}
		query = "limit=2&before=" + url.QueryEscape(p.Next)
	}
	if len(seen) != len(want) {
		t.Fatalf("paging saw %d of %d tasks", len(seen), len(want))
	}

	if p := list(admin, "owner=bob"); len(p.Tasks) != 3 {
		t.Fatalf("owner=bob: %d tasks", len(p.Tasks))
	}
	if p := list(admin, "status=failed&owner=alice"); len(p.Tasks) != 0 {
		t.Fatalf("status=failed&owner=alice: %d tasks", len(p.Tasks))
	}
	if p := list(admin, "before="+url.QueryEscape(base.Add(time.Minute).Format(time.RFC3339))); len(p.Tasks) != 1 {
		t.Fatalf("before a time: %d tasks", len(p.Tasks))
	}

	// Scope: another tenant's tasks are not found; the platform may choose a tenant.
	f.expect(f.do("GET", "/v1/admin/tasks?tenant=globex", admin, ""), 404, "not_found")
	f.expect(f.do("GET", "/v1/admin/tasks", f.token("acme", auth.PermSwarmExecute, auth.PermTenantAdmin), ""), 403, "forbidden")
	if p := list(f.token("acme", auth.PermPlatformAdmin), "tenant=globex"); len(p.Tasks) != 1 || p.Tasks[0].Owner != "carol" {
		t.Fatalf("platform view of globex: %+v", p.Tasks)
	}
	if p := list(f.token("globex", auth.PermTaskAdmin), ""); len(p.Tasks) != 1 {
		t.Fatalf("globex admin sees %d tasks", len(p.Tasks))
	}

	for _, tc := range []struct{ query, field string }{
		{"status=done", "status"}, {"limit=0", "limit"}, {"before=yesterday", "before"},
		{"owner=", "owner"}, {"owner=a%00b", "owner"}, {"tenant=Bad!", "tenant"}, {"page=2", "page"},
	} {
		r := f.do("GET", "/v1/admin/tasks?"+tc.query, admin, "")
		f.expect(r, 400, "validation_failed")
		if pr := r.problem(t); pr.Fields[tc.field] == "" {
			t.Errorf("%s: fields %v do not name %s", tc.query, pr.Fields, tc.field)
		}
	}
	f.expect(f.do("POST", "/v1/admin/tasks", admin, `{}`), 405, "method_not_allowed")
}

func TestTaskCursor(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 2, 1, 10, 0, 0, 123456000, time.UTC)
	c := taskCursor(at, "3f2a")
	got, id, ok := parseTaskCursor(c)
	if !ok || !got.Equal(at) || id != "3f2a" {
		t.Fatalf("round trip: %v %q %v", got, id, ok)
	}
	for _, bad := range []string{"", "x", "MjAyNg", strings.Repeat("A", 300)} {
		if _, _, ok := parseTaskCursor(bad); ok {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}
