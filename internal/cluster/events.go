package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/task/record"
)

// Each task's events live in the stream fg:ev:<taskId>, one entry per event with the
// stream id "<seq>-0", so resuming by seq is resuming by stream id.
func streamKey(taskID string) string { return "fg:ev:" + taskID }

func streamID(seq int64) string { return strconv.FormatInt(seq, 10) + "-0" }

func seqOf(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

var finalPrefix = []byte(`{"type":"` + protocol.TypeTaskComplete + `"`)

// isFinal reports whether a frame is the gateway's own task_complete (engines cannot forge
// one: theirs arrive wrapped in engine_event).
func isFinal(frame []byte) bool { return bytes.HasPrefix(frame, finalPrefix) }

// publisher copies the events of this node's tasks into Redis. It reads each task's log
// through an exempt subscription, so it never slows an engine; while Redis is down its
// cursors simply stand still, and it resumes where it stopped when Redis returns.
type publisher struct {
	c    *Cluster
	wake chan struct{}
	// rewind is set after a failed write: Redis may have lost streams (a restart without
	// persistence), so every live task is published again from its first event; entries
	// that survived are refused as duplicates, which is harmless.
	rewind bool

	mu    sync.Mutex
	all   map[*pubSub]struct{}
	dirty map[*pubSub]struct{}
}

type pubSub struct {
	p   *publisher
	mu  sync.Mutex
	sub *task.Subscription
}

func newPublisher(c *Cluster) *publisher {
	return &publisher{c: c, wake: make(chan struct{}, 1), all: map[*pubSub]struct{}{}, dirty: map[*pubSub]struct{}{}}
}

func (ps *pubSub) Notify() {
	p := ps.p
	p.mu.Lock()
	p.dirty[ps] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (ps *pubSub) SlowConsumer() {} // exempt subscriptions are never slow

// Publish implements task.Cluster.
func (c *Cluster) Publish(t *task.Task) {
	p := c.pub
	ps := &pubSub{p: p}
	p.mu.Lock()
	p.all[ps] = struct{}{}
	p.mu.Unlock()
	sub := t.Manager().Watch(t, ps)
	ps.mu.Lock()
	ps.sub = sub
	ps.mu.Unlock()
	ps.Notify()
}

func (p *publisher) wakeAll() {
	p.mu.Lock()
	for ps := range p.all {
		p.dirty[ps] = struct{}{}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

const (
	pubBatchFrames = 512
	pubBatchBytes  = 1 << 20
)

func (p *publisher) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var frames [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		for {
			p.mu.Lock()
			if p.rewind {
				p.rewind = false
				for ps := range p.all {
					ps.mu.Lock()
					if ps.sub != nil {
						ps.sub.Rewind()
					}
					ps.mu.Unlock()
					p.dirty[ps] = struct{}{}
				}
			}
			batch := make([]*pubSub, 0, len(p.dirty))
			for ps := range p.dirty {
				batch = append(batch, ps)
			}
			clear(p.dirty)
			p.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			if err := p.flush(ctx, batch, &frames); err != nil {
				p.mu.Lock()
				for _, ps := range batch {
					p.dirty[ps] = struct{}{}
				}
				p.rewind = true
				p.mu.Unlock()
				p.c.healthy.Store(false)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
	}
}

type pending struct {
	ps        *pubSub
	sub       *task.Subscription
	first     int64
	last, end int64
	n         int
	final     bool
}

// flush writes one batch per task in a single pipeline, then advances each cursor.
func (p *publisher) flush(ctx context.Context, batch []*pubSub, frames *[][]byte) error {
	c := p.c
	var todo []pending
	pipe := c.rdb.Pipeline()
	for _, ps := range batch {
		ps.mu.Lock()
		sub := ps.sub
		ps.mu.Unlock()
		if sub == nil {
			continue
		}
		var last, end int64
		*frames, last, end = sub.Pending((*frames)[:0], pubBatchFrames, pubBatchBytes)
		if len(*frames) == 0 {
			p.finishIfDone(ps, sub)
			continue
		}
		first := last - int64(len(*frames)) + 1
		key := streamKey(sub.Task().ID)
		final := false
		for i, f := range *frames {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: streamID(first + int64(i)), MaxLen: c.opts.StreamMaxLen, Approx: true, Values: []any{"f", f}})
			final = final || isFinal(f)
		}
		if final {
			pipe.PExpire(ctx, key, c.opts.EventTTL)
		} else {
			pipe.PExpire(ctx, key, c.opts.EventTTL+24*time.Hour) // a crashed publisher leaves nothing forever
		}
		todo = append(todo, pending{ps: ps, sub: sub, first: first, last: last, end: end, n: len(*frames), final: final})
	}
	if len(todo) == 0 {
		return nil
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil && !onlyStaleIDs(cmds) {
		return err
	}
	for _, w := range todo {
		sub := w.sub
		sub.Advance(w.last, w.end)
		if sub.HasPending() {
			w.ps.Notify()
		}
		p.finishIfDone(w.ps, sub)
	}
	return nil
}

// onlyStaleIDs reports whether every failed command was an XADD refused because the id
// already exists: a replay after a partial failure, which is fine.
func onlyStaleIDs(cmds []redis.Cmder) bool {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !strings.Contains(err.Error(), "equal or smaller") {
			return false
		}
	}
	return len(cmds) > 0
}

func (p *publisher) finishIfDone(ps *pubSub, sub *task.Subscription) {
	if !sub.Finished() {
		return
	}
	sub.Close()
	p.mu.Lock()
	delete(p.all, ps)
	delete(p.dirty, ps)
	p.mu.Unlock()
}

// Follow implements task.Cluster: replay with XRANGE, then follow with blocking XREAD,
// until the final event or ctx ends. Redis errors are retried with backoff.
func (c *Cluster) Follow(ctx context.Context, taskID string, afterSeq int64, sink func(seq int64, frame []byte)) error {
	key := streamKey(taskID)
	last := streamID(afterSeq)
	backoff := 100 * time.Millisecond
	retry := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Debug("cluster: follow", "task", taskID, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		return nil
	}
	deliver := func(msgs []redis.XMessage) bool {
		for _, m := range msgs {
			f, _ := m.Values["f"].(string)
			last = m.ID
			sink(seqOf(m.ID), []byte(f))
			if isFinal([]byte(f)) {
				return true
			}
		}
		return false
	}
	idle := 0
	for {
		msgs, err := c.rdb.XRangeN(ctx, key, "("+last, "+", 512).Result()
		if err != nil {
			if r := retry(err); r != nil {
				return r
			}
			continue
		}
		backoff = 100 * time.Millisecond
		if deliver(msgs) {
			return nil
		}
		if len(msgs) == 512 {
			continue
		}
		res, err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Block: 5 * time.Second, Count: 512}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			// Nothing new for 5 s: a stream that does not exist at all has expired or was
			// never published (the caller then asks the store).
			if n, err := c.rdb.Exists(ctx, key).Result(); err == nil && n == 0 {
				if idle++; idle >= 2 {
					return ErrNoStream
				}
			}
			continue
		case err != nil:
			if r := retry(err); r != nil {
				return r
			}
			continue
		}
		idle = 0
		for _, s := range res {
			if deliver(s.Messages) {
				return nil
			}
		}
	}
}

// ErrNoStream is a task whose event stream does not exist (expired or never published).
var ErrNoStream = errors.New("cluster: task has no event stream")

// LastSeq implements task.Cluster.
func (c *Cluster) LastSeq(ctx context.Context, taskID string) (int64, error) {
	msgs, err := c.rdb.XRevRangeN(ctx, streamKey(taskID), "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("cluster: last seq: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	return seqOf(msgs[0].ID), nil
}

// endStream appends the final event the store recorded for an interrupted task (its
// task_complete, at t.LastSeq) to the task's stream.
func (c *Cluster) endStream(ctx context.Context, t record.Task) error {
	frame := task.InterruptedFrame(t)
	key := streamKey(t.ID)
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: streamID(t.LastSeq), Values: []any{"f", frame}})
		p.PExpire(ctx, key, c.opts.EventTTL)
		return nil
	})
	return err
}

// saveStream copies the events of a task's stream that the event log does not have yet (a
// node killed between publishing and writing them) into the log.
func (c *Cluster) saveStream(ctx context.Context, taskID string) error {
	last, err := c.opts.Store.LastEventSeq(ctx, taskID)
	if err != nil {
		return err
	}
	for {
		msgs, err := c.rdb.XRangeN(ctx, streamKey(taskID), "("+streamID(last), "+", 512).Result()
		if err != nil {
			return fmt.Errorf("cluster: read stream: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		evs := make([]record.Event, 0, len(msgs))
		for _, m := range msgs {
			f, _ := m.Values["f"].(string)
			last = seqOf(m.ID)
			evs = append(evs, record.Event{TaskID: taskID, Seq: last, Frame: []byte(f)})
		}
		if err := c.opts.Store.AppendEvents(ctx, evs); err != nil {
			return err
		}
	}
}
