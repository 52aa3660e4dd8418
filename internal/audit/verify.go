package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
)

// Reader verifies, queries and exports the log. It never writes; Recorder embeds one.
type Reader struct {
	st      Storage
	keys    map[string]ed25519.PublicKey
	logger  *slog.Logger
	tenants func(ctx context.Context) ([]string, error)
}

// ReaderOptions configures NewReader.
type ReaderOptions struct {
	Storage Storage // required
	// PublicKeys verify checkpoint and anchor signatures: the current key and any retired key
	// whose checkpoints are still in the database.
	PublicKeys []ed25519.PublicKey
	Logger     *slog.Logger // nil = discard
	// Tenants, when set, lists every tenant id the gateway knows: each was created with a
	// record on its own chain, so a tenant without a chain is a chain deleted whole
	// (records, checkpoints and head), which the chains themselves cannot show.
	Tenants func(ctx context.Context) ([]string, error)
}

// NewReader returns a Reader over opts.Storage.
func NewReader(opts ReaderOptions) (*Reader, error) {
	if opts.Storage == nil {
		return nil, errors.New("audit: reader needs a storage")
	}
	r := &Reader{st: opts.Storage, keys: map[string]ed25519.PublicKey{}, logger: opts.Logger, tenants: opts.Tenants}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	for _, k := range opts.PublicKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("audit: malformed ed25519 public key")
		}
		r.keys[KeyID(k)] = k
	}
	return r, nil
}

// ProblemKind classifies what broke a chain.
type ProblemKind string

// Problem kinds.
const (
	ProblemEdited             ProblemKind = "edited"              // content or columns changed, or a record rehashed
	ProblemDeleted            ProblemKind = "deleted"             // a gap, a truncated tail or a renumbered deletion
	ProblemReordered          ProblemKind = "reordered"           // records swapped or moved
	ProblemInserted           ProblemKind = "inserted"            // a record that the chain never had
	ProblemCheckpointMismatch ProblemKind = "checkpoint_mismatch" // a signed (seq, hash) the chain no longer matches
	ProblemBadSignature       ProblemKind = "bad_signature"       // a checkpoint or anchor not signed by a known key
	ProblemChainMissing       ProblemKind = "chain_missing"       // a known tenant whose whole chain is gone
)

// Problem is the first bad record of a chain.
type Problem struct {
	Tenant string      `json:"tenant"` // "" = platform chain
	Seq    int64       `json:"seq"`
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

func (p *Problem) String() string {
	return fmt.Sprintf("chain %s seq %d: %s: %s", chainName(p.Tenant), p.Seq, p.Kind, p.Detail)
}

// ChainReport is the result for one chain.
type ChainReport struct {
	Tenant string `json:"tenant"` // "" = platform chain
	// StartSeq is where verification started: the last anchor's seq (0 = genesis).
	StartSeq int64 `json:"startSeq"`
	// LastSeq is the chain head that was verified; Records how many records were checked.
	LastSeq int64 `json:"lastSeq"`
	Records int64 `json:"records"`
	// Checkpoints is how many checkpoints matched; LastCheckpointSeq the newest of them.
	// Records after it are protected by the hash chain only, not yet by a signature.
	Checkpoints       int64    `json:"checkpoints"`
	LastCheckpointSeq int64    `json:"lastCheckpointSeq"`
	Problem           *Problem `json:"problem,omitempty"`
}

// Report is the result of Verify.
type Report struct {
	OK     bool          `json:"ok"`
	Chains []ChainReport `json:"chains"`
	// FirstProblem is the first problem in chain order (nil when OK).
	FirstProblem *Problem `json:"firstProblem,omitempty"`
}

// VerifyOptions selects what Verify checks.
type VerifyOptions struct {
	// Tenant: nil = every chain; pointer to "" (or ScopePlatform) = the platform chain;
	// otherwise that tenant.
	Tenant *string
}

// pageSize is how many rows verification, export and pruning read per query.
const pageSize = 500

// Verify walks the selected chains: recomputes every hash, checks seq continuity, prevHash
// links, that the row columns agree with the hashed body, and that every checkpoint's (seq,
// hash) matches the recomputed chain and carries a valid signature. It stops each chain at its
// first problem. The error is for storage failures only; tampering is reported in Report.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	states, err := r.st.AuditChains(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	rep := Report{OK: true, Chains: []ChainReport{}}
	missing, err := r.missingChains(ctx, states, opts.Tenant)
	if err != nil {
		return Report{}, err
	}
	listed, err := r.checkManifest(ctx, states)
	if err != nil {
		return Report{}, err
	}
	if opts.Tenant != nil {
		want := *opts.Tenant
		if want == ScopePlatform {
			want = ""
		}
		var sel []ChainState
		for _, s := range states {
			if s.Chain == want {
				sel = append(sel, s)
			}
		}
		if len(sel) == 0 {
			sel = []ChainState{{Chain: want, HasHead: true, Head: Head{Hash: GenesisHash}}}
		}
		states = sel
	}
	for _, s := range states {
		cr, err := r.verifyChain(ctx, s)
		if err != nil {
			return Report{}, err
		}
		if p := cr.Problem; p != nil && p.Kind == ProblemDeleted && p.Seq == cr.StartSeq+1 {
			// A prune running concurrently may have anchored and deleted the prefix after
			// the chain state was read: verify once more from the current anchor.
			now, ok, err := r.chainState(ctx, s.Chain)
			if err != nil {
				return Report{}, err
			}
			if ok && now.AnchorSeq != s.AnchorSeq {
				if cr, err = r.verifyChain(ctx, now); err != nil {
					return Report{}, err
				}
			}
		}
		if cr.Problem != nil && rep.OK {
			rep.OK = false
			rep.FirstProblem = cr.Problem
		}
		rep.Chains = append(rep.Chains, cr)
	}
	if listed == nil {
		listed = map[string]*Problem{}
	}
	for _, id := range missing {
		if _, ok := listed[id]; !ok {
			listed[id] = &Problem{Tenant: id, Kind: ProblemChainMissing, Detail: "the tenant exists but its audit chain does not (records, checkpoints and head deleted)"}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(listed)) {
		p := listed[id]
		if opts.Tenant != nil && *opts.Tenant != id && !(id == "" && *opts.Tenant == ScopePlatform) {
			continue
		}
		if rep.OK {
			rep.OK, rep.FirstProblem = false, p
		}
		// A chain's own first problem stays; the manifest's goes to a chain without one, or
		// replaces the empty report the selection made up for it.
		replaced := false
		for i := range rep.Chains {
			if rep.Chains[i].Tenant == id {
				if rep.Chains[i].Problem == nil {
					rep.Chains[i].Problem = p
				}
				replaced = true
			}
		}
		if !replaced {
			rep.Chains = append(rep.Chains, ChainReport{Tenant: id, Problem: p})
		}
	}
	return rep, nil
}

// missingChains lists the known tenants (Tenants option) that have no chain, within the
// selection (nil: all; the platform scope has no tenant).
func (r *Reader) missingChains(ctx context.Context, states []ChainState, sel *string) ([]string, error) {
	if r.tenants == nil || (sel != nil && (*sel == "" || *sel == ScopePlatform)) {
		return nil, nil
	}
	ids, err := r.tenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: list tenants: %w", err)
	}
	have := make(map[string]bool, len(states))
	for _, s := range states {
		have[s.Chain] = true
	}
	var out []string
	for _, id := range ids {
		if (sel == nil || *sel == id) && !have[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

func (r *Reader) verifyChain(ctx context.Context, s ChainState) (ChainReport, error) {
	cr := ChainReport{Tenant: s.Chain}
	start := Head{Hash: GenesisHash}
	if s.AnchorSeq > 0 {
		a, err := r.findCheckpoint(ctx, s.Chain, KindAnchor, s.AnchorSeq)
		if err != nil {
			return cr, err
		}
		if err := checkSignature(r.keys, a); err != nil {
			cr.Problem = &Problem{Tenant: s.Chain, Seq: a.Seq, Kind: ProblemBadSignature, Detail: "anchor: " + err.Error()}
			return cr, nil
		}
		start = Head{Seq: a.Seq, Hash: a.Hash}
	}
	cr.StartSeq = start.Seq
	end := s.Head.Seq
	if !s.HasHead {
		end = s.MaxSeq
	}
	w := &walker{
		st: r.st, keys: r.keys, chain: s.Chain, start: start, end: end, checkpoints: true,
		recs: newRecordIter(r.st, s.Chain, start.Seq),
		cps:  newCheckpointIter(r.st, s.Chain, start.Seq),
	}
	p, err := w.walk(ctx)
	if err != nil {
		return cr, err
	}
	cr.LastSeq, cr.Records, cr.Checkpoints, cr.LastCheckpointSeq = w.last.Seq, w.records, w.matched, w.lastCheckpoint
	if p == nil {
		p, err = r.checkEnds(ctx, s, w)
		if err != nil {
			return cr, err
		}
	}
	cr.Problem = p
	return cr, nil
}

// checkEnds checks what lies beyond the verified range: the head row, records past the head
// and checkpoints past the last record. Concurrent appends move the head, so a surplus is only
// reported if it is still unexplained after re-reading the chain's state.
func (r *Reader) checkEnds(ctx context.Context, s ChainState, w *walker) (*Problem, error) {
	if !s.HasHead && s.MaxSeq > 0 {
		return &Problem{Tenant: s.Chain, Seq: s.MaxSeq, Kind: ProblemEdited, Detail: "chain head row is missing"}, nil
	}
	if s.HasHead && s.Head.Seq == w.last.Seq && s.Head.Hash != w.last.Hash {
		return &Problem{Tenant: s.Chain, Seq: s.Head.Seq, Kind: ProblemEdited, Detail: "chain head row does not match the last record"}, nil
	}
	beyondCP, err := w.cps.peek(ctx)
	if err != nil {
		return nil, err
	}
	if s.MaxSeq <= s.Head.Seq && beyondCP == nil {
		return nil, nil
	}
	now, ok, err := r.chainState(ctx, s.Chain)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &Problem{Tenant: s.Chain, Seq: w.last.Seq + 1, Kind: ProblemDeleted, Detail: "chain vanished during verification"}, nil
	}
	if s.MaxSeq > s.Head.Seq && now.MaxSeq > now.Head.Seq {
		return &Problem{Tenant: s.Chain, Seq: now.Head.Seq + 1, Kind: ProblemInserted, Detail: "records beyond the chain head"}, nil
	}
	if beyondCP != nil && beyondCP.Seq > now.Head.Seq {
		return &Problem{Tenant: s.Chain, Seq: w.last.Seq + 1, Kind: ProblemDeleted,
			Detail: fmt.Sprintf("a %s signs seq %d, past the end of the chain (truncated)", beyondCP.Kind, beyondCP.Seq)}, nil
	}
	return nil, nil
}

func (r *Reader) chainState(ctx context.Context, chain string) (ChainState, bool, error) {
	states, err := r.st.AuditChains(ctx)
	if err != nil {
		return ChainState{}, false, fmt.Errorf("audit: verify: %w", err)
	}
	for _, s := range states {
		if s.Chain == chain {
			return s, true, nil
		}
	}
	return ChainState{}, false, nil
}

func (r *Reader) findCheckpoint(ctx context.Context, chain, kind string, seq int64) (Checkpoint, error) {
	cps, err := r.st.AuditCheckpoints(ctx, chain, kind, seq-1, 1)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	if len(cps) == 1 && cps[0].Seq == seq {
		return cps[0], nil
	}
	return Checkpoint{}, fmt.Errorf("audit: %s at seq %d of chain %s vanished", kind, seq, chainName(chain))
}

// walker checks one chain from start (exclusive) through end.
type walker struct {
	st          Storage
	keys        map[string]ed25519.PublicKey
	chain       string
	start       Head
	end         int64
	checkpoints bool
	// expect, when set, is a (seq, hash) this process wrote itself: the chain must still hold it.
	expect *Head
	// stop, when set, ends the walk (without a problem) before the first row it accepts.
	stop func(row *StoredRecord) bool
	// light checks only what links the chain (seq, prevHash, hash over the stored body), not
	// that bodies are canonical and agree with the columns: several times cheaper, for the
	// check before each checkpoint. Verify always checks everything.
	light bool
	recs  *recordIter
	cps   *checkpointIter

	last           Head
	records        int64
	matched        int64
	lastCheckpoint int64
}

// checked is a stored row with what its body says.
type checked struct {
	row       *StoredRecord
	rec       Record
	decoded   bool
	hashOK    bool // recomputed hash equals the row's hash
	canonical bool // the body is byte-for-byte its canonical re-encoding
	columns   bool // the columns agree with the body
}

// checkLight decodes only seq and prevHash and hashes the stored body as it is.
func checkLight(row *StoredRecord) checked {
	c := checked{row: row}
	var link struct {
		Seq      int64  `json:"seq"`
		PrevHash string `json:"prevHash"`
	}
	if err := json.Unmarshal(row.Body, &link); err != nil {
		return c
	}
	c.rec.Seq, c.rec.PrevHash, c.decoded = link.Seq, link.PrevHash, true
	c.hashOK = recordHash(link.PrevHash, row.Body) == row.Hash
	c.canonical = true
	c.columns = row.PrevHash == link.PrevHash
	return c
}

func check(row *StoredRecord) checked {
	c := checked{row: row}
	rec, err := UnmarshalRecord(row.Body)
	if err != nil {
		return c
	}
	c.rec, c.decoded = rec, true
	body, err := appendRecordJSON(nil, &rec, false)
	if err != nil {
		return c
	}
	c.canonical = bytes.Equal(body, row.Body)
	c.hashOK = recordHash(rec.PrevHash, body) == row.Hash
	c.columns = row.Chain == rec.Tenant && row.ID == rec.ID && row.TimeMS == rec.Time.UnixMilli() &&
		row.Action == rec.Action && row.Outcome == rec.Outcome && row.ActorSub == rec.Actor.Sub &&
		row.PrevHash == rec.PrevHash
	return c
}

// genuineAt reports whether c is an intact record that belongs at seq after prev.
func (c checked) genuineAt(seq int64, prev string) bool {
	return c.decoded && c.hashOK && c.rec.Seq == seq && c.rec.PrevHash == prev
}

func (w *walker) problem(seq int64, kind ProblemKind, format string, args ...any) *Problem {
	return &Problem{Tenant: w.chain, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

func (w *walker) walk(ctx context.Context) (*Problem, error) {
	exp := w.start.Seq + 1
	prev := w.start.Hash
	prevPrev := ""
	w.last = w.start
	for exp <= w.end {
		row, err := w.recs.peekAt(ctx, 0)
		if err != nil {
			return nil, err
		}
		if row == nil || row.Seq > w.end {
			return w.problem(exp, ProblemDeleted, "records %d to %d are missing (truncated)", exp, w.end), nil
		}
		if row.Seq != exp {
			return w.problem(exp, ProblemDeleted, "records %d to %d are missing", exp, row.Seq-1), nil
		}
		if w.stop != nil && w.stop(row) {
			return nil, nil
		}
		chk := check
		if w.light {
			chk = checkLight
		}
		cur := chk(row)
		if !cur.decoded || !cur.hashOK || !cur.canonical || !cur.columns || cur.rec.Seq != exp || cur.rec.PrevHash != prev {
			var next checked
			if nrow, err := w.recs.peekAt(ctx, 1); err != nil {
				return nil, err
			} else if nrow != nil && nrow.Seq == exp+1 {
				next = chk(nrow)
			}
			return w.classify(exp, prev, prevPrev, cur, next), nil
		}
		if w.expect != nil && w.expect.Seq == exp && w.expect.Hash != row.Hash {
			return w.problem(exp, ProblemEdited, "record differs from the one this process wrote"), nil
		}
		if w.checkpoints {
			if p, err := w.matchCheckpoints(ctx, exp, row.Hash); p != nil || err != nil {
				return p, err
			}
		}
		prevPrev, prev = prev, row.Hash
		w.last = Head{Seq: exp, Hash: row.Hash}
		w.records++
		w.recs.advance()
		exp++
	}
	return nil, nil
}

// classify names what happened at position exp, whose row cur fails a check; next is the row
// at exp+1 (zero if absent).
func (w *walker) classify(exp int64, prev, prevPrev string, cur, next checked) *Problem {
	if !cur.decoded {
		return w.problem(exp, ProblemEdited, "record body is not a valid record")
	}
	// Two records swapped: cur is the genuine exp+1 and next the genuine exp.
	if cur.hashOK && cur.rec.Seq == exp+1 && next.genuineAt(exp, prev) && cur.rec.PrevHash == next.row.Hash {
		return w.problem(exp, ProblemReordered, "records %d and %d are swapped", exp, exp+1)
	}
	// A foreign record sits at exp and pushed the genuine one to exp+1.
	if next.genuineAt(exp, prev) {
		return w.problem(exp, ProblemInserted, "record at %d is not part of the chain; the original follows it", exp)
	}
	// The record before was foreign (it linked, so it was forged with a recomputed hash) and cur
	// is the genuine record it displaced.
	if cur.hashOK && cur.rec.Seq == exp-1 && exp-1 > w.start.Seq && cur.rec.PrevHash == prevPrev {
		return w.problem(exp-1, ProblemInserted, "record at %d is not part of the chain; the original follows it", exp-1)
	}
	if cur.rec.Seq != exp {
		if cur.hashOK && cur.rec.Seq > exp {
			return w.problem(exp, ProblemDeleted, "record %d holds record %d: records were deleted and renumbered", exp, cur.rec.Seq)
		}
		return w.problem(exp, ProblemReordered, "record %d holds record %d", exp, cur.rec.Seq)
	}
	if !cur.hashOK {
		return w.problem(exp, ProblemEdited, "hash does not match the record content")
	}
	if !cur.canonical {
		return w.problem(exp, ProblemEdited, "record body is not in canonical form")
	}
	if !cur.columns {
		return w.problem(exp, ProblemEdited, "record columns do not match the hashed record")
	}
	// cur is self-consistent but does not link: the record before it was rewritten with a
	// recomputed hash (or, at the start, the anchor does not match).
	if exp-1 > w.start.Seq {
		return w.problem(exp-1, ProblemEdited, "record was rewritten: record %d does not link to its hash", exp)
	}
	if w.start.Seq > 0 {
		return w.problem(exp, ProblemEdited, "record does not link to the anchor at %d", w.start.Seq)
	}
	return w.problem(exp, ProblemEdited, "first record does not link to the genesis hash")
}

// matchCheckpoints checks every checkpoint at seq against hash.
func (w *walker) matchCheckpoints(ctx context.Context, seq int64, hash string) (*Problem, error) {
	for {
		cp, err := w.cps.peek(ctx)
		if err != nil || cp == nil || cp.Seq > seq {
			return nil, err
		}
		if cp.Seq < seq { // only reachable for rows the walk skipped, which it never does
			w.cps.advance()
			continue
		}
		if err := checkSignature(w.keys, *cp); err != nil {
			return w.problem(seq, ProblemBadSignature, "%s: %v", cp.Kind, err), nil
		}
		if cp.Hash != hash {
			return w.problem(seq, ProblemCheckpointMismatch,
				"signed %s hash differs from the recomputed chain: records up to %d were rewritten", cp.Kind, seq), nil
		}
		w.matched++
		w.lastCheckpoint = seq
		w.cps.advance()
	}
}

// recordIter pages through a chain's records with a small lookahead.
type recordIter struct {
	st    Storage
	chain string
	after int64
	buf   []StoredRecord
	done  bool
}

func newRecordIter(st Storage, chain string, after int64) *recordIter {
	return &recordIter{st: st, chain: chain, after: after}
}

// peekAt returns the k-th unconsumed row (nil at the end).
func (it *recordIter) peekAt(ctx context.Context, k int) (*StoredRecord, error) {
	for len(it.buf) <= k && !it.done {
		page, err := it.st.AuditRecords(ctx, it.chain, it.after, pageSize)
		if err != nil {
			return nil, fmt.Errorf("audit: read records: %w", err)
		}
		if len(page) < pageSize {
			it.done = true
		}
		if len(page) > 0 {
			it.after = page[len(page)-1].Seq
			it.buf = append(it.buf, page...)
		}
	}
	if k < len(it.buf) {
		return &it.buf[k], nil
	}
	return nil, nil
}

func (it *recordIter) advance() {
	if len(it.buf) > 0 {
		it.buf = it.buf[1:]
	}
}

// checkpointIter pages through a chain's checkpoints (not anchors: only the latest anchor
// matters and it is the walk's start).
type checkpointIter struct {
	st    Storage
	chain string
	after int64
	buf   []Checkpoint
	done  bool
}

func newCheckpointIter(st Storage, chain string, after int64) *checkpointIter {
	return &checkpointIter{st: st, chain: chain, after: after}
}

func (it *checkpointIter) peek(ctx context.Context) (*Checkpoint, error) {
	for len(it.buf) == 0 && !it.done {
		page, err := it.st.AuditCheckpoints(ctx, it.chain, KindCheckpoint, it.after, pageSize)
		if err != nil {
			return nil, fmt.Errorf("audit: read checkpoints: %w", err)
		}
		if len(page) < pageSize {
			it.done = true
		}
		if len(page) > 0 {
			it.after = page[len(page)-1].Seq
			it.buf = append(it.buf, page...)
		}
	}
	if len(it.buf) == 0 {
		return nil, nil
	}
	return &it.buf[0], nil
}

func (it *checkpointIter) advance() {
	if len(it.buf) > 0 {
		it.buf = it.buf[1:]
	}
}
