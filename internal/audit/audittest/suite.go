package audittest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/clocktest"
	"github.com/flowgate/flowgate/internal/logbuf"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

// Tamperer changes the database behind the audit package's back, as an attacker with write
// access to the database (and no access to the checkpoint key) would.
type Tamperer interface {
	// PutRecord inserts the row, replacing any row at (Chain, Seq).
	PutRecord(ctx context.Context, r audit.StoredRecord) error
	DeleteRecord(ctx context.Context, chain string, seq int64) error
	SetHead(ctx context.Context, chain string, h audit.Head) error
	// PutCheckpoint inserts the checkpoint, replacing any at (Chain, Kind, Seq).
	PutCheckpoint(ctx context.Context, c audit.Checkpoint) error
	// BreakWrites makes every audit append fail until restore is called.
	BreakWrites(ctx context.Context) (restore func() error, err error)
}

// Env is one isolated database for one test.
type Env struct {
	Storage audit.Storage
	Tamper  Tamperer
	// Replica opens another independent handle on the same database, as a second gateway
	// process would; nil = share Storage.
	Replica func(t *testing.T) audit.Storage
}

// Clock is the suite's clock: it moves by a millisecond at every reading, so records get
// distinct times, and Set moves it.
type Clock = clocktest.Clock

// NewClock returns a Clock standing at t.
func NewClock(t time.Time) *Clock { return clocktest.NewStepping(t.UTC(), time.Millisecond) }

// T0 is the epoch of the suite's clocks.
func T0() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }

// NewKey returns a fresh Ed25519 checkpoint key.
func NewKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewRecorder starts a Recorder over st with a test logger and closes it at cleanup.
func NewRecorder(t testing.TB, st audit.Storage, opts audit.Options) *audit.Recorder {
	t.Helper()
	opts.Storage = st
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = -1 // tests checkpoint explicitly
	}
	r, err := audit.NewRecorder(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil && !errors.Is(err, audit.ErrChainBroken) {
			t.Errorf("close recorder: %v", err)
		}
	})
	return r
}

// Rec is a typical record of tenant number i.
func Rec(tenant string, i int) audit.Record {
	return audit.Record{
		Action: audit.ActionTaskCreate, Outcome: audit.OutcomeSuccess, Tenant: tenant,
		Reason:  fmt.Sprintf("record %d", i),
		Actor:   audit.Actor{Sub: fmt.Sprintf("user-%d", i%3), TokenFP: "sha256:0123456789ab"},
		Target:  audit.Target{Type: "task", ID: fmt.Sprintf("task-%d", i)},
		Source:  audit.Source{IP: "192.0.2.1", Origin: "https://app.example", UserAgent: "test"},
		Details: map[string]any{"i": i, "objective": audit.ObjectiveDigest(fmt.Sprintf("objective %d", i))},
	}
}

// Run runs the storage conformance and security suite; newEnv gives every subtest a fresh,
// isolated database.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	t.Run("RecordQueryVerify", func(t *testing.T) { testRecordQueryVerify(t, newEnv(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newEnv(t)) })
	t.Run("TwoReplicas", func(t *testing.T) { testTwoReplicas(t, newEnv(t)) })
	t.Run("Tamper", func(t *testing.T) { testTamper(t, newEnv) })
	t.Run("Injection", func(t *testing.T) { testInjection(t, newEnv(t)) })
	t.Run("TenantScope", func(t *testing.T) { testTenantScope(t, newEnv(t)) })
	t.Run("FailClosed", func(t *testing.T) { testFailClosed(t, newEnv(t)) })
	t.Run("BrokenChainIsolated", func(t *testing.T) { testBrokenChainIsolated(t, newEnv(t)) })
	t.Run("FailOpen", func(t *testing.T) { testFailOpen(t, newEnv(t)) })
	t.Run("CheckpointRefusesTamperedTail", func(t *testing.T) { testCheckpointRefuses(t, newEnv) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, newEnv(t)) })
	t.Run("PruneRefusesBrokenChain", func(t *testing.T) { testPruneBroken(t, newEnv(t)) })
	t.Run("CloseFlushes", func(t *testing.T) { testCloseFlushes(t, newEnv(t)) })
	t.Run("OfflineVerifier", func(t *testing.T) { testOfflineVerifier(t, newEnv(t)) })
	t.Run("Manifest", func(t *testing.T) { testManifest(t, newEnv(t)) })
}

func mustRecord(t testing.TB, r *audit.Recorder, rec audit.Record) {
	t.Helper()
	if err := r.Record(context.Background(), rec); err != nil {
		t.Fatalf("record: %v", err)
	}
}

func mustCheckpoint(t testing.TB, r *audit.Recorder) {
	t.Helper()
	if _, err := r.Checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

// MustVerify verifies every chain and fails the test on a problem.
func MustVerify(t testing.TB, r *audit.Reader) audit.Report {
	t.Helper()
	rep, err := r.Verify(context.Background(), audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK {
		t.Fatalf("verify: %s", rep.FirstProblem)
	}
	return rep
}

func rows(t testing.TB, st audit.Storage, chain string) []audit.StoredRecord {
	t.Helper()
	var out []audit.StoredRecord
	after := int64(0)
	for {
		page, err := st.AuditRecords(context.Background(), chain, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 500 {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

func chainReport(t testing.TB, rep audit.Report, tenant string) audit.ChainReport {
	t.Helper()
	for _, c := range rep.Chains {
		if c.Tenant == tenant {
			return c
		}
	}
	t.Fatalf("no report for chain %q", tenant)
	return audit.ChainReport{}
}

func testRecordQueryVerify(t *testing.T, env Env) {
	clock := NewClock(T0())
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
	for i := range 5 {
		mustRecord(t, r, Rec("acme", i))
	}
	mustRecord(t, r, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess})
	mustCheckpoint(t, r)
	rep := MustVerify(t, r.Reader)
	if c := chainReport(t, rep, "acme"); c.LastSeq != 5 || c.Records != 5 || c.LastCheckpointSeq != 5 {
		t.Fatalf("acme report %+v", c)
	}
	if c := chainReport(t, rep, ""); c.LastSeq != 1 {
		t.Fatalf("platform report %+v", c)
	}
	recs, next, err := r.Query(context.Background(), audit.Filter{Tenant: "acme"})
	if err != nil || next != "" || len(recs) != 5 {
		t.Fatalf("query: %d records, next %q, %v", len(recs), next, err)
	}
	for i, rec := range recs { // newest first
		if rec.Seq != int64(5-i) || rec.Tenant != "acme" || rec.Hash == "" || rec.ID == "" {
			t.Fatalf("record %d: %+v", i, rec)
		}
		if h, err := audit.ComputeHash(rec); err != nil || h != rec.Hash {
			t.Fatalf("record %d: recomputed hash %s, stored %s (%v)", rec.Seq, h, rec.Hash, err)
		}
		if rec.Time.Location() != time.UTC || rec.Time.Nanosecond()%int(time.Millisecond) != 0 {
			t.Fatalf("record time %v is not UTC ms", rec.Time)
		}
	}
	if recs[4].PrevHash != audit.GenesisHash || recs[3].PrevHash != recs[4].Hash {
		t.Fatal("records do not link")
	}
	if got := recs[0].Details["objective"].(map[string]any)["len"]; got != float64(len("objective 4")) {
		t.Fatalf("objective digest len = %v", got)
	}
}

// checkChains asserts every chain holds a gap-free, linked sequence and returns the total.
func checkChains(t testing.TB, st audit.Storage) int {
	t.Helper()
	states, err := st.AuditChains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, s := range states {
		rs := rows(t, st, s.Chain)
		prev := audit.GenesisHash
		for i, r := range rs {
			if r.Seq != int64(i+1) || r.PrevHash != prev {
				t.Fatalf("chain %q: row %d has seq %d (prev ok: %v)", s.Chain, i, r.Seq, r.PrevHash == prev)
			}
			prev = r.Hash
		}
		if s.Head.Seq != int64(len(rs)) || s.Head.Hash != prev {
			t.Fatalf("chain %q: head %+v after %d records", s.Chain, s.Head, len(rs))
		}
		total += len(rs)
	}
	return total
}

// tenantOf spreads records over the platform chain and four tenants.
func tenantOf(n int) string {
	return [...]string{"", "acme", "globex", "initech", "umbrella"}[n%5]
}

func hammer(t *testing.T, r *audit.Recorder, workers, perWorker int, offset int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				n := offset + w*perWorker + i
				if err := r.Record(context.Background(), Rec(tenantOf(n), n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testConcurrent(t *testing.T, env Env) {
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t)})
	hammer(t, r, 50, 200, 0)
	if n := checkChains(t, env.Storage); n != 10_000 {
		t.Fatalf("%d records, want 10000", n)
	}
	mustCheckpoint(t, r)
	MustVerify(t, r.Reader)
	st := r.Stats()
	if st.Written != 10_000 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("10000 records in %d transactions", st.Batches)
}

func testTwoReplicas(t *testing.T, env Env) {
	key := NewKey(t)
	second := env.Storage
	if env.Replica != nil {
		second = env.Replica(t)
	}
	r1 := NewRecorder(t, env.Storage, audit.Options{SigningKey: key})
	r2 := NewRecorder(t, second, audit.Options{SigningKey: key})
	var wg sync.WaitGroup
	wg.Go(func() { hammer(t, r1, 25, 200, 0) })
	wg.Go(func() { hammer(t, r2, 25, 200, 5000) })
	// Both replicas checkpoint while the other writes.
	wg.Go(func() {
		for range 5 {
			if _, err := r1.Checkpoint(context.Background()); err != nil {
				t.Errorf("checkpoint r1: %v", err)
			}
			if _, err := r2.Checkpoint(context.Background()); err != nil {
				t.Errorf("checkpoint r2: %v", err)
			}
		}
	})
	wg.Wait()
	if n := checkChains(t, env.Storage); n != 10_000 {
		t.Fatalf("%d records, want 10000", n)
	}
	mustCheckpoint(t, r2)
	MustVerify(t, r1.Reader)
}

// editBody decodes a stored body, lets edit change it and re-encodes it canonically, as an
// attacker who knows the format would.
func editBody(t testing.TB, body []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := audit.AppendCanonical(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hashOf(prev string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func testTamper(t *testing.T, newEnv func(t *testing.T) Env) {
	const chain = "acme"
	ctx := context.Background()
	// Each case gets a chain of 20 records with checkpoints at 10 and 20 and a platform chain
	// that must stay green.
	setup := func(t *testing.T) (Env, *audit.Recorder, []audit.StoredRecord) {
		env := newEnv(t)
		clock := NewClock(T0())
		r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
		for i := range 20 {
			mustRecord(t, r, Rec(chain, i))
			if i == 9 {
				mustCheckpoint(t, r)
			}
		}
		mustRecord(t, r, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess})
		mustCheckpoint(t, r)
		MustVerify(t, r.Reader)
		return env, r, rows(t, env.Storage, chain)
	}
	put := func(t *testing.T, env Env, r audit.StoredRecord) {
		t.Helper()
		if err := env.Tamper.PutRecord(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	reason := func(s string) func(map[string]any) { return func(m map[string]any) { m["reason"] = s } }

	cases := []struct {
		name   string
		tamper func(t *testing.T, env Env, rs []audit.StoredRecord)
		seq    int64
		kind   audit.ProblemKind
	}{
		{"EditBody", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			r := rs[4]
			r.Body = editBody(t, r.Body, reason("nothing happened"))
			put(t, env, r)
		}, 5, audit.ProblemEdited},
		{"EditColumn", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			r := rs[4]
			r.Action = audit.ActionKeySet
			put(t, env, r)
		}, 5, audit.ProblemEdited},
		{"EditNonCanonical", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			r := rs[4]
			r.Body = append([]byte(" "), r.Body...)
			put(t, env, r)
		}, 5, audit.ProblemEdited},
		{"EditAndRehash", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			r := rs[4]
			r.Body = editBody(t, r.Body, reason("nothing happened"))
			r.Hash = hashOf(r.PrevHash, r.Body)
			put(t, env, r)
		}, 5, audit.ProblemEdited},
		{"Delete", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			if err := env.Tamper.DeleteRecord(ctx, chain, 5); err != nil {
				t.Fatal(err)
			}
		}, 5, audit.ProblemDeleted},
		{"DeletePrefix", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			for seq := int64(1); seq <= 3; seq++ {
				if err := env.Tamper.DeleteRecord(ctx, chain, seq); err != nil {
					t.Fatal(err)
				}
			}
		}, 1, audit.ProblemDeleted},
		{"DeleteAndRenumber", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			for _, r := range rs[5:] {
				r.Seq--
				put(t, env, r)
			}
			if err := env.Tamper.DeleteRecord(ctx, chain, 20); err != nil {
				t.Fatal(err)
			}
			if err := env.Tamper.SetHead(ctx, chain, audit.Head{Seq: 19, Hash: rs[19].Hash}); err != nil {
				t.Fatal(err)
			}
		}, 5, audit.ProblemDeleted},
		{"TruncateTail", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			for _, seq := range []int64{19, 20} {
				if err := env.Tamper.DeleteRecord(ctx, chain, seq); err != nil {
					t.Fatal(err)
				}
			}
			if err := env.Tamper.SetHead(ctx, chain, audit.Head{Seq: 18, Hash: rs[17].Hash}); err != nil {
				t.Fatal(err)
			}
		}, 19, audit.ProblemDeleted},
		{"Swap", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			a, b := rs[4], rs[5]
			a.Seq, b.Seq = 6, 5
			put(t, env, a)
			put(t, env, b)
		}, 5, audit.ProblemReordered},
		{"InsertForged", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			for i := len(rs) - 1; i >= 4; i-- {
				r := rs[i]
				r.Seq++
				put(t, env, r)
			}
			f := rs[4]
			f.ID = "forged"
			f.Body = editBody(t, f.Body, func(m map[string]any) { m["id"] = "forged"; m["reason"] = "forged" })
			f.Hash = hashOf(f.PrevHash, f.Body)
			put(t, env, f)
			if err := env.Tamper.SetHead(ctx, chain, audit.Head{Seq: 21, Hash: rs[19].Hash}); err != nil {
				t.Fatal(err)
			}
		}, 5, audit.ProblemInserted},
		{"InsertClumsy", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			for i := len(rs) - 1; i >= 4; i-- {
				r := rs[i]
				r.Seq++
				put(t, env, r)
			}
			f := rs[4]
			f.Body = editBody(t, f.Body, reason("forged"))
			put(t, env, f) // stale hash
		}, 5, audit.ProblemInserted},
		{"RewriteWholeChain", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			// A database-only attacker rewrites records 3…20 consistently, hashes and head
			// included: only the signed checkpoint at 10 can tell.
			prev := rs[1].Hash
			for i := 2; i < len(rs); i++ {
				r := rs[i]
				p := prev
				r.Body = editBody(t, r.Body, func(m map[string]any) {
					m["prevHash"] = p
					if i == 2 {
						m["reason"] = "nothing to see"
					}
				})
				r.PrevHash = prev
				r.Hash = hashOf(prev, r.Body)
				prev = r.Hash
				put(t, env, r)
			}
			if err := env.Tamper.SetHead(ctx, chain, audit.Head{Seq: 20, Hash: prev}); err != nil {
				t.Fatal(err)
			}
		}, 10, audit.ProblemCheckpointMismatch},
		{"ForgedCheckpointSignature", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			cps, err := env.Storage.AuditCheckpoints(ctx, chain, audit.KindCheckpoint, 9, 1)
			if err != nil || len(cps) != 1 || cps[0].Seq != 10 {
				t.Fatalf("checkpoint at 10: %v %v", cps, err)
			}
			c := cps[0]
			sig, _ := base64.StdEncoding.DecodeString(c.Signature)
			sig[0] ^= 1
			c.Signature = base64.StdEncoding.EncodeToString(sig)
			if err := env.Tamper.PutCheckpoint(ctx, c); err != nil {
				t.Fatal(err)
			}
		}, 10, audit.ProblemBadSignature},
		{"CheckpointRelabelledAsAnchor", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			// Turning the signed checkpoint at 10 into an anchor would excuse deleting 1…10.
			cps, err := env.Storage.AuditCheckpoints(ctx, chain, audit.KindCheckpoint, 9, 1)
			if err != nil || len(cps) != 1 {
				t.Fatalf("checkpoint at 10: %v %v", cps, err)
			}
			c := cps[0]
			c.Kind = audit.KindAnchor
			if err := env.Tamper.PutCheckpoint(ctx, c); err != nil {
				t.Fatal(err)
			}
			for seq := int64(1); seq <= 10; seq++ {
				if err := env.Tamper.DeleteRecord(ctx, chain, seq); err != nil {
					t.Fatal(err)
				}
			}
		}, 10, audit.ProblemBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, r, rs := setup(t)
			tc.tamper(t, env, rs)
			rep, err := r.Verify(ctx, audit.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p := rep.FirstProblem
			if rep.OK || p == nil {
				t.Fatal("verify did not notice")
			}
			if p.Tenant != chain || p.Seq != tc.seq || p.Kind != tc.kind {
				t.Fatalf("got %s; want seq %d %s", p, tc.seq, tc.kind)
			}
			if c := chainReport(t, rep, ""); c.Problem != nil {
				t.Fatalf("platform chain: %s", c.Problem)
			}
			// Scoped verification names the same problem; the platform chain alone is fine.
			one := chain
			if rep, err := r.Verify(ctx, audit.VerifyOptions{Tenant: &one}); err != nil || rep.OK || *rep.FirstProblem != *p {
				t.Fatalf("scoped verify: %+v %v", rep.FirstProblem, err)
			}
			platform := ""
			if rep, err := r.Verify(ctx, audit.VerifyOptions{Tenant: &platform}); err != nil || !rep.OK {
				t.Fatalf("platform verify: %+v %v", rep.FirstProblem, err)
			}
			t.Log(p)
		})
	}
}

func testCheckpointRefuses(t *testing.T, newEnv func(t *testing.T) Env) {
	ctx := context.Background()
	cases := []struct {
		name   string
		tamper func(t *testing.T, env Env, rs []audit.StoredRecord)
	}{
		{"Edit", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			r := rs[11]
			r.Body = editBody(t, r.Body, func(m map[string]any) { m["reason"] = "forged" })
			if err := env.Tamper.PutRecord(ctx, r); err != nil {
				t.Fatal(err)
			}
		}},
		{"ConsistentRewrite", func(t *testing.T, env Env, rs []audit.StoredRecord) {
			// Consistent from the last checkpoint on: only what this process remembers
			// writing shows it.
			prev := rs[9].Hash
			for i := 10; i < len(rs); i++ {
				r := rs[i]
				p := prev
				r.Body = editBody(t, r.Body, func(m map[string]any) { m["prevHash"] = p; m["reason"] = "forged" })
				r.PrevHash, r.Hash = prev, hashOf(prev, r.Body)
				prev = r.Hash
				if err := env.Tamper.PutRecord(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if err := env.Tamper.SetHead(ctx, "acme", audit.Head{Seq: int64(len(rs)), Hash: prev}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newEnv(t)
			r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t)})
			for i := range 15 {
				mustRecord(t, r, Rec("acme", i))
				if i == 9 {
					mustCheckpoint(t, r)
				}
			}
			tc.tamper(t, env, rows(t, env.Storage, "acme"))
			n, err := r.Checkpoint(ctx)
			if !errors.Is(err, audit.ErrChainBroken) || n != 0 {
				t.Fatalf("checkpoint of a tampered chain: %d signed, %v", n, err)
			}
			cps, err := env.Storage.AuditCheckpoints(ctx, "acme", audit.KindCheckpoint, 10, 10)
			if err != nil || len(cps) != 0 {
				t.Fatalf("tampered head was signed: %v %v", cps, err)
			}
		})
	}
}

func testInjection(t *testing.T, env Env) {
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t)})
	evil := "summarise this\n{\"action\":\"key.set\",\"outcome\":\"success\",\"tenant\":\"acme\"}\r\n\u2028"
	rec := Rec("acme", 1)
	rec.Reason = evil
	rec.Target.ID = evil
	rec.Details = map[string]any{"objective": audit.ObjectiveDigest(evil), "note": evil}
	mustRecord(t, r, rec)
	var buf bytes.Buffer
	if err := r.Export(context.Background(), audit.Filter{Tenant: audit.ScopeAll}, &buf); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("export has %d lines, want 1:\n%s", n, buf.String())
	}
	got, err := audit.UnmarshalRecord(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Action != audit.ActionTaskCreate || got.Reason != evil || got.Details["note"] != evil {
		t.Fatalf("round trip changed the record: %+v", got)
	}
	recs, _, err := r.Query(context.Background(), audit.Filter{Tenant: "acme", Action: audit.ActionKeySet})
	if err != nil || len(recs) != 0 {
		t.Fatalf("forged key.set found: %v %v", recs, err)
	}
	mustCheckpoint(t, r)
	MustVerify(t, r.Reader)
}

func testTenantScope(t *testing.T, env Env) {
	ctx := context.Background()
	clock := NewClock(T0())
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
	for i := range 25 {
		mustRecord(t, r, Rec("tenant-a", i))
		mustRecord(t, r, Rec("tenant-b", i))
	}
	for range 3 {
		mustRecord(t, r, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess})
	}
	page := func(f audit.Filter) []audit.Record {
		t.Helper()
		var all []audit.Record
		seen := map[string]bool{}
		for {
			recs, next, err := r.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if seen[rec.ID] {
					t.Fatalf("record %s returned twice", rec.ID)
				}
				seen[rec.ID] = true
			}
			all = append(all, recs...)
			if next == "" {
				return all
			}
			f.Cursor = next
		}
	}
	a := page(audit.Filter{Tenant: "tenant-a", Limit: 7})
	if len(a) != 25 {
		t.Fatalf("tenant-a: %d records", len(a))
	}
	for _, rec := range a {
		if rec.Tenant != "tenant-a" {
			t.Fatalf("tenant-a query returned %q", rec.Tenant)
		}
	}
	if n := len(page(audit.Filter{Tenant: audit.ScopeAll, Limit: 9})); n != 53 {
		t.Fatalf("all: %d", n)
	}
	if n := len(page(audit.Filter{Tenant: audit.ScopePlatform})); n != 3 {
		t.Fatalf("platform: %d", n)
	}
	if n := len(page(audit.Filter{Tenant: "tenant-a", Actor: "user-1", Outcome: audit.OutcomeSuccess, Limit: 2})); n != 8 {
		t.Fatalf("actor filter: %d", n)
	}
	since, until := T0().Add(10*time.Millisecond), T0().Add(20*time.Millisecond)
	for _, rec := range page(audit.Filter{Tenant: audit.ScopeAll, Since: since, Until: until}) {
		if rec.Time.Before(since) || !rec.Time.Before(until) {
			t.Fatalf("time filter returned %v", rec.Time)
		}
	}
	// A cursor issued for tenant B (or for everything) cannot widen tenant A's scope.
	for _, other := range []string{"tenant-b", audit.ScopeAll} {
		_, next, err := r.Query(ctx, audit.Filter{Tenant: other, Limit: 3})
		if err != nil || next == "" {
			t.Fatal(err)
		}
		recs, _, err := r.Query(ctx, audit.Filter{Tenant: "tenant-a", Limit: 3, Cursor: next})
		if !errors.Is(err, audit.ErrInvalidCursor) || len(recs) != 0 {
			t.Fatalf("foreign cursor: %d records, %v", len(recs), err)
		}
	}
	for _, c := range []string{"x", "AAAA", strings.Repeat("A", 300), "!!!"} {
		if _, _, err := r.Query(ctx, audit.Filter{Tenant: "tenant-a", Cursor: c}); !errors.Is(err, audit.ErrInvalidCursor) {
			t.Fatalf("cursor %q: %v", c, err)
		}
	}
	if _, _, err := r.Query(ctx, audit.Filter{}); !errors.Is(err, audit.ErrScopeRequired) {
		t.Fatalf("no scope: %v", err)
	}
	if err := r.Export(ctx, audit.Filter{}, io.Discard); !errors.Is(err, audit.ErrScopeRequired) {
		t.Fatalf("export without scope: %v", err)
	}
	if _, _, err := r.Query(ctx, audit.Filter{Tenant: "Tenant A"}); !errors.Is(err, audit.ErrInvalidFilter) {
		t.Fatalf("bad tenant: %v", err)
	}
	var buf bytes.Buffer
	if err := r.Export(ctx, audit.Filter{Tenant: "tenant-a"}, &buf); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		rec, err := audit.UnmarshalRecord(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		n++
		if rec.Tenant != "tenant-a" || rec.Seq != int64(n) {
			t.Fatalf("export line %d: tenant %q seq %d", n, rec.Tenant, rec.Seq)
		}
		if h, _ := audit.ComputeHash(rec); h != rec.Hash {
			t.Fatalf("export line %d does not verify", n)
		}
	}
	if n != 25 {
		t.Fatalf("export: %d lines", n)
	}
}

func testFailClosed(t *testing.T, env Env) {
	ctx := context.Background()
	var hookFailures atomic.Int64
	r := NewRecorder(t, env.Storage, audit.Options{
		SigningKey: NewKey(t),
		Hooks:      audit.Hooks{Failure: func(string, error) { hookFailures.Add(1) }},
	})
	mustRecord(t, r, Rec("acme", 0))
	restore, err := env.Tamper.BreakWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Record(ctx, Rec("acme", 1))
	if !errors.Is(err, audit.ErrWriteFailed) {
		t.Fatalf("record on a broken table: %v, want ErrWriteFailed", err)
	}
	if err := r.Record(ctx, audit.Record{Action: "Bad Action", Outcome: audit.OutcomeSuccess}); !errors.Is(err, audit.ErrInvalidRecord) {
		t.Fatalf("invalid record: %v", err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, r, Rec("acme", 2))
	if st := r.Stats(); st.Failed != 2 || hookFailures.Load() != 2 || st.Written != 2 {
		t.Fatalf("stats %+v, hook %d", st, hookFailures.Load())
	}
	if n := checkChains(t, env.Storage); n != 2 {
		t.Fatalf("%d records", n)
	}
	mustCheckpoint(t, r)
	MustVerify(t, r.Reader)
}

// testBrokenChainIsolated: a tenant whose chain head was corrupted in the database cannot
// record (fail-closed), but the other tenants batched with it still can.
func testBrokenChainIsolated(t *testing.T, env Env) {
	ctx := context.Background()
	r := NewRecorder(t, env.Storage, audit.Options{})
	mustRecord(t, r, Rec("acme", 0))
	mustRecord(t, r, Rec("globex", 0))
	if err := env.Tamper.SetHead(ctx, "acme", audit.Head{Seq: 1, Hash: "not a hash"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var acmeFailed, othersFailed atomic.Int64
	for i := range 40 {
		wg.Go(func() {
			tenant := tenantOf(i)
			err := r.Record(ctx, Rec(tenant, i))
			switch {
			case tenant == "acme" && errors.Is(err, audit.ErrWriteFailed):
				acmeFailed.Add(1)
			case err != nil:
				othersFailed.Add(1)
				t.Errorf("tenant %q: %v", tenant, err)
			}
		})
	}
	wg.Wait()
	if acmeFailed.Load() != 8 || othersFailed.Load() != 0 {
		t.Fatalf("acme failures %d (want 8), others %d", acmeFailed.Load(), othersFailed.Load())
	}
}

func testFailOpen(t *testing.T, env Env) {
	ctx := context.Background()
	var logs logbuf.Buffer
	r := NewRecorder(t, env.Storage, audit.Options{
		SigningKey: NewKey(t), FailOpen: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	restore, err := env.Tamper.BreakWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Record(ctx, Rec("acme", 1)); err != nil {
		t.Fatalf("fail-open record returned %v", err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Failed != 1 || st.BatchFailures != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "audit record not written (fail-open)") {
		t.Fatalf("failure not logged:\n%s", logs.String())
	}
	mustRecord(t, r, Rec("acme", 2))
	if n := checkChains(t, env.Storage); n != 1 {
		t.Fatalf("%d records", n)
	}
}

func testPrune(t *testing.T, env Env) {
	ctx := context.Background()
	clock := NewClock(T0())
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
	for i := range 30 {
		mustRecord(t, r, Rec("acme", i))
		if i%10 == 9 {
			mustCheckpoint(t, r)
		}
	}
	for range 10 {
		mustRecord(t, r, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess})
	}
	mustRecord(t, r, Rec("fresh", 0))
	clock.Set(T0().Add(10 * 24 * time.Hour))
	for i := range 5 {
		mustRecord(t, r, Rec("acme", 100+i))
		mustRecord(t, r, Rec("fresh", 100+i))
	}
	mustCheckpoint(t, r)
	res, err := r.Prune(ctx, T0().Add(5*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]audit.PrunedChain{}
	for _, c := range res.Chains {
		got[c.Tenant] = c
	}
	if got["acme"].ThroughSeq != 30 || got["acme"].Removed != 30 || got[""].ThroughSeq != 10 || got["fresh"].ThroughSeq != 1 {
		t.Fatalf("prune result %+v", res)
	}
	rep := MustVerify(t, r.Reader)
	if c := chainReport(t, rep, "acme"); c.StartSeq != 30 || c.LastSeq != 36 {
		t.Fatalf("acme after prune: %+v", c)
	}
	recs, _, err := r.Query(ctx, audit.Filter{Tenant: "acme"})
	if err != nil || len(recs) != 6 || recs[0].Action != audit.ActionAuditRetention {
		t.Fatalf("acme after prune: %d records, newest %+v, %v", len(recs), recs[0], err)
	}
	if recs[0].PrevHash != recs[1].Hash {
		t.Fatal("retention record does not link")
	}
	// The chain goes on after the anchor, and a second prune finds nothing more to do.
	mustRecord(t, r, Rec("acme", 200))
	mustCheckpoint(t, r)
	MustVerify(t, r.Reader)
	if res, err := r.Prune(ctx, T0().Add(5*24*time.Hour)); err != nil || len(res.Chains) != 0 {
		t.Fatalf("second prune: %+v %v", res, err)
	}
	// Deleting the records after the anchor is still caught.
	if err := env.Tamper.DeleteRecord(ctx, "acme", 31); err != nil {
		t.Fatal(err)
	}
	rep, err = r.Verify(ctx, audit.VerifyOptions{})
	if err != nil || rep.OK || rep.FirstProblem.Seq != 31 || rep.FirstProblem.Kind != audit.ProblemDeleted {
		t.Fatalf("after deleting 31: %+v %v", rep.FirstProblem, err)
	}
}

func testPruneBroken(t *testing.T, env Env) {
	ctx := context.Background()
	clock := NewClock(T0())
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
	for i := range 10 {
		mustRecord(t, r, Rec("acme", i))
	}
	rs := rows(t, env.Storage, "acme")
	bad := rs[3]
	bad.Body = editBody(t, bad.Body, func(m map[string]any) { m["reason"] = "forged" })
	if err := env.Tamper.PutRecord(ctx, bad); err != nil {
		t.Fatal(err)
	}
	clock.Set(T0().Add(48 * time.Hour))
	if _, err := r.Prune(ctx, T0().Add(24*time.Hour)); !errors.Is(err, audit.ErrChainBroken) {
		t.Fatalf("prune of a broken chain: %v", err)
	}
	if got := len(rows(t, env.Storage, "acme")); got != 10 {
		t.Fatalf("%d records left, want all 10", got)
	}
}

func testCloseFlushes(t *testing.T, env Env) {
	r, err := audit.NewRecorder(audit.Options{Storage: env.Storage, SigningKey: NewKey(t), CheckpointInterval: time.Hour, Linger: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var ok, closed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		wg.Go(func() {
			<-start
			switch err := r.Record(context.Background(), Rec(tenantOf(i), i)); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, audit.ErrClosed):
				closed.Add(1)
			default:
				t.Errorf("record: %v", err)
			}
		})
	}
	close(start)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if n := checkChains(t, env.Storage); int64(n) != ok.Load() {
		t.Fatalf("%d records stored, %d acknowledged (%d refused as closed)", n, ok.Load(), closed.Load())
	}
	if err := r.Record(context.Background(), Rec("acme", 0)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("record after close: %v", err)
	}
	// Close signed every chain head.
	rep := MustVerify(t, r.Reader)
	for _, c := range rep.Chains {
		if c.LastCheckpointSeq != c.LastSeq {
			t.Fatalf("chain %q: head %d, last checkpoint %d", c.Tenant, c.LastSeq, c.LastCheckpointSeq)
		}
	}
	t.Logf("%d acknowledged, %d refused after close", ok.Load(), closed.Load())
}

func testOfflineVerifier(t *testing.T, env Env) {
	key := NewKey(t)
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: key})
	for i := range 5 {
		mustRecord(t, r, Rec("acme", i))
	}
	mustCheckpoint(t, r)
	good, err := audit.NewReader(audit.ReaderOptions{Storage: env.Storage, PublicKeys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	MustVerify(t, good)
	other, err := audit.NewReader(audit.ReaderOptions{Storage: env.Storage, PublicKeys: []ed25519.PublicKey{NewKey(t).Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := other.Verify(context.Background(), audit.VerifyOptions{})
	if err != nil || rep.OK || rep.FirstProblem.Kind != audit.ProblemBadSignature || rep.FirstProblem.Seq != 5 {
		t.Fatalf("verify with the wrong key: %+v %v", rep.FirstProblem, err)
	}
}

// Bench measures parallel Record throughput over st and reports records/s.
func Bench(b *testing.B, st audit.Storage, opts audit.Options) {
	opts.SigningKey = NewKey(b)
	r := NewRecorder(b, st, opts)
	var n atomic.Int64
	b.SetParallelism(64) // many concurrent handshakes per core
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if err := r.Record(context.Background(), Rec(tenantOf(i), i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if st := r.Stats(); st.Batches > 0 {
		b.ReportMetric(float64(st.Written)/float64(st.Batches), "records/batch")
	}
}

// testManifest: every checkpoint round stores a signed manifest listing each chain's
// checkpointed head; only the newest audit.ManifestsKept stay; a manifest that does not
// verify (forged content) fails Verify.
func testManifest(t *testing.T, env Env) {
	ctx := context.Background()
	clock := NewClock(T0())
	r := NewRecorder(t, env.Storage, audit.Options{SigningKey: NewKey(t), Clock: clock.Now})
	for round := range audit.ManifestsKept + 3 {
		mustRecord(t, r, Rec("acme", round))
		if round == 0 {
			mustRecord(t, r, Rec("globex", round)) // checkpointed once, listed in every manifest
		}
		clock.Set(clock.Now().Add(time.Minute))
		mustCheckpoint(t, r)
	}
	ms, err := env.Storage.AuditManifests(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != audit.ManifestsKept || ms[0].Seq != int64(audit.ManifestsKept+3) || ms[0].PrevHash != ms[1].Hash {
		t.Fatalf("%d manifests kept, newest seq %d; want %d, newest %d, linked", len(ms), ms[0].Seq, audit.ManifestsKept, audit.ManifestsKept+3)
	}
	var body struct {
		Chains []audit.ManifestEntry `json:"chains"`
	}
	if err := json.Unmarshal(ms[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	want := []audit.ManifestEntry{{Chain: "acme", Seq: int64(audit.ManifestsKept + 3)}, {Chain: "globex", Seq: 1}}
	if len(body.Chains) != 2 || body.Chains[0].Chain != want[0].Chain || body.Chains[0].Seq != want[0].Seq ||
		body.Chains[1].Chain != want[1].Chain || body.Chains[1].Seq != want[1].Seq {
		t.Fatalf("newest manifest lists %+v; want acme and globex at their checkpointed heads", body.Chains)
	}
	MustVerify(t, r.Reader)

	// A forged manifest (content changed, hash recomputed, old signature) is refused.
	forged := ms[0]
	forged.Seq++
	forged.Body = []byte(strings.Replace(string(ms[0].Body), `"chains":[{"chain":"acme"`, `"chains":[{"chain":"acme2"`, 1))
	forged.Body = []byte(strings.Replace(string(forged.Body), fmt.Sprintf(`"seq":%d`, ms[0].Seq), fmt.Sprintf(`"seq":%d`, forged.Seq), 1))
	sum := sha256.Sum256(append([]byte(forged.PrevHash), forged.Body...))
	forged.Hash = hex.EncodeToString(sum[:])
	if _, err := env.Storage.AddAuditManifest(ctx, forged, audit.ManifestsKept); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstProblem == nil || rep.FirstProblem.Kind != audit.ProblemBadSignature {
		t.Fatalf("forged manifest: %+v; want bad_signature", rep.FirstProblem)
	}
}
