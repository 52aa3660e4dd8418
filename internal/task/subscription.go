package task

import "sync/atomic"

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

// Advance records that frames through seq were written to the client.
func (s *Subscription) Advance(seq, end int64) {
	if seq <= s.cursor.Load() {
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

// Rewind moves the cursor back to the first event still held, so everything is delivered
// again. The cluster publisher uses it after Redis lost data; duplicates are refused there.
func (s *Subscription) Rewind() {
	t := s.task
	t.mu.RLock()
	base := t.base
	t.mu.RUnlock()
	s.cursor.Store(base)
	s.cursorBytes.Store(0)
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
