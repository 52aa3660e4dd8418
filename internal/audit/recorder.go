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
	DefaultQueueSize          = 4096
	MaxQueueSize              = 1 << 16
	DefaultWriteTimeout       = 10 * time.Second
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

	// Group commit: one transaction takes up to MaxBatch queued records (0 = 256, at most 1024);
	// Linger (0 = none, at most 2ms) is how long a batch that is not full waits for more.
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
	// either fail mode.
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
		cpInterval: opts.CheckpointInterval, logger: opts.Logger, clock: opts.Clock, hooks: opts.Hooks,
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
	if r.signer != nil && r.cpInterval > 0 {
		r.wg.Add(1)
		go r.runCheckpoints()
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
	if r.hooks.Failure != nil {
		r.hooks.Failure(rec.Action, err)
	}
	if r.failOpen {
		r.logger.ErrorContext(ctx, "audit record not written (fail-open)",
			"action", bound(rec.Action, MaxActionBytes), "tenant", bound(rec.Tenant, 64), "err", err)
		return nil
	}
	return err
}

func (r *Recorder) record(ctx context.Context, rec Record) error {
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
	for {
		req, ok := <-r.queue
		if !ok {
			return
		}
		batch = append(batch[:0], req)
		open := true
	fill:
		for len(batch) < r.maxBatch {
			select {
			case req, ok := <-r.queue:
				if !ok {
					open = false
					break fill
				}
				batch = append(batch, req)
				continue
			default:
			}
			if r.linger <= 0 {
				break
			}
			if timer == nil {
				timer = time.NewTimer(r.linger)
			} else {
				timer.Reset(r.linger)
			}
			select {
			case req, ok := <-r.queue:
				timer.Stop()
				if !ok {
					open = false
					break fill
				}
				batch = append(batch, req)
			case <-timer.C:
				break fill
			}
		}
		r.write(batch)
		clear(batch) // drop references to delivered requests
		if !open {
			return
		}
	}
}

// write appends one batch: records grouped per chain, chains in sorted order (so that
// concurrent appenders in other processes lock heads in the same order), one transaction.
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
	var heads map[string]Head
	seal := func(locked map[string]Head) ([]StoredRecord, error) {
		out := make([]StoredRecord, 0, len(batch))
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
	ctx, cancel := context.WithTimeout(context.Background(), r.writeTimeout)
	t0 := time.Now()
	err := r.st.AppendAudit(ctx, chains, seal)
	cancel()
	d := time.Since(t0)
	if r.hooks.Batch != nil {
		r.hooks.Batch(len(batch), d, err)
	}
	if err != nil {
		r.batchFailures.Add(1)
		r.logger.Error("audit append failed", "records", len(batch), "chains", len(chains), "err", err)
		err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
	} else {
		r.batches.Add(1)
		r.written.Add(uint64(len(batch)))
		r.remember(heads)
	}
	for _, req := range batch {
		req.done <- err
	}
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

func (r *Recorder) runCheckpoints() {
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
	t := time.NewTicker(r.cpInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				r.logger.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}
