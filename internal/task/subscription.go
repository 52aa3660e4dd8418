package task

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Subscriber is the session side of a subscription.
type Subscriber interface {
	// Notify says new frames may be pending. It must not block.
	Notify()
	// SlowConsumer says the subscriber fell too far behind for too long; the session closes
	// with 1008 "slow consumer". It must not block.
	SlowConsumer()
}

// Subscription is one subscriber's cursor into a task's event log. The session's writer
// pulls frames with Pending and confirms them with Advance; nothing is copied per
// subscriber, so a thousand subscribers of one task cost a thousand cursors.
type Subscription struct {
	task   *Task
	sub    Subscriber
	owner  bool
	exempt bool // the cluster publisher: never holds the engine back, never "slow"

	cursor      atomic.Int64 // highest seq written to the client
	cursorBytes atomic.Int64 // cumulative log bytes through cursor
	live        atomic.Bool  // has caught up with the head at least once
	progress    chan struct{}
	gone        chan struct{}
	closed      atomic.Bool

	maxMsgs  int64
	maxBytes int64
}

// Task returns the subscribed task.
func (s *Subscription) Task() *Task { return s.task }

// Pending appends to dst up to maxFrames frames after the cursor, stopping early past maxBytes,
// and returns them with the seq and cumulative bytes of the last one. The frames are
// immutable and stay valid after the call.
func (s *Subscription) Pending(dst [][]byte, maxFrames int, maxBytes int) (frames [][]byte, lastSeq, lastEnd int64) {
	t := s.task
	from := s.cursor.Load()
	if from >= t.headSeq.Load() {
		return dst, from, s.cursorBytes.Load()
	}
	t.mu.RLock()
	log, base := t.log, t.base
	t.mu.RUnlock()
	lastSeq, lastEnd = from, s.cursorBytes.Load()
	if from < base && !t.remote {
		return dst, lastSeq, lastEnd // they left memory: ReadStored
	}
	// A mirror whose stream was trimmed starts after base: events before it are gone.
	start := max(from-base, 0)
	size := 0
	for i := start; i < int64(len(log)) && len(dst) < maxFrames; i++ {
		e := log[i]
		if size > 0 && size+len(e.frame) > maxBytes {
			break
		}
		dst = append(dst, e.frame)
		size += len(e.frame)
		lastSeq, lastEnd = base+i+1, e.end
	}
	return dst, lastSeq, lastEnd
}

// Stored reports whether the next events after the cursor have left memory (a resume from
// far behind a long task's head): ReadStored serves them from the event log, Pending does
// not. Once false it stays false: a task never drops what a subscriber has not passed.
func (s *Subscription) Stored() bool { return s.cursor.Load() < s.task.stored.Load() }

// ReadStored is Pending for a Stored subscription: up to maxFrames frames after the cursor
// (at least one, then as many as fit maxBytes) read from the event log, up to the first event
// still in memory. Events the log does not hold (the store refused them) are skipped. The
// error is the event log's.
func (s *Subscription) ReadStored(ctx context.Context, dst [][]byte, maxFrames, maxBytes int) (frames [][]byte, lastSeq, lastEnd int64, err error) {
	t := s.task
	from, end := s.cursor.Load(), s.cursorBytes.Load()
	t.mu.RLock()
	base, baseEnd := t.base, t.baseEnd
	t.mu.RUnlock()
	if from >= base || t.remote || t.m.opts.Events == nil {
		return dst, from, end, nil
	}
	limit := int(min(int64(maxFrames), base-from, replayStoredPage))
	evs, err := t.m.opts.Events.TaskEvents(ctx, t.ID, from, limit)
	if err != nil {
		return dst, from, end, fmt.Errorf("read events of task %s after seq %d: %w", t.ID, from, err)
	}
	lastSeq, size, past := from, 0, false
	for _, e := range evs {
		if e.Seq > base {
			past = true
			break
		}
		if size > 0 && size+len(e.Frame) > maxBytes {
			return dst, lastSeq, min(end+int64(size), baseEnd), nil // the rest on the next call
		}
		dst = append(dst, e.Frame)
		size += len(e.Frame)
		lastSeq = e.Seq
	}
	if lastSeq == base || past || len(evs) < limit {
		// Through the base, or the log holds nothing more before it: memory takes over.
		return dst, base, baseEnd, nil
	}
	return dst, lastSeq, min(end+int64(size), baseEnd), nil
}

// Advance records that frames through seq were written to the client.
func (s *Subscription) Advance(seq, end int64) {
	prev := s.cursor.Load()
	if seq <= prev {
		return
	}
	s.cursor.Store(seq)
	s.cursorBytes.Store(end)
	if seq >= s.task.headSeq.Load() {
		s.live.Store(true)
	}
	select {
	case s.progress <- struct{}{}:
	default:
	}
	if t := s.task; t.trimDue.Load() && prev <= t.trimHeld.Load() && t.trimDue.CompareAndSwap(true, false) {
		t.trim()
	}
}

// Finished reports whether the task has ended and everything up to task_complete was
// written: the session can drop the subscription.
func (s *Subscription) Finished() bool {
	select {
	case <-s.task.done:
		return s.cursor.Load() >= s.task.headSeq.Load()
	default:
		return false
	}
}

// Rewind moves the cursor back to the first event still in memory, so everything from there
// is delivered again. The cluster publisher uses it after Redis lost data; duplicates are
// refused there. Older events of a long task are only in the event log, which other
// replicas read before they follow the stream.
func (s *Subscription) Rewind() {
	t := s.task
	t.mu.RLock()
	base, baseEnd := t.base, t.baseEnd
	t.mu.RUnlock()
	s.cursor.Store(base)
	s.cursorBytes.Store(baseEnd)
}

// HasPending reports whether frames are waiting after the cursor.
func (s *Subscription) HasPending() bool { return s.cursor.Load() < s.task.headSeq.Load() }

// Close ends the subscription (the session is going away or resubscribed).
func (s *Subscription) Close() { s.task.m.unsubscribe(s) }

func (s *Subscription) behind(headSeq, headBytes int64) bool {
	if s.closed.Load() {
		return false
	}
	return headSeq-s.cursor.Load() > s.maxMsgs || headBytes-s.cursorBytes.Load() > s.maxBytes
}
