package audit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrChainBroken: a chain failed verification, so it is not signed (Checkpoint) or cut (Prune):
// signing or pruning a tampered chain would launder the tampering.
var ErrChainBroken = errors.New("audit: chain fails verification")

// Checkpoint signs the head of every chain that advanced since its last checkpoint and stores
// the signatures. Before signing, the links of the records since the previous checkpoint (or
// anchor, or genesis) are re-checked (seq, prevHash, hash), as is the last record this process
// wrote to the chain. It returns how many chains were signed; a chain that fails is skipped,
// logged and reported in the error (wrapping ErrChainBroken). Each checkpoint is also logged,
// leaving a copy outside the database.
func (r *Recorder) Checkpoint(ctx context.Context) (int, error) {
	if r.signer == nil {
		return 0, ErrNoSigningKey
	}
	r.cpMu.Lock()
	defer r.cpMu.Unlock()
	n, err := r.checkpoint(ctx)
	if err != nil {
		r.checkpointFailures.Add(1)
	}
	r.checkpoints.Add(uint64(n))
	if r.hooks.Checkpoint != nil {
		r.hooks.Checkpoint(n, err)
	}
	return n, err
}

func (r *Recorder) checkpoint(ctx context.Context) (int, error) {
	// Taken before the chain states: every head remembered now is committed, so each chain's
	// head can only be at or past it.
	written := r.rememberedHeads()
	states, err := r.st.AuditChains(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit: checkpoint: %w", err)
	}
	var (
		cps  []Checkpoint
		errs []error
	)
	for _, s := range states {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h, wrote := written[s.Chain]
		var p *Problem
		switch {
		case wrote && (!s.HasHead || h.Seq > s.Head.Seq):
			// Checked even when there is nothing new to sign: a tail cut back to the last
			// checkpoint is invisible to Verify but not to the process that wrote it.
			p = &Problem{Tenant: s.Chain, Seq: s.Head.Seq + 1, Kind: ProblemDeleted,
				Detail: fmt.Sprintf("this process wrote up to seq %d; the head is at %d", h.Seq, s.Head.Seq)}
		case !s.HasHead || s.Head.Seq <= max(s.CheckpointSeq, s.AnchorSeq):
			continue
		default:
			if p, err = r.verifySinceCheckpoint(ctx, s, h, wrote); err != nil {
				return 0, err
			}
		}
		if p != nil {
			r.logger.Error("audit chain fails verification; not signed", "chain", chainName(s.Chain),
				"seq", p.Seq, "kind", p.Kind, "detail", p.Detail)
			errs = append(errs, fmt.Errorf("%w: %s", ErrChainBroken, p))
			continue
		}
		cp, err := signCheckpoint(r.signer, Checkpoint{
			Chain: s.Chain, Kind: KindCheckpoint, Seq: s.Head.Seq, Hash: s.Head.Hash, Time: r.clock(),
		})
		if err != nil {
			return 0, err
		}
		cps = append(cps, cp)
	}
	if len(cps) > 0 {
		if err := r.st.AddAuditCheckpoints(ctx, cps); err != nil {
			return 0, fmt.Errorf("audit: store checkpoints: %w", err)
		}
		for _, cp := range cps {
			r.logger.Info("audit checkpoint", "chain", chainName(cp.Chain), "seq", cp.Seq, "hash", cp.Hash,
				"time", cp.Time.Format(timeLayout), "key_id", cp.KeyID, "signature", cp.Signature)
		}
	}
	if len(cps) > 0 {
		if err := r.writeManifest(ctx, states, cps); err != nil {
			errs = append(errs, err)
		}
	}
	return len(cps), errors.Join(errs...)
}

// verifySinceCheckpoint verifies s from its newest signed point (checkpoint or anchor, whose
// signature is checked; genesis if none) to its head.
func (r *Recorder) verifySinceCheckpoint(ctx context.Context, s ChainState, written Head, wrote bool) (*Problem, error) {
	start := Head{Hash: GenesisHash}
	if seq, kind := max(s.CheckpointSeq, s.AnchorSeq), KindCheckpoint; seq > 0 {
		if s.AnchorSeq > s.CheckpointSeq {
			kind = KindAnchor
		}
		cp, err := r.findCheckpoint(ctx, s.Chain, kind, seq)
		if err != nil {
			return nil, err
		}
		if err := checkSignature(r.keys, cp); err != nil {
			return &Problem{Tenant: s.Chain, Seq: seq, Kind: ProblemBadSignature, Detail: kind + ": " + err.Error()}, nil
		}
		start = Head{Seq: cp.Seq, Hash: cp.Hash}
	}
	w := &walker{
		st: r.st, keys: r.keys, chain: s.Chain, start: start, end: s.Head.Seq, light: true,
		recs: newRecordIter(r.st, s.Chain, start.Seq),
	}
	if wrote && written.Seq > start.Seq {
		w.expect = &written
	}
	p, err := w.walk(ctx)
	if err != nil || p != nil {
		return p, err
	}
	if w.last.Hash != s.Head.Hash {
		return &Problem{Tenant: s.Chain, Seq: s.Head.Seq, Kind: ProblemEdited, Detail: "chain head row does not match the last record"}, nil
	}
	return nil, nil
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Chains []PrunedChain `json:"chains"`
}

// PrunedChain is one pruned chain: its records with seq <= ThroughSeq are gone and a signed
// anchor at ThroughSeq lets Verify start after them.
type PrunedChain struct {
	Tenant     string `json:"tenant"`
	ThroughSeq int64  `json:"throughSeq"`
	Removed    int64  `json:"removed"`
}

// pruneChunk is how many records one delete statement removes, keeping each transaction (and
// SQLite's write lock) short.
const pruneChunk = 5000

// Prune removes, from every chain, the longest prefix of records older than before
// (audit.retention). The prefix is verified first (a broken chain is not pruned: that would
// erase the evidence), then a signed anchor (the last removed record's seq and hash) is stored
// so that Verify starts after it, then the records and the checkpoints they cover are deleted
// and an audit.retention record is appended to the chain. A chain that fails is skipped and
// reported in the error; the others are still pruned.
func (r *Recorder) Prune(ctx context.Context, before time.Time) (PruneResult, error) {
	if r.signer == nil {
		return PruneResult{}, ErrNoSigningKey
	}
	r.cpMu.Lock()
	res, retention, err := r.prune(ctx, before)
	r.cpMu.Unlock()
	// Recorded outside cpMu: Record may wait on the writer, which never needs cpMu, but a
	// Close running the final checkpoint would.
	for _, rec := range retention {
		if rerr := r.Record(ctx, rec); rerr != nil {
			err = errors.Join(err, fmt.Errorf("audit: record retention: %w", rerr))
		}
	}
	return res, err
}

func (r *Recorder) prune(ctx context.Context, before time.Time) (PruneResult, []Record, error) {
	res := PruneResult{Chains: []PrunedChain{}}
	states, err := r.st.AuditChains(ctx)
	if err != nil {
		return res, nil, fmt.Errorf("audit: prune: %w", err)
	}
	beforeMS := before.UnixMilli()
	var (
		errs      []error
		retention []Record
	)
	for _, s := range states {
		if !s.HasHead {
			continue
		}
		pc, perr := r.pruneChain(ctx, s, beforeMS)
		if perr != nil {
			errs = append(errs, perr)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if pc.Removed == 0 && pc.ThroughSeq == 0 {
			continue
		}
		res.Chains = append(res.Chains, pc)
		retention = append(retention, Record{
			Action: ActionAuditRetention, Outcome: OutcomeSuccess, Tenant: s.Chain,
			Reason: "records older than the retention period removed",
			Target: Target{Type: "audit_chain", ID: chainName(s.Chain)},
			Details: map[string]any{
				"throughSeq": pc.ThroughSeq, "removed": pc.Removed,
				"before": before.UTC().Format(timeLayout),
			},
		})
	}
	return res, retention, errors.Join(errs...)
}

func (r *Recorder) pruneChain(ctx context.Context, s ChainState, beforeMS int64) (PrunedChain, error) {
	pc := PrunedChain{Tenant: s.Chain}
	start := Head{Hash: GenesisHash}
	if s.AnchorSeq > 0 {
		a, err := r.findCheckpoint(ctx, s.Chain, KindAnchor, s.AnchorSeq)
		if err != nil {
			return pc, err
		}
		if err := checkSignature(r.keys, a); err != nil {
			return pc, fmt.Errorf("%w: chain %s: anchor at %d: %v", ErrChainBroken, chainName(s.Chain), a.Seq, err)
		}
		start = Head{Seq: a.Seq, Hash: a.Hash}
	}
	w := &walker{
		st: r.st, keys: r.keys, chain: s.Chain, start: start, end: s.Head.Seq, checkpoints: true,
		recs: newRecordIter(r.st, s.Chain, start.Seq),
		cps:  newCheckpointIter(r.st, s.Chain, start.Seq),
		stop: func(row *StoredRecord) bool { return row.TimeMS >= beforeMS },
	}
	p, err := w.walk(ctx)
	if err != nil {
		return pc, err
	}
	if p != nil {
		r.logger.Error("audit chain fails verification; not pruned", "chain", chainName(s.Chain),
			"seq", p.Seq, "kind", p.Kind, "detail", p.Detail)
		return pc, fmt.Errorf("%w: %s", ErrChainBroken, p)
	}
	through := w.last
	if through.Seq <= start.Seq {
		return pc, nil
	}
	anchor, err := signCheckpoint(r.signer, Checkpoint{
		Chain: s.Chain, Kind: KindAnchor, Seq: through.Seq, Hash: through.Hash, Time: r.clock(),
	})
	if err != nil {
		return pc, err
	}
	// The anchor goes first: from then on Verify starts after it, so a prune interrupted
	// between the chunks below leaves a verifiable chain (with leftovers a later run removes).
	if err := r.st.AddAuditCheckpoints(ctx, []Checkpoint{anchor}); err != nil {
		return pc, fmt.Errorf("audit: store anchor: %w", err)
	}
	r.logger.Info("audit anchor", "chain", chainName(anchor.Chain), "seq", anchor.Seq, "hash", anchor.Hash,
		"time", anchor.Time.Format(timeLayout), "key_id", anchor.KeyID, "signature", anchor.Signature)
	pc.ThroughSeq = through.Seq
	// Start at the oldest row: leftovers of an interrupted earlier prune lie below start.
	first, err := r.st.AuditRecords(ctx, s.Chain, 0, 1)
	if err != nil {
		return pc, fmt.Errorf("audit: read records: %w", err)
	}
	lo := through.Seq
	if len(first) > 0 {
		lo = first[0].Seq - 1
	}
	for ; lo < through.Seq; lo += pruneChunk {
		n, err := r.st.DeleteAuditRecords(ctx, s.Chain, lo, min(lo+pruneChunk, through.Seq))
		if err != nil {
			return pc, fmt.Errorf("audit: delete records: %w", err)
		}
		pc.Removed += n
	}
	if err := r.st.DeleteAuditCheckpoints(ctx, s.Chain, through.Seq); err != nil {
		return pc, fmt.Errorf("audit: delete checkpoints: %w", err)
	}
	return pc, nil
}
