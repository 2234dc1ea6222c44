package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"go.opentelemetry.io/otel/attribute"
)

// Cluster mode's storage policy (Config.Cluster true): storage is
// authoritative. Every request reads the entry (one round trip; when the
// bytes equal the copy in memory, nothing is decoded). Before the response
// is committed, a changed session is written with compare-and-swap against
// the bytes it was based on; on a conflict the other server's entry is
// re-read and this server's changed keys are applied on top of it
// (key-level merge), so concurrent requests on different servers lose
// nothing. An entry that disappeared meanwhile was invalidated, renewed
// away or timed out: the late write is dropped, never resurrected, and a
// request whose change it was is told (ErrSessionEnded).

// read fetches key, counting and logging failures.
func (m *Manager) read(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	m.stats.reads.Add(1)
	data, err := m.storage.Get(ctx, key)
	if err != nil && !errors.Is(err, adapter.ErrNotFound) {
		return nil, m.storageFailed("read", err)
	}
	m.storageOK()
	return data, err
}

// endExpired ends a session found past its deadline in storage (cluster
// mode), data being the stored bytes: the end fires here if this server
// wins the claim.
func (m *Manager) endExpired(ctx context.Context, st *state, data []byte) {
	st.mu.Lock()
	snap := m.snapshotLocked(st)
	st.ended = true
	st.mu.Unlock()
	if m.claimEnd(context.WithoutCancel(ctx), st.key, data) {
		m.fireEnd(snap, EndTimeout)
	}
}

// forget takes a resident session out of memory (cluster mode) after
// storage showed that it ended elsewhere; requests using it see it ended.
func (m *Manager) forget(id string, st *state) {
	st.mu.Lock()
	if st.id == id {
		st.ended = true
	}
	st.mu.Unlock()
	m.ram.remove(id, st)
}

// loadCluster reads the session (cluster mode), reusing the resident copy
// when the stored bytes are the ones it is based on, and pins it.
func (m *Manager) loadCluster(ctx context.Context, id string, now time.Time) (*state, error) {
	st, _ := m.ram.acquire(id, -1<<63)
	key := adapter.Key(m.cfg.KeyPrefix, id)
	data, err := m.read(ctx, key)
	if err != nil {
		if st != nil {
			if errors.Is(err, adapter.ErrNotFound) {
				m.forget(id, st) // ended on another server
			}
			m.release(st)
		}
		if errors.Is(err, adapter.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if st != nil {
		st.mu.Lock()
		same := !st.ended && st.id == id && bytes.Equal(st.base, data)
		fresh := st.expires >= now.UnixMilli()
		st.mu.Unlock()
		if same && fresh {
			return st, nil // the common case: nothing to decode
		}
	}
	env := m.decode(key, data)
	if env == nil || env.Expires < now.UnixMilli() {
		if st != nil {
			m.forget(id, st)
			m.release(st)
		}
		if env != nil {
			m.endExpired(ctx, m.stateFromEnvelope(id, key, env, data, false), data)
		}
		return nil, nil
	}
	if st == nil {
		fresh := m.stateFromEnvelope(id, key, env, data, true)
		fresh.users.Store(1)
		if st = m.ram.insertOrAcquire(id, fresh); st == nil {
			return fresh, nil
		}
	}
	// Another server changed the session: take its version, keeping this
	// server's uncommitted changes on top — unless this copy is newer (a
	// concurrent request of this server committed after this read).
	st.mu.Lock()
	live := !st.ended && st.id == id
	if live && env.Revision >= st.revision && !bytes.Equal(st.base, data) {
		st.adoptLocked(env, data)
	}
	st.mu.Unlock()
	if !live {
		m.release(st)
		return nil, nil
	}
	return st, nil
}

func (m *Manager) commitDueLocked(st *state, now time.Time) bool {
	return st.id != "" && (len(st.dirty) > 0 || !st.stored() ||
		now.UnixMilli()-st.storedAccess.Load() >= m.touchEvery.Milliseconds())
}

// maxCommitAttempts bounds compare-and-swap retries under contention.
const maxCommitAttempts = 8

// commit writes the request's session to storage if it changed, or if its
// stored access time is due for a refresh (cluster mode, before the
// response). A session that ended meanwhile is not written back; if this
// request changed it, the change is reported lost (ErrSessionEnded).
func (m *Manager) commit(ctx context.Context, h *Session) (err error) {
	h.mu.Lock()
	st, _ := h.cur()
	wrote := h.wrote
	h.mu.Unlock()
	if st == nil {
		return nil
	}
	lost := func() error {
		if wrote {
			return fmt.Errorf("%w: its changes were not saved", ErrSessionEnded)
		}
		return nil
	}
	st.mu.Lock()
	due, ended := m.commitDueLocked(st, m.now()), st.ended
	st.mu.Unlock()
	if ended {
		return lost()
	}
	if !due {
		return nil // the common read-only request: no context, no lock
	}
	st.commitMu.Lock()
	defer st.commitMu.Unlock()
	ctx, sp := m.startSpan(ctx, "sessions.commit")
	conflicts := 0
	if sp != nil {
		defer func() {
			endSpan(sp, commitOutcome(err), err, func() []attribute.KeyValue {
				return []attribute.KeyValue{attribute.Int("sessions.conflicts", conflicts)}
			})
		}()
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		now := m.now()
		st.mu.Lock()
		if st.ended {
			st.mu.Unlock()
			return lost()
		}
		if !m.commitDueLocked(st, now) {
			st.mu.Unlock()
			return nil
		}
		key, base, seq := st.key, st.base, st.seq
		data := st.envelopeLocked(key, now)
		st.mu.Unlock()

		ok, err := m.storage.CompareAndSwap(ctx, key, base, data, m.storeTTL)
		if err != nil {
			return m.storageFailed("write", err)
		}
		if ok {
			m.stats.writes.Add(1)
			m.storageOK()
			st.mu.Lock()
			st.storedLocked(key, data, now, seq, true)
			st.mu.Unlock()
			return nil
		}
		m.stats.conflicts.Add(1)
		conflicts++
		cur, err := m.storage.Get(ctx, key)
		m.stats.reads.Add(1)
		switch {
		case errors.Is(err, adapter.ErrNotFound) && base != nil:
			// Invalidated, renewed away or timed out elsewhere: drop this
			// late write.
			st.mu.Lock()
			id := st.id
			if st.key == key {
				st.ended = true
			}
			st.mu.Unlock()
			m.ram.remove(id, st)
			return lost()
		case errors.Is(err, adapter.ErrNotFound):
			continue
		case err != nil:
			return m.storageFailed("read", err)
		}
		st.mu.Lock()
		if st.key == key {
			if env := m.decode(key, cur); env != nil {
				st.adoptLocked(env, cur)
			} else {
				st.base = cur // unreadable: overwrite it with this copy
			}
		}
		st.mu.Unlock()
	}
	m.stats.giveUps.Add(1)
	return ErrConflict
}
