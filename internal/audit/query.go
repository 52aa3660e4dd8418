package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flowgate/flowgate/internal/tenant"
)

// Scopes for Filter.Tenant besides a tenant id.
const (
	// ScopePlatform selects the platform chain.
	ScopePlatform = "@platform"
	// ScopeAll selects every chain (platform:admin only; the caller checks).
	ScopeAll = "*"
)

// Query limits.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 1000
	maxFilterBytes    = 256
	maxCursorChars    = 256
)

// Errors of Query and Export.
var (
	// ErrScopeRequired: Filter.Tenant is empty. There is no implicit scope, so a handler that
	// forgets to set it fails instead of showing another tenant's records.
	ErrScopeRequired = errors.New("audit: filter needs a tenant scope")
	// ErrInvalidFilter: a malformed filter value.
	ErrInvalidFilter = errors.New("audit: invalid filter")
	// ErrInvalidCursor: a cursor that was not issued for this filter.
	ErrInvalidCursor = errors.New("audit: invalid cursor")
)

// Filter selects records for Query and Export.
type Filter struct {
	// Tenant is required: a tenant id, ScopePlatform or ScopeAll. The scope always comes from
	// here, never from the cursor.
	Tenant  string
	Actor   string    // actor sub; "" = any
	Action  string    // "" = any
	Outcome string    // "" = any
	Since   time.Time // inclusive; zero = unbounded
	Until   time.Time // exclusive; zero = unbounded
	// Limit is the page size of Query: 0 = DefaultQueryLimit, at most MaxQueryLimit. Export
	// ignores it.
	Limit int
	// Cursor continues a Query from the previous page's next cursor. Export ignores it.
	Cursor string
}

// Query returns one page of matching records, newest first, and the cursor of the next page
// ("" on the last page).
func (r *Reader) Query(ctx context.Context, f Filter) ([]Record, string, error) {
	q, err := storedQuery(f)
	if err != nil {
		return nil, "", err
	}
	q.Order = OrderNewest
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultQueryLimit
	case limit > MaxQueryLimit:
		limit = MaxQueryLimit
	}
	fp := filterFingerprint(f)
	if f.Cursor != "" {
		pos, err := decodeCursor(f.Cursor, fp)
		if err != nil {
			return nil, "", err
		}
		q.After = &pos
	}
	q.Limit = limit + 1
	rows, err := r.st.QueryAudit(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("audit: query: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = encodeCursor(fp, Position{TimeMS: last.TimeMS, Chain: last.Chain, Seq: last.Seq})
	}
	out := make([]Record, 0, len(rows))
	for i := range rows {
		out = append(out, recordOf(&rows[i]))
	}
	return out, next, nil
}

// Export writes every matching record to w as NDJSON, one canonical record (with its hash) per
// line, chain by chain in seq order, so that each chain can be re-verified from the file. It
// reads page by page and never holds more than one page. Recording the audit.export itself
// (who exported what) is the caller's job: only it knows the actor.
func (r *Reader) Export(ctx context.Context, f Filter, w io.Writer) error {
	q, err := storedQuery(f)
	if err != nil {
		return err
	}
	q.Order = OrderChainSeq
	q.Limit = pageSize
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	for {
		rows, err := r.st.QueryAudit(ctx, q)
		if err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		for i := range rows {
			rec := recordOf(&rows[i])
			if line, err = appendRecordJSON(line[:0], &rec, true); err != nil {
				return fmt.Errorf("audit: export: %w", err)
			}
			line = append(line, '\n')
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("audit: export: write: %w", err)
			}
		}
		if len(rows) < q.Limit {
			break
		}
		last := rows[len(rows)-1]
		q.After = &Position{Chain: last.Chain, Seq: last.Seq}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: write: %w", err)
	}
	return nil
}

// recordOf decodes a row. A row whose body does not decode (tampering; Verify names it) is shown
// from its columns with details {"undecodable": true} rather than failing the whole page.
func recordOf(row *StoredRecord) Record {
	rec, err := UnmarshalRecord(row.Body)
	if err != nil {
		return Record{
			Seq: row.Seq, ID: bound(row.ID, MaxIDBytes), Time: time.UnixMilli(row.TimeMS).UTC(),
			Action: bound(row.Action, MaxActionBytes), Outcome: bound(row.Outcome, 16),
			Tenant: bound(row.Chain, 64), Actor: Actor{Sub: bound(row.ActorSub, MaxSubBytes)},
			PrevHash: bound(row.PrevHash, 64), Hash: bound(row.Hash, 64),
			Details: map[string]any{"undecodable": true},
		}
	}
	rec.Hash = row.Hash
	return rec
}

func storedQuery(f Filter) (StoredQuery, error) {
	var q StoredQuery
	switch {
	case f.Tenant == "":
		return q, ErrScopeRequired
	case f.Tenant == ScopeAll:
		q.AllChains = true
	case f.Tenant == ScopePlatform:
		q.Chain = ""
	case tenant.ValidID(f.Tenant):
		q.Chain = f.Tenant
	default:
		return q, fmt.Errorf("%w: tenant", ErrInvalidFilter)
	}
	if len(f.Actor) > maxFilterBytes || len(f.Action) > maxFilterBytes {
		return q, fmt.Errorf("%w: actor or action too long", ErrInvalidFilter)
	}
	switch f.Outcome {
	case "", OutcomeSuccess, OutcomeFailure, OutcomeDenied:
	default:
		return q, fmt.Errorf("%w: outcome", ErrInvalidFilter)
	}
	q.ActorSub, q.Action, q.Outcome = f.Actor, f.Action, f.Outcome
	if !f.Since.IsZero() {
		q.SinceMS, q.HasSince = f.Since.UnixMilli(), true
	}
	if !f.Until.IsZero() {
		q.UntilMS, q.HasUntil = f.Until.UnixMilli(), true
	}
	return q, nil
}

// filterFingerprint binds a cursor to the filter it was issued for. It is not a secret: the
// cursor is never trusted for scope (that is always the Filter's), the binding only turns a
// cursor reused with another filter into a clear error.
func filterFingerprint(f Filter) [8]byte {
	h := sha256.New()
	for _, s := range []string{f.Tenant, f.Actor, f.Action, f.Outcome} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var t [16]byte
	if !f.Since.IsZero() {
		binary.BigEndian.PutUint64(t[:8], uint64(f.Since.UnixMilli()))
	}
	if !f.Until.IsZero() {
		binary.BigEndian.PutUint64(t[8:], uint64(f.Until.UnixMilli()))
	}
	h.Write(t[:])
	var fp [8]byte
	copy(fp[:], h.Sum(nil))
	return fp
}

const cursorVersion = 1

// A cursor is base64url(version | filter fingerprint (8) | timeMS (8) | seq (8) | chain).
func encodeCursor(fp [8]byte, p Position) string {
	b := make([]byte, 0, 25+len(p.Chain))
	b = append(b, cursorVersion)
	b = append(b, fp[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.TimeMS))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Seq))
	b = append(b, p.Chain...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, fp [8]byte) (Position, error) {
	if len(s) > maxCursorChars {
		return Position{}, ErrInvalidCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < 25 || b[0] != cursorVersion || [8]byte(b[1:9]) != fp {
		return Position{}, ErrInvalidCursor
	}
	p := Position{
		TimeMS: int64(binary.BigEndian.Uint64(b[9:17])),
		Seq:    int64(binary.BigEndian.Uint64(b[17:25])),
		Chain:  string(b[25:]),
	}
	if p.Seq < 1 || (p.Chain != "" && !tenant.ValidID(p.Chain)) {
		return Position{}, ErrInvalidCursor
	}
	return p, nil
}
