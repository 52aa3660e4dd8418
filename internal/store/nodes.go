package store

import (
	"context"
	"fmt"
	"time"
)

// UpsertNode records that gateway node id started at startedAt (heartbeat = startedAt),
// replacing an earlier record of the same id.
func (db *DB) UpsertNode(ctx context.Context, id string, startedAt time.Time) error {
	if id == "" || len(id) > MaxNodeBytes {
		return fmt.Errorf("%w: node id must be 1 to %d bytes", ErrInvalid, MaxNodeBytes)
	}
	t := db.TimeArg(startedAt)
	_, err := db.write(ctx, db.Rebind(
		`INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`),
		id, t, t)
	if err != nil {
		return fmt.Errorf("store: upsert node: %w", err)
	}
	return nil
}

// TouchNode sets the node's heartbeat to at, or returns ErrNotFound if the node is unknown.
func (db *DB) TouchNode(ctx context.Context, id string, at time.Time) error {
	res, err := db.write(ctx, db.Rebind("UPDATE nodes SET heartbeat_at = ? WHERE id = ?"), db.TimeArg(at), id)
	if err != nil {
		return fmt.Errorf("store: touch node: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: touch node: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("node %s: %w", id, ErrNotFound)
	}
	return nil
}

// LiveTaskIDs lists the tasks of node (every node when "") that are pending or running: what
// a reaper copies from the cluster stream into the event log before it ends them.
func (db *DB) LiveTaskIDs(ctx context.Context, node string) ([]string, error) {
	return queryRows(ctx, db, db.w, "live tasks", db.Rebind(`SELECT id FROM tasks
		WHERE status IN (?, ?) AND (? = '' OR node = ?) ORDER BY id`), scanString, TaskPending, TaskRunning, node, node)
}
