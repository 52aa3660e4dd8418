package audittest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/flowgate/flowgate/internal/audit"
)

// Memory is an in-memory audit.Storage with the same semantics as the SQL one, plus raw
// tampering access (Tamperer). For tests and benchmarks only: nothing survives the process.
type Memory struct {
	mu      sync.Mutex
	heads   map[string]audit.Head
	records map[string]map[int64]audit.StoredRecord
	seqs    map[string][]int64 // sorted keys of records[chain]
	cps     map[cpKey]audit.Checkpoint
	mans    []audit.StoredManifest // ascending seq
	broken  bool
}

type cpKey struct {
	chain, kind string
	seq         int64
}

var (
	_ audit.Storage = (*Memory)(nil)
	_ Tamperer      = (*Memory)(nil)
)

// errBroken is what appends return while BreakWrites is in effect.
var errBroken = errors.New("audittest: writes are blocked")

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{
		heads:   map[string]audit.Head{},
		records: map[string]map[int64]audit.StoredRecord{},
		seqs:    map[string][]int64{},
		cps:     map[cpKey]audit.Checkpoint{},
	}
}

// AppendAudit implements audit.Storage.
func (m *Memory) AppendAudit(ctx context.Context, chains []string, seal func(map[string]audit.Head) ([]audit.StoredRecord, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken {
		return errBroken
	}
	heads := make(map[string]audit.Head, len(chains))
	for _, c := range chains {
		h, ok := m.heads[c]
		if !ok {
			h = audit.Head{Hash: audit.GenesisHash}
		}
		heads[c] = h
	}
	recs, err := seal(maps.Clone(heads))
	if err != nil {
		return err
	}
	// Check everything before changing anything: the append is all or nothing.
	next := maps.Clone(heads)
	for _, r := range recs {
		h, ok := next[r.Chain]
		if !ok {
			return fmt.Errorf("audittest: record for unlocked chain %q", r.Chain)
		}
		if r.Seq != h.Seq+1 || r.PrevHash != h.Hash {
			return fmt.Errorf("audittest: record %d of chain %q does not follow the head", r.Seq, r.Chain)
		}
		if _, dup := m.records[r.Chain][r.Seq]; dup {
			return fmt.Errorf("audittest: duplicate key (%q, %d)", r.Chain, r.Seq)
		}
		next[r.Chain] = audit.Head{Seq: r.Seq, Hash: r.Hash}
	}
	for _, r := range recs {
		m.put(r)
	}
	maps.Copy(m.heads, next)
	return nil
}

func (m *Memory) put(r audit.StoredRecord) {
	if m.records[r.Chain] == nil {
		m.records[r.Chain] = map[int64]audit.StoredRecord{}
	}
	r.Body = slices.Clone(r.Body)
	if _, ok := m.records[r.Chain][r.Seq]; !ok {
		ss := m.seqs[r.Chain]
		i, _ := slices.BinarySearch(ss, r.Seq)
		m.seqs[r.Chain] = slices.Insert(ss, i, r.Seq)
	}
	m.records[r.Chain][r.Seq] = r
}

func (m *Memory) del(chain string, seq int64) bool {
	if _, ok := m.records[chain][seq]; !ok {
		return false
	}
	delete(m.records[chain], seq)
	ss := m.seqs[chain]
	i, _ := slices.BinarySearch(ss, seq)
	m.seqs[chain] = slices.Delete(ss, i, i+1)
	return true
}

// AuditChains implements audit.Storage.
func (m *Memory) AuditChains(ctx context.Context) ([]audit.ChainState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	states := map[string]*audit.ChainState{}
	get := func(c string) *audit.ChainState {
		s := states[c]
		if s == nil {
			s = &audit.ChainState{Chain: c}
			states[c] = s
		}
		return s
	}
	for c, h := range m.heads {
		s := get(c)
		s.HasHead, s.Head = true, h
	}
	for c, rs := range m.records {
		if len(rs) == 0 {
			continue
		}
		s := get(c)
		for seq := range rs {
			s.MaxSeq = max(s.MaxSeq, seq)
		}
	}
	for k := range m.cps {
		s := get(k.chain)
		if k.kind == audit.KindAnchor {
			s.AnchorSeq = max(s.AnchorSeq, k.seq)
		} else {
			s.CheckpointSeq = max(s.CheckpointSeq, k.seq)
		}
	}
	out := make([]audit.ChainState, 0, len(states))
	for _, s := range states {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b audit.ChainState) int { return cmp.Compare(a.Chain, b.Chain) })
	return out, nil
}

// AuditRecords implements audit.Storage.
func (m *Memory) AuditRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]audit.StoredRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.seqs[chain]
	i, found := slices.BinarySearch(ss, afterSeq)
	if found {
		i++
	}
	ss = ss[i:]
	if len(ss) > limit {
		ss = ss[:limit]
	}
	out := make([]audit.StoredRecord, 0, len(ss))
	for _, seq := range ss {
		out = append(out, m.records[chain][seq])
	}
	return cloneRecords(out), nil
}

// QueryAudit implements audit.Storage.
func (m *Memory) QueryAudit(ctx context.Context, q audit.StoredQuery) ([]audit.StoredRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.StoredRecord
	for c, rs := range m.records {
		if !q.AllChains && c != q.Chain {
			continue
		}
		for _, r := range rs {
			if (q.ActorSub != "" && r.ActorSub != q.ActorSub) || (q.Action != "" && r.Action != q.Action) ||
				(q.Outcome != "" && r.Outcome != q.Outcome) || (q.HasSince && r.TimeMS < q.SinceMS) ||
				(q.HasUntil && r.TimeMS >= q.UntilMS) {
				continue
			}
			if q.After != nil && !afterPos(q.Order, r, *q.After) {
				continue
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b audit.StoredRecord) int { return comparePos(q.Order, a, b) })
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return cloneRecords(out), nil
}

func comparePos(o audit.Order, a, b audit.StoredRecord) int {
	if o == audit.OrderChainSeq {
		return cmp.Or(cmp.Compare(a.Chain, b.Chain), cmp.Compare(a.Seq, b.Seq))
	}
	return -cmp.Or(cmp.Compare(a.TimeMS, b.TimeMS), cmp.Compare(a.Chain, b.Chain), cmp.Compare(a.Seq, b.Seq))
}

func afterPos(o audit.Order, r audit.StoredRecord, p audit.Position) bool {
	return comparePos(o, audit.StoredRecord{TimeMS: p.TimeMS, Chain: p.Chain, Seq: p.Seq}, r) < 0
}

func cloneRecords(rs []audit.StoredRecord) []audit.StoredRecord {
	out := make([]audit.StoredRecord, len(rs))
	for i, r := range rs {
		r.Body = slices.Clone(r.Body)
		out[i] = r
	}
	return out
}

// AuditCheckpoints implements audit.Storage.
func (m *Memory) AuditCheckpoints(ctx context.Context, chain, kind string, afterSeq int64, limit int) ([]audit.Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.Checkpoint
	for k, c := range m.cps {
		if k.chain == chain && k.kind == kind && k.seq > afterSeq {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b audit.Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// AddAuditCheckpoints implements audit.Storage.
func (m *Memory) AddAuditCheckpoints(ctx context.Context, cps []audit.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken {
		return errBroken
	}
	for _, c := range cps {
		k := cpKey{c.Chain, c.Kind, c.Seq}
		if _, ok := m.cps[k]; !ok {
			m.cps[k] = c
		}
	}
	return nil
}

// AddAuditManifest implements audit.Storage.
func (m *Memory) AddAuditManifest(ctx context.Context, man audit.StoredManifest, keep int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken {
		return false, errBroken
	}
	if slices.ContainsFunc(m.mans, func(x audit.StoredManifest) bool { return x.Seq == man.Seq }) {
		return false, nil
	}
	man.Body = slices.Clone(man.Body)
	m.mans = append(m.mans, man)
	slices.SortFunc(m.mans, func(a, b audit.StoredManifest) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(m.mans) > keep {
		m.mans = slices.Delete(m.mans, 0, len(m.mans)-keep)
	}
	return true, nil
}

// AuditManifests implements audit.Storage.
func (m *Memory) AuditManifests(ctx context.Context, limit int) ([]audit.StoredManifest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.StoredManifest
	for i := len(m.mans) - 1; i >= 0 && len(out) < limit; i-- {
		x := m.mans[i]
		x.Body = slices.Clone(x.Body)
		out = append(out, x)
	}
	return out, nil
}

// DeleteAuditRecords implements audit.Storage.
func (m *Memory) DeleteAuditRecords(ctx context.Context, chain string, afterSeq, throughSeq int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, seq := range slices.Clone(m.seqs[chain]) {
		if seq > afterSeq && seq <= throughSeq && m.del(chain, seq) {
			n++
		}
	}
	return n, nil
}

// DeleteAuditCheckpoints implements audit.Storage.
func (m *Memory) DeleteAuditCheckpoints(ctx context.Context, chain string, throughSeq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.cps {
		if k.chain == chain && (k.kind == audit.KindCheckpoint && k.seq <= throughSeq || k.kind == audit.KindAnchor && k.seq < throughSeq) {
			delete(m.cps, k)
		}
	}
	return nil
}

// PutRecord implements Tamperer.
func (m *Memory) PutRecord(ctx context.Context, r audit.StoredRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(r)
	return nil
}

// DeleteRecord implements Tamperer.
func (m *Memory) DeleteRecord(ctx context.Context, chain string, seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.del(chain, seq)
	return nil
}

// SetHead implements Tamperer.
func (m *Memory) SetHead(ctx context.Context, chain string, h audit.Head) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heads[chain] = h
	return nil
}

// PutCheckpoint implements Tamperer.
func (m *Memory) PutCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cps[cpKey{c.Chain, c.Kind, c.Seq}] = c
	return nil
}

// BreakWrites implements Tamperer.
func (m *Memory) BreakWrites(ctx context.Context) (func() error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.broken = true
	return func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.broken = false
		return nil
	}, nil
}
