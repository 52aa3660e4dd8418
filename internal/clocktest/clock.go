// Package clocktest is the tests' one fake clock: a time that moves only when a test moves it
// (or, stepping, a little at every reading), safe for concurrent use.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable clock; pass its Now where code takes a func() time.Time.
type Clock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

// New returns a Clock standing at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// NewStepping returns a Clock standing at t that also moves by step at every Now, so that
// successive readings are distinct and increasing.
func NewStepping(t time.Time, step time.Duration) *Clock { return &Clock{now: t, step: step} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
