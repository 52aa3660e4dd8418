package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/task/record"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Task statuses: package task's.
const (
	TaskPending     = record.StatusPending
	TaskRunning     = record.StatusRunning
	TaskSuccess     = record.StatusSuccess
	TaskFailed      = record.StatusFailed
	TaskTimeout     = record.StatusTimeout
	TaskCancelled   = record.StatusCancelled
	TaskInterrupted = record.StatusInterrupted
)

// The task record types are package task's: the store keeps them, the task package says
// what they are.
type (
	Task       = record.Task
	TaskUsage  = record.Usage
	TaskUpdate = record.Update
	TaskFilter = record.Filter
)

// Input bounds for tasks. ResultSummary and Error longer than their bound are cut (at a rune
// boundary) rather than refused, so that recording how a task ended cannot fail on its size.
const (
	MaxTaskIDBytes        = record.MaxIDBytes
	MaxOwnerBytes         = record.MaxOwnerBytes
	MaxObjectiveBytes     = 16 << 10
	MaxOptionBytes        = 64 // strategy, mode
	MaxNodeBytes          = 128
	MaxResultSummaryBytes = 64 << 10
	MaxTaskErrorBytes     = 4 << 10
)

const taskCols = "id, tenant, owner, objective, agents, strategy, mode, timeout_sec, status, node, " +
	"created_at, started_at, ended_at, exit_code, result_summary, error_msg, last_seq, " +
	"usage_input_tokens, usage_output_tokens, usage_cache_read_tokens, usage_cache_creation_tokens, " +
	"usage_cost_usd, usage_num_turns, permission_denials"

// ValidTaskStatus reports whether s is one of the Task* statuses.
func ValidTaskStatus(s string) bool { return record.ValidStatus(s) }

// TaskStatusFinal reports whether a task in status s has ended.
func TaskStatusFinal(s string) bool {
	return ValidTaskStatus(s) && s != TaskPending && s != TaskRunning
}

func checkText(field, s string, max int) error {
	if len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%w: task %s must be valid UTF-8 of at most %d bytes", ErrInvalid, field, max)
	}
	return nil
}

// truncateUTF8 cuts s to at most max bytes without splitting a rune.
func truncateUTF8(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// CreateTask stores a new task (status defaults to pending, CreatedAt to now) and returns it.
// It returns ErrConflict if the id is taken and ErrNotFound if the tenant does not exist.
func (db *DB) CreateTask(ctx context.Context, t Task) (Task, error) {
	if t.Status == "" {
		t.Status = TaskPending
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.timeNow()
	}
	t.CreatedAt = normTime(t.CreatedAt)
	t.StartedAt, t.EndedAt = normTimePtr(t.StartedAt), normTimePtr(t.EndedAt)
	t.ResultSummary = truncateUTF8(t.ResultSummary, MaxResultSummaryBytes)
	t.Error = truncateUTF8(t.Error, MaxTaskErrorBytes)
	if t.ID == "" {
		return Task{}, fmt.Errorf("%w: task id is empty", ErrInvalid)
	}
	for _, c := range []struct {
		field, value string
		max          int
	}{
		{"id", t.ID, MaxTaskIDBytes},
		{"owner", t.Owner, MaxOwnerBytes},
		{"objective", t.Objective, MaxObjectiveBytes},
		{"strategy", t.Strategy, MaxOptionBytes},
		{"mode", t.Mode, MaxOptionBytes},
		{"node", t.Node, MaxNodeBytes},
	} {
		if err := checkText(c.field, c.value, c.max); err != nil {
			return Task{}, err
		}
	}
	if !ValidTaskStatus(t.Status) {
		return Task{}, fmt.Errorf("%w: unknown task status %q", ErrInvalid, t.Status)
	}
	if t.Agents < 0 || t.TimeoutSec < 0 || t.LastSeq < 0 {
		return Task{}, fmt.Errorf("%w: task agents, timeout and lastSeq must not be negative", ErrInvalid)
	}
	if err := checkUsage(t.Usage, &t.PermissionDenials); err != nil {
		return Task{}, err
	}
	q := db.Rebind("INSERT INTO tasks (" + taskCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	args := []any{t.ID, t.Tenant, t.Owner, t.Objective, t.Agents, t.Strategy, t.Mode, t.TimeoutSec, t.Status, t.Node,
		db.TimeArg(t.CreatedAt), db.NullTimeArg(t.StartedAt), db.NullTimeArg(t.EndedAt), nullInt(t.ExitCode),
		t.ResultSummary, t.Error, t.LastSeq}
	args = append(args, usageArgs(t.Usage)...)
	args = append(args, t.PermissionDenials)
	var err error
	start := db.clock()
	if db.group != nil {
		err = db.group.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			_, err := db.execTx(ctx, tx, q, args...)
			return err
		})
	} else {
		_, err = db.exec(ctx, q, args...)
	}
	db.done(OpTaskWrite, start, err)
	switch {
	case db.dialect.isUniqueViolation(err):
		return Task{}, fmt.Errorf("task %s: %w", t.ID, ErrConflict)
	case db.dialect.isForeignKeyViolation(err):
		return Task{}, fmt.Errorf("tenant %s: %w", t.Tenant, ErrNotFound)
	case err != nil:
		return Task{}, fmt.Errorf("store: create task: %w", err)
	}
	return t, nil
}

// GetTask returns the task if it belongs to tenant; a task of another tenant is ErrNotFound.
func (db *DB) GetTask(ctx context.Context, tenant, id string) (Task, error) {
	row := db.queryRow(ctx, db.Rebind(
		"SELECT "+taskCols+" FROM tasks WHERE tenant = ? AND id = ?"), tenant, id)
	return scanTask(row)
}

// UpdateTask applies u to a task of tenant that is still pending or running and returns the
// stored task. It returns ErrNotFound if the tenant has no such task and ErrConflict if the task
// has already ended (its final status is never overwritten).
func (db *DB) UpdateTask(ctx context.Context, tenant, id string, u TaskUpdate) (Task, error) {
	var status any
	if u.Status != "" {
		if !ValidTaskStatus(u.Status) {
			return Task{}, fmt.Errorf("%w: unknown task status %q", ErrInvalid, u.Status)
		}
		status = u.Status
	}
	var node, summary, errMsg, lastSeq any
	if u.Node != nil {
		if err := checkText("node", *u.Node, MaxNodeBytes); err != nil {
			return Task{}, err
		}
		node = *u.Node
	}
	if u.ResultSummary != nil {
		summary = truncateUTF8(*u.ResultSummary, MaxResultSummaryBytes)
	}
	if u.Error != nil {
		errMsg = truncateUTF8(*u.Error, MaxTaskErrorBytes)
	}
	if u.LastSeq != nil {
		if *u.LastSeq < 0 {
			return Task{}, fmt.Errorf("%w: task lastSeq must not be negative", ErrInvalid)
		}
		lastSeq = *u.LastSeq
	}
	var denials any
	if u.PermissionDenials != nil {
		if err := checkUsage(u.Usage, u.PermissionDenials); err != nil {
			return Task{}, err
		}
		denials = *u.PermissionDenials
	} else if err := checkUsage(u.Usage, new(int)); err != nil {
		return Task{}, err
	}
	// COALESCE(?, col) keeps the column when the argument is NULL, so one statement serves every
	// kind of update.
	q := db.Rebind(`UPDATE tasks SET
		status = COALESCE(?, status),
		node = COALESCE(?, node),
		started_at = COALESCE(?, started_at),
		ended_at = COALESCE(?, ended_at),
		exit_code = COALESCE(?, exit_code),
		result_summary = COALESCE(?, result_summary),
		error_msg = COALESCE(?, error_msg),
		last_seq = COALESCE(?, last_seq),
		usage_input_tokens = COALESCE(?, usage_input_tokens),
		usage_output_tokens = COALESCE(?, usage_output_tokens),
		usage_cache_read_tokens = COALESCE(?, usage_cache_read_tokens),
		usage_cache_creation_tokens = COALESCE(?, usage_cache_creation_tokens),
		usage_cost_usd = COALESCE(?, usage_cost_usd),
		usage_num_turns = COALESCE(?, usage_num_turns),
		permission_denials = COALESCE(?, permission_denials)
		WHERE tenant = ? AND id = ? AND status IN (?, ?)
		RETURNING ` + taskCols)
	args := []any{status, node, db.NullTimeArg(u.StartedAt), db.NullTimeArg(u.EndedAt), nullInt(u.ExitCode),
		summary, errMsg, lastSeq}
	args = append(args, usageArgs(u.Usage)...)
	args = append(args, denials, tenant, id, TaskPending, TaskRunning)
	var (
		t   Task
		err error
	)
	start := db.clock()
	if db.group != nil {
		err = db.group.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			t, err = scanTask(db.rowTx(ctx, tx, q, args...))
			return err
		})
	} else {
		t, err = scanTask(db.writeRow(ctx, q, args...))
	}
	db.done(OpTaskWrite, start, err)
	if !errors.Is(err, ErrNotFound) {
		return t, err
	}
	// Nothing matched: tell a missing task from a finished one.
	if _, gerr := db.GetTask(ctx, tenant, id); gerr != nil {
		return Task{}, gerr
	}
	return Task{}, fmt.Errorf("task %s has ended: %w", id, ErrConflict)
}

// ListTasks returns the tasks matching f, newest first.
func (db *DB) ListTasks(ctx context.Context, tf TaskFilter) ([]Task, error) {
	var f filter
	f.equal("tenant", tf.Tenant)
	f.equal("owner", tf.Owner)
	f.equal("status", tf.Status)
	if !tf.Before.IsZero() {
		if tf.BeforeID != "" {
			f.add("(created_at < ? OR (created_at = ? AND id < ?))",
				db.TimeArg(tf.Before), db.TimeArg(tf.Before), tf.BeforeID)
		} else {
			f.add("created_at < ?", db.TimeArg(tf.Before))
		}
	}
	q := "SELECT " + taskCols + " FROM tasks" + f.where() + " ORDER BY created_at DESC, id DESC LIMIT ?"
	return queryRows(ctx, db, db.db, "list tasks", db.Rebind(q), scanTask, append(f.args, clampLimit(tf.Limit))...)
}

func scanTask(s scanner) (Task, error) {
	var (
		t                       Task
		exitCode                sql.NullInt64
		in, out, cacheR, cacheC sql.NullInt64
		cost                    sql.NullFloat64
		turns                   sql.NullInt64
	)
	err := s.Scan(&t.ID, &t.Tenant, &t.Owner, &t.Objective, &t.Agents, &t.Strategy, &t.Mode, &t.TimeoutSec,
		&t.Status, &t.Node, TimeDest(&t.CreatedAt), NullTimeDest(&t.StartedAt), NullTimeDest(&t.EndedAt),
		&exitCode, &t.ResultSummary, &t.Error, &t.LastSeq, &in, &out, &cacheR, &cacheC, &cost, &turns, &t.PermissionDenials)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, kindErr(ErrNotFound, record.ErrNotFound, "task")
	}
	if err != nil {
		return Task{}, fmt.Errorf("store: read task: %w", err)
	}
	if exitCode.Valid {
		c := int(exitCode.Int64)
		t.ExitCode = &c
	}
	if in.Valid || out.Valid || cost.Valid {
		t.Usage = &TaskUsage{InputTokens: in.Int64, OutputTokens: out.Int64, CacheReadInputTokens: cacheR.Int64,
			CacheCreationInputTokens: cacheC.Int64, CostUSD: cost.Float64, NumTurns: int(turns.Int64)}
	}
	return t, nil
}

// usageArgs are the six usage columns' arguments: all NULL for no usage.
func usageArgs(u *TaskUsage) []any {
	if u == nil {
		return []any{nil, nil, nil, nil, nil, nil}
	}
	return []any{u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens, u.CostUSD, int64(u.NumTurns)}
}

// checkUsage refuses what no engine can have spent: negative or non-finite figures.
func checkUsage(u *TaskUsage, denials *int) error {
	if *denials < 0 {
		return fmt.Errorf("%w: task permission denials must not be negative", ErrInvalid)
	}
	if u == nil {
		return nil
	}
	if u.InputTokens < 0 || u.OutputTokens < 0 || u.CacheReadInputTokens < 0 || u.CacheCreationInputTokens < 0 ||
		u.NumTurns < 0 || !(u.CostUSD >= 0) || math.IsInf(u.CostUSD, 0) {
		return fmt.Errorf("%w: task usage must be finite and not negative", ErrInvalid)
	}
	return nil
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

func normTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	n := normTime(*t)
	return &n
}

// StaleNodes lists the nodes that own pending or running tasks but whose heartbeat is older
// than before (or that never registered): replicas presumed dead, for the cluster reaper.
func (db *DB) StaleNodes(ctx context.Context, before time.Time) ([]string, error) {
	return queryRows(ctx, db, db.db, "stale nodes", db.Rebind(`SELECT DISTINCT t.node FROM tasks t
		LEFT JOIN nodes n ON n.id = t.node
		WHERE t.status IN (?, ?) AND t.node <> '' AND (n.heartbeat_at IS NULL OR n.heartbeat_at < ?)`),
		scanString, TaskPending, TaskRunning, db.TimeArg(before))
}

// scanString reads a row of one text column.
func scanString(s scanner) (string, error) {
	var v string
	if err := s.Scan(&v); err != nil {
		return "", fmt.Errorf("store: read: %w", err)
	}
	return v, nil
}
