package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

// The audit log's tables (migrations 00002_audit.sql) behind audit.Storage. The hashing,
// signing and verification logic lives in internal/audit; this file only moves rows.

var _ audit.Storage = (*DB)(nil)

// auditInsertRows bounds the rows of one multi-row INSERT (10 parameters each), well below
// SQLite's and PostgreSQL's parameter limits.
const auditInsertRows = 200

const auditRecordCols = "chain, seq, id, time_ms, action, outcome, actor_sub, prev_hash, hash, body"

// AppendAudit implements audit.Storage. The heads are created if missing and locked by one
// multi-row upsert, in the (sorted) order of chains: on PostgreSQL the upsert takes each head
// row's lock, held to commit, so appenders in every process serialise per chain and, locking
// in the same order, never deadlock; on SQLite the transaction already holds the database write
// lock (BEGIN IMMEDIATE).
func (db *DB) AppendAudit(ctx context.Context, chains []string, seal func(map[string]audit.Head) ([]audit.StoredRecord, error)) error {
	if len(chains) == 0 {
		return nil
	}
	if !slices.IsSorted(chains) || len(slices.Compact(slices.Clone(chains))) != len(chains) {
		return fmt.Errorf("%w: audit chains must be sorted and distinct", ErrInvalid)
	}
	start := db.clock()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		heads, err := lockAuditHeads(ctx, db, tx, chains)
		if err != nil {
			return err
		}
		recs, err := seal(heads)
		if err != nil {
			return err
		}
		// Defence in depth: whatever seal returns must extend the locked heads exactly.
		next := make(map[string]audit.Head, len(heads))
		for c, h := range heads {
			next[c] = h
		}
		for _, r := range recs {
			h, ok := next[r.Chain]
			if !ok || r.Seq != h.Seq+1 || r.PrevHash != h.Hash {
				return fmt.Errorf("store: audit record %d does not extend its chain head", r.Seq)
			}
			next[r.Chain] = audit.Head{Seq: r.Seq, Hash: r.Hash}
		}
		for chunk := range slices.Chunk(recs, auditInsertRows) {
			if err := insertAuditRecords(ctx, db, tx, chunk); err != nil {
				return err
			}
		}
		var q strings.Builder
		args := make([]any, 0, 3*len(chains))
		q.WriteString("INSERT INTO audit_heads (chain, seq, hash) VALUES ")
		for i, c := range chains {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, c, next[c].Seq, next[c].Hash)
		}
		q.WriteString(" ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
		if _, err := db.execTx(ctx, tx, db.Rebind(q.String()), args...); err != nil {
			return fmt.Errorf("store: update audit heads: %w", err)
		}
		return nil
	})
	db.done(OpAppendAudit, start, err)
	return err
}

func lockAuditHeads(ctx context.Context, db *DB, tx *sql.Tx, chains []string) (map[string]audit.Head, error) {
	var q strings.Builder
	args := make([]any, 0, 2*len(chains))
	q.WriteString("INSERT INTO audit_heads (chain, seq, hash) VALUES ")
	for i, c := range chains {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, 0, ?)")
		args = append(args, c, audit.GenesisHash)
	}
	// The no-op update makes the upsert lock and return existing rows too.
	q.WriteString(" ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq RETURNING chain, seq, hash")
	rows, err := db.queryTx(ctx, tx, db.Rebind(q.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("store: lock audit heads: %w", err)
	}
	defer rows.Close()
	heads := make(map[string]audit.Head, len(chains))
	for rows.Next() {
		var (
			c string
			h audit.Head
		)
		if err := rows.Scan(&c, &h.Seq, &h.Hash); err != nil {
			return nil, fmt.Errorf("store: lock audit heads: %w", err)
		}
		heads[c] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: lock audit heads: %w", err)
	}
	if len(heads) != len(chains) {
		return nil, errors.New("store: lock audit heads: missing rows")
	}
	return heads, nil
}

func insertAuditRecords(ctx context.Context, db *DB, tx *sql.Tx, recs []audit.StoredRecord) error {
	var q strings.Builder
	args := make([]any, 0, 10*len(recs))
	q.WriteString("INSERT INTO audit_records (" + auditRecordCols + ") VALUES ")
	for i, r := range recs {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, r.Chain, r.Seq, r.ID, r.TimeMS, r.Action, r.Outcome, r.ActorSub, r.PrevHash, r.Hash, string(r.Body))
	}
	if _, err := db.execTx(ctx, tx, db.Rebind(q.String()), args...); err != nil {
		return fmt.Errorf("store: insert audit records: %w", err)
	}
	return nil
}

// AuditChains implements audit.Storage. Chains with a head come from one statement (one
// snapshot); chains that lost their head row are found by a loose index scan of the records and
// a scan of the (small) checkpoints table.
func (db *DB) AuditChains(ctx context.Context) ([]audit.ChainState, error) {
	rows, err := db.read(ctx, db.Rebind(`
		SELECT h.chain, h.seq, h.hash,
			COALESCE((SELECT MAX(r.seq) FROM audit_records r WHERE r.chain = h.chain), 0),
			COALESCE((SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.chain = h.chain AND c.kind = 'checkpoint'), 0),
			COALESCE((SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.chain = h.chain AND c.kind = 'anchor'), 0)
		FROM audit_heads h`))
	if err != nil {
		return nil, fmt.Errorf("store: audit chains: %w", err)
	}
	byChain := map[string]audit.ChainState{}
	for rows.Next() {
		s := audit.ChainState{HasHead: true}
		if err := rows.Scan(&s.Chain, &s.Head.Seq, &s.Head.Hash, &s.MaxSeq, &s.CheckpointSeq, &s.AnchorSeq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: audit chains: %w", err)
		}
		byChain[s.Chain] = s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit chains: %w", err)
	}

	others, err := db.auditChainNames(ctx, `
		WITH RECURSIVE c(chain) AS (
			SELECT MIN(chain) FROM audit_records
			UNION ALL
			SELECT (SELECT MIN(r.chain) FROM audit_records r WHERE r.chain > c.chain) FROM c WHERE c.chain IS NOT NULL
		)
		SELECT chain FROM c WHERE chain IS NOT NULL
		UNION
		SELECT DISTINCT chain FROM audit_checkpoints`)
	if err != nil {
		return nil, fmt.Errorf("store: audit chains: %w", err)
	}
	for _, c := range others {
		if _, ok := byChain[c]; ok {
			continue
		}
		// The head is read again with the rest: a chain created after the first statement is
		// not headless.
		s := audit.ChainState{Chain: c}
		var (
			headSeq  sql.NullInt64
			headHash sql.NullString
		)
		err := db.readRow(ctx, db.Rebind(`
			SELECT (SELECT seq FROM audit_heads WHERE chain = ?), (SELECT hash FROM audit_heads WHERE chain = ?),
				COALESCE((SELECT MAX(seq) FROM audit_records WHERE chain = ?), 0),
				COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE chain = ? AND kind = 'checkpoint'), 0),
				COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE chain = ? AND kind = 'anchor'), 0)`),
			c, c, c, c, c).Scan(&headSeq, &headHash, &s.MaxSeq, &s.CheckpointSeq, &s.AnchorSeq)
		if err != nil {
			return nil, fmt.Errorf("store: audit chains: %w", err)
		}
		if headSeq.Valid && headHash.Valid {
			s.HasHead, s.Head = true, audit.Head{Seq: headSeq.Int64, Hash: headHash.String}
		}
		byChain[c] = s
	}
	out := make([]audit.ChainState, 0, len(byChain))
	for _, s := range byChain {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b audit.ChainState) int { return strings.Compare(a.Chain, b.Chain) })
	return out, nil
}

func (db *DB) auditChainNames(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := db.read(ctx, db.Rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// AuditRecords implements audit.Storage.
func (db *DB) AuditRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]audit.StoredRecord, error) {
	recs, err := db.queryAuditRecords(ctx,
		"SELECT "+auditRecordCols+" FROM audit_records WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?",
		chain, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("store: audit records: %w", err)
	}
	return recs, nil
}

// QueryAudit implements audit.Storage.
func (db *DB) QueryAudit(ctx context.Context, q audit.StoredQuery) ([]audit.StoredRecord, error) {
	var f filter
	if !q.AllChains {
		f.add("chain = ?", q.Chain)
	}
	f.equal("actor_sub", q.ActorSub)
	f.equal("action", q.Action)
	f.equal("outcome", q.Outcome)
	if q.HasSince {
		f.add("time_ms >= ?", q.SinceMS)
	}
	if q.HasUntil {
		f.add("time_ms < ?", q.UntilMS)
	}
	var order string
	switch q.Order {
	case audit.OrderNewest:
		order = "time_ms DESC, chain DESC, seq DESC"
		if q.After != nil {
			f.add("(time_ms, chain, seq) < (?, ?, ?)", q.After.TimeMS, q.After.Chain, q.After.Seq)
		}
	case audit.OrderChainSeq:
		order = "chain, seq"
		if q.After != nil {
			f.add("(chain, seq) > (?, ?)", q.After.Chain, q.After.Seq)
		}
	default:
		return nil, fmt.Errorf("%w: audit query order", ErrInvalid)
	}
	if q.Limit <= 0 {
		return nil, fmt.Errorf("%w: audit query limit", ErrInvalid)
	}
	stmt := "SELECT " + auditRecordCols + " FROM audit_records" + f.where() + " ORDER BY " + order + " LIMIT ?"
	recs, err := db.queryAuditRecords(ctx, stmt, append(f.args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: query audit: %w", err)
	}
	return recs, nil
}

func (db *DB) queryAuditRecords(ctx context.Context, q string, args ...any) ([]audit.StoredRecord, error) {
	return queryRows(ctx, db, db.db, "audit records", db.Rebind(q), scanAuditRecord, args...)
}

func scanAuditRecord(s scanner) (audit.StoredRecord, error) {
	var (
		r    audit.StoredRecord
		body string
	)
	if err := s.Scan(&r.Chain, &r.Seq, &r.ID, &r.TimeMS, &r.Action, &r.Outcome, &r.ActorSub, &r.PrevHash, &r.Hash, &body); err != nil {
		return audit.StoredRecord{}, err
	}
	r.Body = []byte(body)
	return r, nil
}

// AuditCheckpoints implements audit.Storage.
func (db *DB) AuditCheckpoints(ctx context.Context, chain, kind string, afterSeq int64, limit int) ([]audit.Checkpoint, error) {
	return queryRows(ctx, db, db.db, "audit checkpoints", db.Rebind(`
		SELECT chain, kind, seq, hash, time_ms, key_id, signature FROM audit_checkpoints
		WHERE chain = ? AND kind = ? AND seq > ? ORDER BY seq LIMIT ?`), scanCheckpoint, chain, kind, afterSeq, limit)
}

func scanCheckpoint(s scanner) (audit.Checkpoint, error) {
	var (
		c  audit.Checkpoint
		ms int64
	)
	if err := s.Scan(&c.Chain, &c.Kind, &c.Seq, &c.Hash, &ms, &c.KeyID, &c.Signature); err != nil {
		return audit.Checkpoint{}, fmt.Errorf("store: audit checkpoints: %w", err)
	}
	c.Time = time.UnixMilli(ms).UTC()
	return c, nil
}

// AddAuditCheckpoints implements audit.Storage.
func (db *DB) AddAuditCheckpoints(ctx context.Context, cps []audit.Checkpoint) error {
	for chunk := range slices.Chunk(cps, auditInsertRows) {
		var q strings.Builder
		args := make([]any, 0, 7*len(chunk))
		q.WriteString("INSERT INTO audit_checkpoints (chain, kind, seq, hash, time_ms, key_id, signature) VALUES ")
		for i, c := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?)")
			args = append(args, c.Chain, c.Kind, c.Seq, c.Hash, c.Time.UnixMilli(), c.KeyID, c.Signature)
		}
		q.WriteString(" ON CONFLICT (chain, kind, seq) DO NOTHING")
		if _, err := db.write(ctx, db.Rebind(q.String()), args...); err != nil {
			return fmt.Errorf("store: add audit checkpoints: %w", err)
		}
	}
	return nil
}

// AddAuditManifest implements audit.Storage.
func (db *DB) AddAuditManifest(ctx context.Context, m audit.StoredManifest, keep int) (bool, error) {
	res, err := db.write(ctx, db.Rebind(`
		INSERT INTO audit_manifests (seq, time_ms, prev_hash, body, hash, key_id, signature)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING`),
		m.Seq, m.TimeMS, m.PrevHash, string(m.Body), m.Hash, m.KeyID, m.Signature)
	if err != nil {
		return false, fmt.Errorf("store: add audit manifest: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: add audit manifest: %w", err)
	}
	if _, err := db.write(ctx, db.Rebind(`DELETE FROM audit_manifests WHERE seq <= ?`), m.Seq-int64(keep)); err != nil {
		return n == 1, fmt.Errorf("store: prune audit manifests: %w", err)
	}
	return n == 1, nil
}

// AuditManifests implements audit.Storage.
func (db *DB) AuditManifests(ctx context.Context, limit int) ([]audit.StoredManifest, error) {
	return queryRows(ctx, db, db.db, "audit manifests", db.Rebind(`
		SELECT seq, time_ms, prev_hash, body, hash, key_id, signature FROM audit_manifests
		ORDER BY seq DESC LIMIT ?`), scanManifest, limit)
}

func scanManifest(s scanner) (audit.StoredManifest, error) {
	var (
		m    audit.StoredManifest
		body string
	)
	if err := s.Scan(&m.Seq, &m.TimeMS, &m.PrevHash, &body, &m.Hash, &m.KeyID, &m.Signature); err != nil {
		return audit.StoredManifest{}, fmt.Errorf("store: audit manifests: %w", err)
	}
	m.Body = []byte(body)
	return m, nil
}

// DeleteAuditRecords implements audit.Storage.
func (db *DB) DeleteAuditRecords(ctx context.Context, chain string, afterSeq, throughSeq int64) (int64, error) {
	res, err := db.write(ctx, db.Rebind("DELETE FROM audit_records WHERE chain = ? AND seq > ? AND seq <= ?"),
		chain, afterSeq, throughSeq)
	if err != nil {
		return 0, fmt.Errorf("store: delete audit records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: delete audit records: %w", err)
	}
	return n, nil
}

// DeleteAuditCheckpoints implements audit.Storage.
func (db *DB) DeleteAuditCheckpoints(ctx context.Context, chain string, throughSeq int64) error {
	_, err := db.write(ctx, db.Rebind(`
		DELETE FROM audit_checkpoints WHERE chain = ?
		AND ((kind = 'checkpoint' AND seq <= ?) OR (kind = 'anchor' AND seq < ?))`),
		chain, throughSeq, throughSeq)
	if err != nil {
		return fmt.Errorf("store: delete audit checkpoints: %w", err)
	}
	return nil
}
