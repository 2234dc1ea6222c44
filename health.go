package sessions

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Storage health as the logs tell it. A storage that fails gets one ERROR
// line at the first failure; while it keeps failing (a dead Redis Cluster
// shard fails some calls and not others), at most one WARN summary per
// healthSummaryEvery with the counts since the last line; and one INFO
// line at the first success after healthQuiet with no failure. The
// functional state (storageDown, outages) follows every call; only the
// logging is smoothed.
const (
	healthSummaryEvery = 30 * time.Second
	healthQuiet        = 10 * time.Second
)

type healthLog struct {
	failing atomic.Bool // a failure was logged and its recovery not yet

	mu           sync.Mutex // protects following fields
	since        time.Time  // first failure of this episode
	lastFail     time.Time
	lastSummary  time.Time
	nFailed, nOK uint64 // calls since the last line
	lastErr      error
	lastOp       string
	// walked: a rewrite of the resident sessions (sticky mode) started in
	// this episode; failedSinceWalk: and the storage failed since.
	walked, failedSinceWalk bool
}

// storageFailed counts and reports a failed storage call, and returns err
// as a *StorageError.
func (m *Manager) storageFailed(op string, err error) error {
	if se := (*StorageError)(nil); errors.As(err, &se) {
		err = se.Err
	}
	if !m.storageDown.Swap(true) {
		m.outages.Add(1)
	}
	m.health.failed(m, op, err)
	m.stats.errors.Add(1) // after the log: a counted failure has been reported
	return &StorageError{Op: op, Storage: m.storage.Name(), Err: err}
}

// storageOK records a storage call that succeeded.
func (m *Manager) storageOK() {
	if m.storageDown.Load() && m.storageDown.Swap(false) && !m.cfg.Cluster && m.health.walkDue() {
		m.repersist.start(m)
	}
	if m.health.failing.Load() {
		m.health.succeeded(m)
	}
}

// startFailing records a failure already logged (a storage unreachable at
// start).
func (h *healthLog) startFailing(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing.Store(true)
	h.since, h.lastFail, h.lastSummary = now, now, now
}

func (h *healthLog) failed(m *Manager, op string, err error) {
	now := m.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastFail, h.lastErr, h.lastOp = now, err, op
	h.failedSinceWalk = true
	if !h.failing.Load() {
		h.failing.Store(true)
		h.since, h.lastSummary, h.nFailed, h.nOK = now, now, 0, 0
		h.walked = false
		if m.cfg.Cluster {
			m.log.Error("sessions: storage failing; cluster mode answers requests that need it with the ErrorHandler",
				"storage", m.storage.Name(), "op", op, "err", err)
		} else {
			m.log.Error("sessions: storage failing; sticky mode keeps serving from memory and retries writes",
				"storage", m.storage.Name(), "op", op, "err", err)
		}
		return
	}
	h.nFailed++
	if now.Sub(h.lastSummary) >= healthSummaryEvery {
		m.log.Warn("sessions: storage still failing",
			"storage", m.storage.Name(), "failed_calls", h.nFailed, "succeeded_calls", h.nOK,
			"since", h.since, "op", op, "err", err)
		h.lastSummary, h.nFailed, h.nOK = now, 0, 0
	}
}

func (h *healthLog) succeeded(m *Manager) {
	now := m.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failing.Load() {
		return
	}
	h.nOK++
	if now.Sub(h.lastFail) < healthQuiet {
		return // still failing now and then
	}
	h.failing.Store(false)
	m.log.Info("sessions: storage recovered", "storage", m.storage.Name(),
		"failing_for", h.lastFail.Sub(h.since).Round(time.Millisecond), "pending_writes", m.wb.len())
	if !m.cfg.Cluster && (!h.walked || h.failedSinceWalk) {
		// It failed again after the first rewrite began (a flapping
		// storage): one more pass now that it is steady.
		h.walked, h.failedSinceWalk = true, false
		m.repersist.start(m)
	}
}

// walkDue reports whether a storage call that succeeded after a failed
// one should start rewriting the resident sessions (sticky mode): once per
// episode, at its first success, however often a flapping storage
// alternates (and once more at its recovery, if it failed after that).
func (h *healthLog) walkDue() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.walked && h.failing.Load() {
		return false
	}
	h.walked, h.failedSinceWalk = true, false
	return true
}
