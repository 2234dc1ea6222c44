package sessions

import "time"

// NewWithClock is New with a clock of the test's: the Manager judges every
// deadline by now instead of the wall clock.
func NewWithClock(cfg Config, now func() time.Time) (*Manager, error) { return newManager(cfg, now) }

// Sweep runs one sweep as the sweeper would at now, on the caller's
// goroutine.
func Sweep(m *Manager, now time.Time) { m.sweep(now) }
