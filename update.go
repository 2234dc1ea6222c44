package sessions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
)

// Update replaces the value under key with fn's result, as one step that
// loses no concurrent update: counters, carts, "append to a list". fn gets
// the current value (ok false when the key is absent) and returns the new
// one, or an error that Update returns with nothing changed.
//
// In sticky mode fn runs under the session's lock, so concurrent requests
// of the session on this server apply their updates one after another. In
// cluster mode Update writes the session to storage before it returns: when
// another server wrote the session meanwhile, fn is applied again to the
// freshest stored value, so the value Update returns is the one stored.
// After repeated conflicts it gives up with ErrConflict; if storage fails,
// it returns the error and the key keeps its stored value.
//
// fn may run more than once and runs with the session locked: it must be a
// pure function of its argument and must not call the Session's methods.
// Use Set for a value that does not depend on the old one.
//
// Update starts a new session if the request has none, like Set, and
// returns ErrSessionEnded when the session ended while the request ran.
func Update[T any](s *Session, key string, fn func(old T, ok bool) (T, error)) (T, error) {
	var zero, result T
	if s == nil {
		return zero, ErrNoSession
	}
	if err := s.m.checkKey(key); err != nil {
		return zero, err
	}
	apply := func(st *state) error {
		var old T
		e, ok := st.values[key]
		if ok {
			if v, isT := e.val.(T); isT && e.val != notDecoded {
				old = v
			} else if err := s.m.codec.Unmarshal(e.raw, &old); err != nil {
				return fmt.Errorf("sessions: Update(%q): the value does not decode as %T: %w", key, old, err)
			}
		}
		v, err := fn(old, ok)
		if err != nil {
			return err
		}
		if err := checkSerializable(v); err != nil {
			return fmt.Errorf("%w: Update(%q) with a %T: %v", ErrUnserializable, key, v, err)
		}
		raw, err := s.m.codec.Marshal(v)
		if err != nil {
			return fmt.Errorf("%w: Update(%q) with a %T: %v", ErrUnserializable, key, v, err)
		}
		if err := st.putLocked(key, raw, v); err != nil {
			return err
		}
		result = v
		return nil
	}
	if !s.m.cfg.Cluster {
		if err := s.change(key, apply); err != nil {
			return zero, err
		}
		return result, nil
	}
	if err := s.m.updateCluster(s, key, apply); err != nil {
		return zero, err
	}
	return result, nil
}

// updateCluster applies an Update and writes the session before it
// returns (cluster mode). The update is applied under the session's commit
// lock, in the same critical section that takes the stored copy it is
// based on, so no other write of this server can slip in between.
func (m *Manager) updateCluster(h *Session, key string, apply func(*state) error) error {
	h.mu.Lock()
	b := h.bound.Load()
	if b == nil {
		// A new session: nobody else knows its ID yet.
		h.mu.Unlock()
		if err := h.change(key, apply); err != nil {
			return err
		}
		st, _ := h.cur()
		st.commitMu.Lock()
		defer st.commitMu.Unlock()
		return m.storeUpdate(h, st, key, nil)
	}
	if h.readOnly {
		h.mu.Unlock()
		return fmt.Errorf("%w: the session passed to OnSessionEnd is read-only", ErrSessionEnded)
	}
	st := b.st
	st.commitMu.Lock()
	defer st.commitMu.Unlock()
	st.mu.Lock()
	live := h.liveLocked(b)
	st.mu.Unlock()
	if !live {
		h.mu.Unlock()
		return fmt.Errorf("%w: it was renewed, invalidated or timed out by another request", ErrSessionEnded)
	}
	h.wrote = true
	h.mu.Unlock()
	return m.storeUpdate(h, st, key, apply)
}

// maxUpdateAttempts bounds the compare-and-swap rounds of one Update.
const maxUpdateAttempts = 16

// storeUpdate applies an Update of key to st (unless apply is nil: it is
// applied already) and writes st, applying it again to the stored value
// after each lost compare-and-swap. The caller holds st.commitMu.
func (m *Manager) storeUpdate(h *Session, st *state, key string, apply func(*state) error) error {
	pending := apply // to apply in the next round
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		if attempt > 2 {
			// Several servers are updating this session: spread out.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
		}
		now := m.now()
		st.mu.Lock()
		if st.ended {
			st.mu.Unlock()
			return fmt.Errorf("%w: Update(%q) was not saved", ErrSessionEnded, key)
		}
		if pending != nil {
			if err := pending(st); err != nil {
				st.mu.Unlock()
				return err
			}
			st.markDirtyLocked(key)
			pending = nil
		}
		skey, base, seq := st.key, st.base, st.seq
		data := st.envelopeLocked(skey, now)
		st.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StorageTimeout)
		ok, err := m.storage.CompareAndSwap(ctx, skey, base, data, m.storeTTL)
		if err != nil {
			cancel()
			err = m.storageFailed("write", err)
			m.revertKey(st, key)
			return fmt.Errorf("sessions: Update(%q): %w", key, err)
		}
		if ok {
			cancel()
			m.stats.writes.Add(1)
			m.storageOK()
			st.mu.Lock()
			st.storedLocked(skey, data, now, seq, true)
			st.mu.Unlock()
			return nil
		}
		m.stats.conflicts.Add(1)
		cur, err := m.storage.Get(ctx, skey)
		cancel()
		m.stats.reads.Add(1)
		switch {
		case errors.Is(err, adapter.ErrNotFound) && base != nil:
			m.forget(h.boundID(), st)
			return fmt.Errorf("%w: Update(%q) was not saved", ErrSessionEnded, key)
		case errors.Is(err, adapter.ErrNotFound):
			continue
		case err != nil:
			err = m.storageFailed("read", err)
			m.revertKey(st, key)
			return fmt.Errorf("sessions: Update(%q): %w", key, err)
		}
		st.mu.Lock()
		env := m.decode(skey, cur)
		if env == nil {
			st.base = cur // unreadable: overwrite it with this copy
			st.mu.Unlock()
			continue
		}
		// Take the stored value of key; the next round applies the update
		// to it.
		delete(st.dirty, key)
		st.adoptLocked(env, cur)
		st.mu.Unlock()
		if apply == nil {
			m.stats.giveUps.Add(1)
			return fmt.Errorf("sessions: Update(%q) of a new session: %w", key, ErrConflict)
		}
		pending = apply
	}
	m.revertKey(st, key)
	m.stats.giveUps.Add(1)
	return fmt.Errorf("sessions: Update(%q): %w", key, ErrConflict)
}

// revertKey gives key back the value of the stored copy the session is
// based on (cluster mode), after an Update that was not saved.
func (m *Manager) revertKey(st *state, key string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.dirty, key)
	old, had := st.values[key]
	if had {
		delete(st.values, key)
		st.size -= len(key) + fieldOverhead + len(old.raw)
	}
	if st.base == nil {
		return
	}
	if env := m.decode(st.key, st.base); env != nil {
		for _, f := range env.Values {
			if f.Key == key {
				st.values[key] = entry{raw: f.Value, val: notDecoded}
				st.size += len(key) + fieldOverhead + len(f.Value)
			}
		}
	}
}

// boundID returns the ID the request holds its session by.
func (s *Session) boundID() string {
	_, id := s.cur()
	return id
}
