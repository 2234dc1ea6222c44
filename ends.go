package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"go.opentelemetry.io/otel/attribute"
)

// When sessions end. A session ends by Invalidate (on the server that
// calls it) or by timeout. A timeout is due at the session's deadline:
// Timeout after the access time of its stored copy (which requests move
// forward at most every Timeout/10, so between 0.9×Timeout and Timeout
// after its last request), or Timeout after its last use for a session
// never stored or with a refresh not yet stored. Whoever finds a session
// past its deadline — the server holding it in memory, a request that
// reads it, or any Manager's sweep listing the storage's expiring entries
// — claims the end from the storage with CompareAndDelete of the exact
// bytes it saw: only the winner fires OnSessionEnd, so each end fires once
// across every Manager sharing the storage. A server that dies between
// winning and calling OnSessionEnd loses that one event.

// pendingEnd is a timed-out session taken out of memory whose end fires
// once storage agrees (finishEnd).
type pendingEnd struct {
	snap *Session
	key  string
	// base is the stored copy the session is based on (nil: unknown).
	base []byte
	// stored: written to or read from storage under key; sinceOutage:
	// and that since the storage last failed (so it cannot have lost it).
	stored, sinceOutage bool
}

// claimsWithStorage reports whether timed-out stored sessions are ended by
// a claim on the storage (it has CompareAndDelete) rather than by a delete
// queued behind earlier writes.
func (m *Manager) claimsWithStorage() bool { return m.storage.HasCAD() }

// finishEnds fires the ends of sessions taken out of memory, those stored
// once this server wins their claim, several claims at a time.
func (m *Manager) finishEnds(ends []pendingEnd) {
	if len(ends) == 1 || !m.claimsWithStorage() {
		for _, pe := range ends {
			m.finishEnd(pe)
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, adapter.Concurrency)
	for _, pe := range ends {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			m.finishEnd(pe)
			<-sem
		}()
	}
	wg.Wait()
}

// finishEnd fires pe's end unless another server claimed it first.
func (m *Manager) finishEnd(pe pendingEnd) {
	if !pe.stored || !m.claimsWithStorage() {
		m.fireEnd(pe.snap, EndTimeout) // nobody else knows it, or its delete is queued
		return
	}
	if m.storageDown.Load() && m.storage.CanListExpiring() {
		return // still stored: a sweep's claim reports it once storage answers
	}
	ctx := m.flushCtx
	base := pe.base
	if base == nil || !pe.sinceOutage {
		// The stored copy is unknown here, or storage may have lost it
		// while failing: look.
		cur, err := m.read(ctx, pe.key)
		switch {
		case errors.Is(err, adapter.ErrNotFound):
			if !pe.sinceOutage {
				m.fireEnd(pe.snap, EndTimeout) // lost by the storage: nobody else can report it
			}
			return
		case err != nil:
			return // still stored: a sweep's claim reports it later
		}
		if env := m.decode(pe.key, cur); env == nil || env.Expires > m.now().UnixMilli() {
			return // rewritten by another server that uses it
		}
		base = cur
	}
	if m.claimEnd(ctx, pe.key, base) {
		m.fireEnd(pe.snap, EndTimeout)
	}
}

// claimEnd deletes key if it still holds data, the stored copy of a
// session past its deadline, and reports whether this call won the end.
// Without CompareAndDelete it deletes and wins.
func (m *Manager) claimEnd(ctx context.Context, key string, data []byte) bool {
	ctx, sp := m.startSpan(ctx, "sessions.end_claim")
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	won, err := m.storage.CompareAndDelete(ctx, key, data)
	if err != nil {
		endSpan(sp, "error", err, nil)
		m.storageFailed("delete", err)
		return false // still stored: a later claim reports it
	}
	m.storageOK()
	if won {
		m.stats.deletes.Add(1)
		m.stats.claimsWon.Add(1)
		endSpan(sp, "won", nil, nil)
	} else {
		m.stats.claimsLost.Add(1)
		endSpan(sp, "lost", nil, nil)
	}
	return won
}

// claimPage is how many expiring entries one ListExpiring call asks for;
// claimPages bounds the calls of one sweep.
const (
	claimPage  = 256
	claimPages = 64
)

// claimSlack is how long after a stored deadline the sweep's claims wait:
// a request that arrived just before the deadline has that long to store
// its refresh (sticky mode) or commit (cluster mode) before another
// server may end the session. It is StorageTimeout+WriteBehind, at most
// Timeout/4: entries stay claimable from their deadline plus the slack
// until Timeout after it (storeTTL), which leaves at least three sweeps.
func (m *Manager) claimSlack() time.Duration {
	return min(m.cfg.StorageTimeout+m.cfg.WriteBehind, m.cfg.Timeout/4)
}

// claimExpired ends the stored sessions past their deadline that no
// request and no server's memory has ended: those that timed out while
// evicted, or written by a server that has exited. Each is claimed with
// CompareAndDelete; the Manager that wins fires OnSessionEnd for it, with
// the values and without the ID (storage keys do not reveal IDs). It runs
// on every sweep while OnSessionEnd is set and the storage can list
// expiring entries, also while the storage fails (its first call is then
// the probe that notices the recovery).
func (m *Manager) claimExpired(ctx context.Context, now time.Time) {
	if m.cfg.OnSessionEnd == nil || !m.storage.CanListExpiring() {
		return
	}
	// Entries are written with a time to live of storeTTL, and their
	// deadline is at most Timeout after the write: those whose time to
	// live ends before this are past their deadline by claimSlack.
	before := now.Add(m.storeTTL - m.cfg.Timeout - m.claimSlack())
	cutoff := now.Add(-m.claimSlack()).UnixMilli()
	ctx, sp := m.startSpan(ctx, "sessions.sweep")
	var listed, claimed atomic.Int64
	var sweepErr error
	if sp != nil {
		defer func() {
			outcome := "done"
			if sweepErr != nil {
				outcome = "error"
			}
			endSpan(sp, outcome, sweepErr, func() []attribute.KeyValue {
				return []attribute.KeyValue{attribute.Int64("sessions.listed", listed.Load()), attribute.Int64("sessions.claimed", claimed.Load())}
			})
		}()
	}
	for range claimPages {
		lctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
		keys, values, err := m.storage.ListExpiring(lctx, m.cfg.KeyPrefix, before, claimPage)
		cancel()
		if err != nil {
			sweepErr = err
			m.storageFailed("list", err)
			return
		}
		listed.Add(int64(len(keys)))
		m.storageOK()
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			progress int
			sem      = make(chan struct{}, adapter.Concurrency)
		)
		for i, key := range keys {
			env := m.decode(key, values[i])
			if env == nil || env.Expires > cutoff {
				// Unreadable here (another codec or key: another app's),
				// or a deadline further out than this server's Timeout
				// implies: left to its own servers, or its time to live.
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if !m.claimEnd(ctx, key, values[i]) {
					return
				}
				claimed.Add(1)
				mu.Lock()
				progress++
				mu.Unlock()
				st := m.stateFromEnvelope("", key, env, values[i], false)
				st.lastAccess.Store(env.LastAccess * int64(time.Millisecond))
				m.fireEnd(m.snapshotLocked(st), EndTimeout) // st is not shared: no lock needed
			}()
		}
		wg.Wait()
		if len(keys) < claimPage || progress == 0 || ctx.Err() != nil {
			return
		}
	}
}

// warnIfEndsUnseen logs, once, that OnSessionEnd will miss timeouts of
// sessions no server holds, when the storage cannot list expiring entries.
func (m *Manager) warnIfEndsUnseen() {
	if m.cfg.OnSessionEnd == nil || m.storage.CanListExpiring() {
		return
	}
	m.log.Warn("sessions: this storage cannot list expiring entries: OnSessionEnd fires for sessions that time out in a server's memory or are read after their deadline, not for those that time out while no server holds them",
		"storage", m.storage.Name())
}

// EndReason says why a session ended.
type EndReason int

const (
	// EndTimeout: the session was unused for Config.Timeout.
	EndTimeout EndReason = iota + 1
	// EndInvalidated: Session.Invalidate was called.
	EndInvalidated
)

// String returns "timeout" or "invalidated".
func (r EndReason) String() string {
	switch r {
	case EndTimeout:
		return "timeout"
	case EndInvalidated:
		return "invalidated"
	}
	return fmt.Sprintf("EndReason(%d)", int(r))
}
