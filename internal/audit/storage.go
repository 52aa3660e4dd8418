package audit

import (
	"context"
	"time"
)

// Storage is what the audit log needs from a database. internal/store implements it for SQLite
// and PostgreSQL; audittest.Memory in memory. A chain is named by its tenant ("" = platform).
type Storage interface {
	// AppendAudit runs one transaction that, for the given chains (sorted, distinct):
	// creates missing heads at (0, GenesisHash), locks every head against concurrent appenders
	// in any process (SELECT … FOR UPDATE / row lock on PostgreSQL, the write lock on SQLite),
	// calls seal once with the locked heads, inserts the returned records and moves each
	// chain's head to its last returned record. Nothing is written if seal or any statement
	// fails. seal is pure computation; it must not call the Storage.
	AppendAudit(ctx context.Context, chains []string, seal func(heads map[string]Head) ([]StoredRecord, error)) error

	// AuditChains lists every chain that has a head, a record or a checkpoint, sorted by name.
	AuditChains(ctx context.Context) ([]ChainState, error)

	// AuditRecords returns up to limit records of chain with seq > afterSeq, by ascending seq.
	AuditRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]StoredRecord, error)

	// QueryAudit returns the records matching q, in q.Order, at most q.Limit of them.
	QueryAudit(ctx context.Context, q StoredQuery) ([]StoredRecord, error)

	// AuditCheckpoints returns up to limit checkpoints of kind (KindCheckpoint or KindAnchor)
	// of chain with seq > afterSeq, by ascending seq.
	AuditCheckpoints(ctx context.Context, chain, kind string, afterSeq int64, limit int) ([]Checkpoint, error)

	// AddAuditCheckpoints stores checkpoints; one that already exists (same chain, kind, seq)
	// is left as it is.
	AddAuditCheckpoints(ctx context.Context, cps []Checkpoint) error

	// DeleteAuditRecords deletes the records of chain with afterSeq < seq <= throughSeq and
	// returns how many went.
	DeleteAuditRecords(ctx context.Context, chain string, afterSeq, throughSeq int64) (int64, error)

	// AddAuditManifest stores m unless a manifest with its seq exists (stored reports which)
	// and deletes all but the newest keep manifests.
	AddAuditManifest(ctx context.Context, m StoredManifest, keep int) (stored bool, err error)

	// AuditManifests returns up to limit manifests, newest (highest seq) first.
	AuditManifests(ctx context.Context, limit int) ([]StoredManifest, error)

	// DeleteAuditCheckpoints deletes chain's checkpoints with seq <= throughSeq and its anchors
	// with seq < throughSeq (the anchor at throughSeq stays).
	DeleteAuditCheckpoints(ctx context.Context, chain string, throughSeq int64) error
}

// Head is the last record of a chain: its seq and hash; (0, GenesisHash) for an empty chain.
type Head struct {
	Seq  int64
	Hash string
}

// ChainState summarises a chain for verification and checkpointing.
type ChainState struct {
	Chain         string
	HasHead       bool
	Head          Head
	MaxSeq        int64 // highest record seq present (0 = none)
	CheckpointSeq int64 // highest checkpoint seq (0 = none)
	AnchorSeq     int64 // highest anchor seq (0 = none)
}

// StoredRecord is one row: the indexed columns plus Body, the canonical JSON without "hash"
// that the hash covers. The columns duplicate fields of Body; Verify checks they agree.
type StoredRecord struct {
	Chain    string
	Seq      int64
	ID       string
	TimeMS   int64 // Unix milliseconds
	Action   string
	Outcome  string
	ActorSub string
	PrevHash string
	Hash     string
	Body     []byte
}

// Checkpoint kinds.
const (
	KindCheckpoint = "checkpoint" // a signed chain head
	KindAnchor     = "anchor"     // a signed last-pruned record: the chain now starts after it
)

// Checkpoint is a signed (chain, seq, hash). See signedMessage for what the signature covers.
type Checkpoint struct {
	Chain     string
	Kind      string
	Seq       int64
	Hash      string
	Time      time.Time // UTC, millisecond precision
	KeyID     string
	Signature string // base64 (standard, padded) Ed25519 signature
}

// Order is the order of QueryAudit results.
type Order int

// Orders.
const (
	// OrderNewest: time descending, then chain descending, then seq descending.
	OrderNewest Order = iota
	// OrderChainSeq: chain ascending, then seq ascending (export, verifiable order).
	OrderChainSeq
)

// StoredQuery selects records. Exactly one of Chain/AllChains scopes it.
type StoredQuery struct {
	Chain     string
	AllChains bool
	ActorSub  string // "" = any
	Action    string // "" = any
	Outcome   string // "" = any
	SinceMS   int64  // time_ms >= SinceMS when HasSince
	UntilMS   int64  // time_ms < UntilMS when HasUntil
	HasSince  bool
	HasUntil  bool
	Order     Order
	// After, when set, resumes strictly after this position in Order:
	// OrderNewest uses (TimeMS, Chain, Seq), OrderChainSeq uses (Chain, Seq).
	After *Position
	Limit int // 1…1000
}

// Position is a keyset position in a StoredQuery order.
type Position struct {
	TimeMS int64
	Chain  string
	Seq    int64
}
