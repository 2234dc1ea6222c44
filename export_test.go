package sessions

import "time"

// Hooks for tests that drive a Manager's time themselves. A Manager made by
// NewWithClock judges every deadline by the test's clock; its background
// goroutines still run on real timers (a sweep every min(Timeout,
// IdleEvict)/4, at most 30 s; a flush WriteBehind after a change), so a
// test that calls these hooks instead of waiting picks a Timeout, IdleEvict
// and WriteBehind long enough that those timers do not fire while it runs
// (minutes; WriteBehind an hour), then moves its clock and calls Sweep,
// Tick or Flush: each runs on the caller's goroutine and has finished its
// work, OnSessionEnd calls included, when it returns.

// NewWithClock is New with a clock of the test's: the Manager judges every
// deadline by now instead of the wall clock.
func NewWithClock(cfg Config, now func() time.Time) (*Manager, error) { return newManager(cfg, now) }

// Sweep runs one sweep as the sweeper would at now, on the caller's
// goroutine.
func Sweep(m *Manager, now time.Time) { m.sweep(now) }

// ClaimExpired makes the claims a sweep at now makes on the storage
// (ending the stored sessions past their deadline that no memory holds),
// on the caller's goroutine.
func ClaimExpired(m *Manager, now time.Time) { m.claimExpired(m.flushCtx, now) }

// Tick does at now what one tick of the sweeper does (sweepLoop): record
// the tick, rewrite the alive marker unless storage is failing, sweep
// memory, then claim the expired stored sessions.
func Tick(m *Manager, now time.Time) {
	m.lastTick.Store(now.UnixNano())
	if !m.storageDown.Load() {
		m.writeMarker(m.flushCtx)
	}
	m.sweep(now)
	m.claimExpired(m.flushCtx, now)
}

// Flush does now what the write-behind flusher does when a window ends
// (flushLoop): a step of the rewrite of resident sessions after an outage,
// if one is under way, then one write of every queued operation, those
// held back by a retry backoff included. It returns how many failed (they
// are queued again). Sticky mode only; in cluster mode the queue is empty.
func Flush(m *Manager) (failed int) {
	m.repersist.step(m)
	return m.flushBatch(m.flushCtx, true)
}
