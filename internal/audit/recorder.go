package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors of the Recorder.
var (
	// ErrClosed: the Recorder is closed; nothing more is recorded.
	ErrClosed = errors.New("audit: recorder closed")
	// ErrWriteFailed wraps every storage failure of an append: the record is not durable.
	ErrWriteFailed = errors.New("audit: record not written")
	// ErrNoSigningKey: checkpoints and pruning need the Ed25519 checkpoint key.
	ErrNoSigningKey = errors.New("audit: no checkpoint signing key")
)

// Defaults and bounds of Options.
const (
	DefaultCheckpointInterval = time.Minute
	DefaultMaxBatch           = 256
	MaxMaxBatch               = 1024
	MaxLinger                 = 2 * time.Millisecond
	// busyWindow is how long after a batch of several records the recorder counts as busy
	// (and lingers); see runWriter.
	busyWindow           = 100 * time.Millisecond
	DefaultQueueSize     = 4096
	MaxQueueSize         = 1 << 16
	DefaultWriteTimeout  = 10 * time.Second
	DefaultPruneInterval = 6 * time.Hour
	// maxRemembered bounds the per-chain memory of what this process wrote last.
	maxRemembered = 100_000
)

// Options configures NewRecorder.
type Options struct {
	Storage Storage // required

	// SigningKey signs checkpoints and anchors (audit.checkpoint_key_file). Without it there are
	// no checkpoints and Prune fails; a warning is logged.
	SigningKey ed25519.PrivateKey
	// VerifyKeys are extra public keys accepted when verifying (retired checkpoint keys).
	VerifyKeys []ed25519.PublicKey

	// FailOpen inverts audit.fail_closed. The zero value is fail-closed: Record returns an error
	// when the record is not durable and the caller must refuse the action. With FailOpen, the
	// failure is logged and counted and Record returns nil.
	FailOpen bool

	// CheckpointInterval is audit.checkpoint_interval: 0 = DefaultCheckpointInterval, < 0 = only
	// at Close and on explicit Checkpoint calls.
	CheckpointInterval time.Duration

	// Retention is audit.retention: when > 0, the background loop prunes records older than
	// this (see Prune) once per PruneInterval (0 = 6h), the first time one PruneInterval after
	// start. 0 = no automatic pruning (the zero value never deletes evidence). Needs SigningKey.
	Retention     time.Duration
	PruneInterval time.Duration

	// Group commit: one transaction takes up to MaxBatch queued records (0 = 256, at most 1024);
	// Linger (0 = none, at most 2ms) is how long a batch's first record waits for more to join
	// it, when the previous batch had more than one record (an idle recorder writes at once).
	// QueueSize bounds the records waiting (0 = 4096, at most 65536); Record blocks (until its
	// ctx ends) while the queue is full. WriteTimeout bounds one append transaction (0 = 10s).
	MaxBatch     int
	Linger       time.Duration
	QueueSize    int
	WriteTimeout time.Duration

	Logger *slog.Logger     // nil = discard
	Clock  func() time.Time // nil = time.Now
	Hooks  Hooks            // metrics
}

// Hooks let the metrics package observe the Recorder without this package importing it. Each is
// optional and must be fast and safe for concurrent use.
type Hooks struct {
	// Batch is called after every append transaction: records in it, how long it took, and
	// its error (nil when committed).
	Batch func(records int, d time.Duration, err error)
	// Failure is called once for every Record call that did not make its record durable, in
	// either fail mode, with the record's action ("invalid" if malformed).
	Failure func(action string, err error)
	// Checkpoint is called after every checkpoint run with the number of chains signed and the
	// run's error.
	Checkpoint func(chains int, err error)
}

// Stats are cumulative counters since NewRecorder.
type Stats struct {
	Written            uint64 // records committed
	Failed             uint64 // Record calls that did not make their record durable
	Batches            uint64 // append transactions committed
	BatchFailures      uint64 // append transactions that failed
	Checkpoints        uint64 // checkpoints signed
	CheckpointFailures uint64 // checkpoint runs that failed (wholly or for a chain)
	Queued             int    // records waiting now
}

// Recorder appends records with group commit and signs checkpoints. It also reads (Verify,
// Query, Export) through its embedded Reader. Safe for concurrent use; Close it.
type Recorder struct {
	*Reader

	st           Storage
	signer       ed25519.PrivateKey
	failOpen     bool
	maxBatch     int
	linger       time.Duration
	writeTimeout time.Duration
	cpInterval   time.Duration
	retention    time.Duration
	pruneEvery   time.Duration
	logger       *slog.Logger
	clock        func() time.Time
	hooks        Hooks

	queue chan *request
	mu    sync.RWMutex // guards closed against sends on a closed queue
	// closed is set once, under mu, when Close starts.
	closed    bool
	closeOnce sync.Once
	stopCP    chan struct{}
	wg        sync.WaitGroup

	cpMu sync.Mutex // one checkpoint or prune run at a time in this process

	rememberMu sync.Mutex
	remembered map[string]Head // last record this process wrote, per chain

	written, failed, batches, batchFailures, checkpoints, checkpointFailures atomic.Uint64
}

type request struct {
	tmpl *template
	done chan error // buffered: the writer never blocks on a caller that gave up
}

// NewRecorder starts the writer (and, with a signing key and a positive interval, the
// checkpoint loop). Close stops both.
func NewRecorder(opts Options) (*Recorder, error) {
	if opts.Storage == nil {
		return nil, errors.New("audit: recorder needs a storage")
	}
	if opts.SigningKey != nil && len(opts.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: malformed ed25519 signing key")
	}
	r := &Recorder{
		st: opts.Storage, signer: opts.SigningKey, failOpen: opts.FailOpen,
		maxBatch: opts.MaxBatch, linger: opts.Linger, writeTimeout: opts.WriteTimeout,
		cpInterval: opts.CheckpointInterval, retention: opts.Retention, pruneEvery: opts.PruneInterval,
		logger: opts.Logger, clock: opts.Clock, hooks: opts.Hooks,
		stopCP: make(chan struct{}), remembered: map[string]Head{},
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.clock == nil {
		r.clock = time.Now
	}
	switch {
	case r.maxBatch <= 0:
		r.maxBatch = DefaultMaxBatch
	case r.maxBatch > MaxMaxBatch:
		r.maxBatch = MaxMaxBatch
	}
	r.linger = min(max(r.linger, 0), MaxLinger)
	if r.writeTimeout <= 0 {
		r.writeTimeout = DefaultWriteTimeout
	}
	if r.cpInterval == 0 {
		r.cpInterval = DefaultCheckpointInterval
	}
	if r.pruneEvery <= 0 {
		r.pruneEvery = DefaultPruneInterval
	}
	qs := opts.QueueSize
	switch {
	case qs <= 0:
		qs = DefaultQueueSize
	case qs > MaxQueueSize:
		qs = MaxQueueSize
	}
	r.queue = make(chan *request, qs)

	keys := slices.Clone(opts.VerifyKeys)
	if r.signer != nil {
		keys = append(keys, r.signer.Public().(ed25519.PublicKey))
	}
	reader, err := NewReader(ReaderOptions{Storage: opts.Storage, PublicKeys: keys, Logger: r.logger})
	if err != nil {
		return nil, err
	}
	r.Reader = reader
	if r.signer == nil {
		r.logger.Warn("audit: no checkpoint key configured; chains are not signed")
	}

	r.wg.Add(1)
	go r.runWriter()
	if r.signer != nil && (r.cpInterval > 0 || r.retention > 0) {
		r.wg.Add(1)
		go r.runMaintenance()
	} else if r.retention > 0 {
		r.logger.Warn("audit: retention needs the checkpoint key; records are never pruned")
	}
	return r, nil
}

// Record appends rec to its tenant's chain and returns once it is durable. In fail-closed mode
// (the default) any failure is returned and the caller must refuse the audited action; in
// fail-open mode failures are logged and counted and Record returns nil.
//
// If ctx ends after the record was queued, Record returns ctx's error although the record
// may still be written.
func (r *Recorder) Record(ctx context.Context, rec Record) error {
	err := r.record(ctx, rec)
	if err == nil {
		return nil
	}
	r.failed.Add(1)
	// The action may be anything a buggy caller passed; keep metric labels bounded.
	action := rec.Action
	if len(action) > MaxActionBytes || !actionRE.MatchString(action) {
		action = "invalid"
	}
	if r.hooks.Failure != nil {
		r.hooks.Failure(action, err)
	}
	if r.failOpen {
		r.logger.ErrorContext(ctx, "audit record not written (fail-open)",
			"action", action, "tenant", bound(rec.Tenant, 64), "err", err)
		return nil
	}
	return err
}

func (r *Recorder) record(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := normalize(rec)
	if err != nil {
		return err
	}
	now := r.clock()
	if n.ID == "" {
		n.ID = newID(now)
	}
	if n.Time.IsZero() {
		n.Time = now.UTC().Truncate(time.Millisecond)
	}
	tmpl, err := newTemplate(n)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	req := &request{tmpl: tmpl, done: make(chan error, 1)}
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return ErrClosed
	}
	select {
	case r.queue <- req:
		r.mu.RUnlock()
	case <-ctx.Done():
		r.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters.
func (r *Recorder) Stats() Stats {
	return Stats{
		Written: r.written.Load(), Failed: r.failed.Load(), Batches: r.batches.Load(),
		BatchFailures: r.batchFailures.Load(), Checkpoints: r.checkpoints.Load(),
		CheckpointFailures: r.checkpointFailures.Load(), Queued: len(r.queue),
	}
}

// Close stops accepting records, writes everything queued, stops the checkpoint loop and signs
// a final checkpoint of every chain. It returns ctx's error if that takes too long (the
// goroutines still finish on their own).
func (r *Recorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.queue)
		r.mu.Unlock()
		close(r.stopCP)
	})
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
	if r.signer == nil {
		return nil
	}
	if _, err := r.Checkpoint(ctx); err != nil {
		return fmt.Errorf("audit: final checkpoint: %w", err)
	}
	return nil
}

// runWriter is the group-commit loop: it takes whatever is queued (up to maxBatch, waiting at
// most linger for a batch to fill) and writes it in one transaction. While a transaction runs
// the next batch accumulates, so batches grow with the load without delaying a lone record.
func (r *Recorder) runWriter() {
	defer r.wg.Done()
	batch := make([]*request, 0, r.maxBatch)
	var timer *time.Timer
	// A batch lingers only while the recorder is busy: within busyWindow of a batch that had
	// company. A lone record on a quiet recorder is written at once (a swarm waits for its
	// task.create record); under a burst (a reconnect storm's session.open records)
	// lingering turns many small transactions into a few large ones.
	var lastCrowded time.Time
	open := true
	// take adds a request received from the queue; false once the queue is closed (this
	// batch is then the last).
	take := func(req *request, ok bool) bool {
		if !ok {
			open = false
			return false
		}
		batch = append(batch, req)
		return true
	}
	for {
		req, ok := <-r.queue
		if !ok {
			return
		}
		batch = append(batch[:0], req)
		// The linger is counted from the batch's first record, not reset by each arrival:
		// a steady trickle must not hold that record until the batch is full.
		lingering := false
	fill:
		for len(batch) < r.maxBatch {
			select {
			case req, ok := <-r.queue:
				if !take(req, ok) {
					break fill
				}
				continue
			default:
			}
			if r.linger <= 0 || time.Since(lastCrowded) > busyWindow {
				break
			}
			if !lingering {
				lingering = true
				if timer == nil {
					timer = time.NewTimer(r.linger)
				} else {
					timer.Reset(r.linger)
				}
			}
			select {
			case req, ok := <-r.queue:
				if !take(req, ok) {
					break fill
				}
			case <-timer.C:
				lingering = false
				break fill
			}
		}
		if lingering {
			timer.Stop()
		}
		if len(batch) > 1 {
			lastCrowded = time.Now()
		}
		r.write(batch)
		clear(batch) // drop references to delivered requests
		if !open {
			return
		}
	}
}

// write appends one batch: records grouped per chain, chains in sorted order (so that
// concurrent appenders in other processes lock heads in the same order), one transaction. If
// that fails and the batch spans several chains, each chain is retried in its own transaction
// (sharing one more WriteTimeout), so that one tenant's broken chain does not refuse every
// other tenant's actions.
func (r *Recorder) write(batch []*request) {
	byChain := map[string][]*request{}
	for _, req := range batch {
		c := req.tmpl.rec.Tenant
		byChain[c] = append(byChain[c], req)
	}
	chains := make([]string, 0, len(byChain))
	for c := range byChain {
		chains = append(chains, c)
	}
	slices.Sort(chains)

	ctx, cancel := context.WithTimeout(context.Background(), r.writeTimeout)
	err := r.appendChains(ctx, chains, byChain, len(batch))
	cancel()
	if err == nil || len(chains) == 1 {
		deliver(batch, err)
		return
	}
	ctx, cancel = context.WithTimeout(context.Background(), r.writeTimeout)
	defer cancel()
	for _, c := range chains {
		reqs := byChain[c]
		deliver(reqs, r.appendChains(ctx, []string{c}, byChain, len(reqs)))
	}
}

func deliver(reqs []*request, err error) {
	for _, req := range reqs {
		req.done <- err
	}
}

// appendChains writes the requests of chains in one transaction.
func (r *Recorder) appendChains(ctx context.Context, chains []string, byChain map[string][]*request, n int) error {
	var heads map[string]Head
	seal := func(locked map[string]Head) ([]StoredRecord, error) {
		out := make([]StoredRecord, 0, n)
		heads = make(map[string]Head, len(chains))
		for _, c := range chains {
			h, ok := locked[c]
			if !ok {
				return nil, fmt.Errorf("audit: storage returned no head for chain %s", chainName(c))
			}
			for _, req := range byChain[c] {
				sr, err := req.tmpl.seal(h)
				if err != nil {
					return nil, err
				}
				h = Head{Seq: sr.Seq, Hash: sr.Hash}
				out = append(out, sr)
			}
			heads[c] = h
		}
		return out, nil
	}
	t0 := time.Now()
	err := r.st.AppendAudit(ctx, chains, seal)
	if r.hooks.Batch != nil {
		r.hooks.Batch(n, time.Since(t0), err)
	}
	if err != nil {
		r.batchFailures.Add(1)
		r.logger.Error("audit append failed", "records", n, "chains", len(chains), "err", err)
		return fmt.Errorf("%w: %w", ErrWriteFailed, err)
	}
	r.batches.Add(1)
	r.written.Add(uint64(n))
	r.remember(heads)
	return nil
}

func (r *Recorder) remember(heads map[string]Head) {
	r.rememberMu.Lock()
	defer r.rememberMu.Unlock()
	for c, h := range heads {
		if _, ok := r.remembered[c]; !ok && len(r.remembered) >= maxRemembered {
			continue
		}
		r.remembered[c] = h
	}
}

func (r *Recorder) rememberedHeads() map[string]Head {
	r.rememberMu.Lock()
	defer r.rememberMu.Unlock()
	return maps.Clone(r.remembered)
}

// runMaintenance signs checkpoints every cpInterval and prunes every pruneEvery.
func (r *Recorder) runMaintenance() {
	defer r.wg.Done()
	// ctx ends when Close starts, interrupting a run in progress.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watcher sync.WaitGroup
	defer watcher.Wait()
	watcher.Go(func() {
		<-r.stopCP
		cancel()
	})
	var cpTick, pruneTick <-chan time.Time
	if r.cpInterval > 0 {
		t := time.NewTicker(r.cpInterval)
		defer t.Stop()
		cpTick = t.C
	}
	if r.retention > 0 {
		t := time.NewTicker(r.pruneEvery)
		defer t.Stop()
		pruneTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-cpTick:
			if _, err := r.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				r.logger.Error("audit checkpoint failed", "err", err)
			}
		case <-pruneTick:
			res, err := r.Prune(ctx, r.clock().Add(-r.retention))
			if err != nil && ctx.Err() == nil {
				r.logger.Error("audit prune failed", "err", err)
			}
			for _, c := range res.Chains {
				r.logger.Info("audit records pruned", "chain", chainName(c.Tenant), "through_seq", c.ThroughSeq, "removed", c.Removed)
			}
		}
	}
}
