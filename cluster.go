package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// This file holds the two modes' storage policies:
//
// sticky (Config.Cluster false): memory is authoritative. A request finds
// its session in memory; storage is read only on a miss. Changes mark the
// session queued; flushLoop writes queued sessions after a WriteBehind
// window (so many changes cost one write), retries failures with backoff,
// and never blocks a request. Close drains the queue.
//
// cluster (Config.Cluster true): storage is authoritative. Every request
// reads the entry (one round trip; when the bytes equal the copy in memory,
// nothing is decoded). Before the response is committed, a changed session
// is written with compare-and-swap against the bytes it was based on; on a
// conflict the other server's entry is re-read and this request's changed
// keys are applied on top of it (key-level merge), so concurrent requests on
// different servers lose nothing. An entry that disappeared meanwhile was
// invalidated (or timed out): the late write is dropped, never resurrected.

// writeBehind is sticky mode's queue: the latest operation per storage key.
type writeBehind struct {
	mu       sync.Mutex
	ops      map[string]*Session // storage key → session to write; nil: delete
	inflight int                 // taken by a flush, not yet done
	wake     chan struct{}
}

func (w *writeBehind) init() {
	w.ops = make(map[string]*Session)
	w.wake = make(chan struct{}, 1)
}

// add records an operation for key, replacing any older one.
func (w *writeBehind) add(key string, s *Session) {
	w.mu.Lock()
	w.ops[key] = s
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// requeue puts back a failed operation unless a newer one replaced it.
func (w *writeBehind) requeue(key string, s *Session) {
	w.mu.Lock()
	if _, newer := w.ops[key]; !newer {
		w.ops[key] = s
	}
	w.mu.Unlock()
}

func (w *writeBehind) take() map[string]*Session {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ops) == 0 {
		return nil
	}
	ops := w.ops
	w.ops = make(map[string]*Session, len(ops))
	w.inflight += len(ops)
	return ops
}

// done ends one operation taken by take (after any requeue).
func (w *writeBehind) done() {
	w.mu.Lock()
	w.inflight--
	w.mu.Unlock()
}

// deleting reports whether a delete of key is pending, so that a memory
// miss does not read back an entry that is already gone logically.
func (w *writeBehind) deleting(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.ops[key]
	return ok && s == nil
}

// len counts operations not yet acknowledged: queued or being written.
func (w *writeBehind) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ops) + w.inflight
}

// enqueue schedules a write-behind of s (sticky mode); cheap when s is
// already queued.
func (m *Manager) enqueue(s *Session) {
	if s.queued.CompareAndSwap(false, true) {
		m.wb.add(s.keySnapshot(), s)
	}
}

const maxBackoff = 5 * time.Second

func (m *Manager) flushLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-m.stop:
			return
		case <-m.wb.wake:
		}
		timer.Reset(m.cfg.WriteBehind + backoff)
		select {
		case <-m.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		if failed := m.flushBatch(context.Background()); failed > 0 {
			backoff = min(max(2*backoff, m.cfg.WriteBehind), maxBackoff)
			select {
			case m.wb.wake <- struct{}{}:
			default:
			}
		} else {
			backoff = 0
		}
	}
}

// flushConcurrency bounds parallel storage writes of one batch.
const flushConcurrency = 16

// flushBatch writes every queued operation once and returns how many failed
// (those are queued again).
func (m *Manager) flushBatch(ctx context.Context) (failed int) {
	ops := m.wb.take()
	if len(ops) == 0 {
		return 0
	}
	if m.storage.batch != nil {
		return m.flushBatched(ctx, ops)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sema = make(chan struct{}, flushConcurrency)
	)
	for key, s := range ops {
		sema <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { m.wb.done(); <-sema; wg.Done() }()
			if err := m.flushOne(ctx, key, s); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// batchSize bounds one SetMany call.
const batchSize = 256

// flushBatched writes the queued sessions with SetMany, batchSize at a
// time, and performs the deletes one by one. The flusher runs batches one
// after another, so an operation queued after a batch was taken (a delete
// after Invalidate) always lands after it.
func (m *Manager) flushBatched(ctx context.Context, ops map[string]*Session) (failed int) {
	type write struct {
		s    *Session
		data []byte
		now  time.Time
		seq  uint64
	}
	var (
		keys   []string
		values [][]byte
		writes []write
	)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
		err := m.storage.setMany(cctx, keys, values, m.storeTTL)
		cancel()
		if err != nil {
			m.storageFailed("write", err)
		} else {
			m.stats.writes.Add(uint64(len(keys)))
			m.storageOK()
		}
		for i, w := range writes {
			if err != nil {
				failed++
				if w.s.queued.CompareAndSwap(false, true) {
					m.wb.requeue(keys[i], w.s)
				}
			} else {
				w.s.mu.Lock()
				w.s.storedLocked(w.data, w.now, w.seq, false)
				w.s.mu.Unlock()
			}
			m.wb.done()
		}
		keys, values, writes = keys[:0], values[:0], writes[:0]
	}
	for key, s := range ops {
		if s == nil {
			if m.flushOne(ctx, key, nil) != nil {
				failed++
			}
			m.wb.done()
			continue
		}
		s.queued.Store(false)
		s.mu.Lock()
		if s.key != key || s.id == "" {
			s.mu.Unlock()
			m.wb.done() // renewed, invalidated or ended since it was queued
			continue
		}
		now := m.now()
		keys = append(keys, key)
		values = append(values, s.envelopeLocked(now))
		writes = append(writes, write{s: s, data: values[len(values)-1], now: now, seq: s.seq})
		s.mu.Unlock()
		if len(keys) == batchSize {
			flush()
		}
	}
	flush()
	return failed
}

// flushOne performs one write-behind operation; on failure it queues it
// again.
func (m *Manager) flushOne(ctx context.Context, key string, s *Session) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	if s == nil {
		if err := m.storage.delete(ctx, key); err != nil {
			m.storageFailed("delete", err)
			m.wb.requeue(key, nil)
			return err
		}
		m.stats.deletes.Add(1)
		m.storageOK()
		return nil
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.queued.Store(false)
	s.mu.Lock()
	if s.key != key || s.id == "" {
		s.mu.Unlock()
		return nil // renewed, invalidated or ended since it was queued
	}
	now := m.now()
	data := s.envelopeLocked(now)
	seq := s.seq
	s.mu.Unlock()
	if err := m.storage.set(ctx, key, data, m.storeTTL); err != nil {
		m.storageFailed("write", err)
		if s.queued.CompareAndSwap(false, true) {
			m.wb.requeue(key, s)
		}
		return err
	}
	m.stats.writes.Add(1)
	m.storageOK()
	s.mu.Lock()
	s.storedLocked(data, now, seq, false)
	s.mu.Unlock()
	return nil
}

// drain flushes until the queue is empty or ctx ends (Close).
func (m *Manager) drain(ctx context.Context) error {
	backoff := m.cfg.WriteBehind
	for m.wb.len() > 0 {
		if m.flushBatch(ctx) == 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sessions: %d pending writes not flushed: %w", m.wb.len(), ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// read fetches key, counting and logging failures.
func (m *Manager) read(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	m.stats.reads.Add(1)
	data, err := m.storage.get(ctx, key)
	if err != nil && !errors.Is(err, errNotFound) {
		m.storageFailed("read", err)
		return nil, err
	}
	m.storageOK()
	return data, err
}

// load finds the session for a valid incoming ID: nil (and no error) when
// there is none, so that the request starts a fresh one.
func (m *Manager) load(ctx context.Context, id string) (*Session, error) {
	if m.cfg.Cluster {
		return m.loadCluster(ctx, id)
	}
	if s := m.ram.get(id); s != nil {
		return s, nil
	}
	key := storageKey(m.cfg.KeyPrefix, id)
	if m.wb.deleting(key) {
		return nil, nil
	}
	data, err := m.read(ctx, key)
	if err != nil {
		if errors.Is(err, errNotFound) {
			return nil, nil
		}
		return nil, err
	}
	env := m.decode(key, data)
	if env == nil {
		return nil, nil
	}
	s := m.sessionFromEnvelope(id, key, env, data, false)
	if env.Expires < m.now().UnixMilli() {
		m.endExpired(ctx, s)
		return nil, nil
	}
	if old := m.ram.putIfAbsent(id, s); old != nil {
		return old, nil
	}
	return s, nil
}

// endExpired ends a session found past its deadline in storage.
func (m *Manager) endExpired(ctx context.Context, s *Session) {
	if m.cfg.Cluster {
		ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
		if err := m.storage.delete(ctx, s.key); err == nil {
			m.stats.deletes.Add(1)
		}
		cancel()
	} else {
		m.wb.add(s.key, nil)
	}
	m.fireEnd(s, EndTimeout)
}

func (m *Manager) loadCluster(ctx context.Context, id string) (*Session, error) {
	s := m.ram.get(id)
	var key string
	if s != nil {
		key = s.keySnapshot()
	}
	if key == "" {
		key = storageKey(m.cfg.KeyPrefix, id)
	}
	data, err := m.read(ctx, key)
	if errors.Is(err, errNotFound) {
		if s != nil {
			m.ram.remove(id, s) // ended on another server
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if s != nil {
		s.mu.Lock()
		same := s.id == id && bytes.Equal(s.base, data)
		s.mu.Unlock()
		if same {
			return s, nil // the common case: nothing to decode
		}
	}
	env := m.decode(key, data)
	if env == nil {
		if s != nil {
			m.ram.remove(id, s)
		}
		return nil, nil
	}
	if env.Expires < m.now().UnixMilli() {
		if s != nil {
			m.ram.remove(id, s)
		}
		m.endExpired(ctx, m.sessionFromEnvelope(id, key, env, data, false))
		return nil, nil
	}
	if s == nil {
		fresh := m.sessionFromEnvelope(id, key, env, data, true)
		if s = m.ram.putIfAbsent(id, fresh); s == nil {
			return fresh, nil
		}
	}
	// Another server changed the session: take its version, keeping this
	// server's uncommitted changes on top — unless this copy is newer (a
	// concurrent request of this server committed after this read).
	s.mu.Lock()
	if s.id == id && env.Revision >= s.revision && !bytes.Equal(s.base, data) {
		s.adoptLocked(env, data)
	}
	s.mu.Unlock()
	return s, nil
}

// commitDue reports whether s has changes to write, or a stored access
// time due for a refresh.
func (m *Manager) commitDue(s *Session, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.commitDueLocked(s, now)
}

func (m *Manager) commitDueLocked(s *Session, now time.Time) bool {
	return s.id != "" && (len(s.dirty) > 0 || !s.stored() ||
		now.UnixMilli()-s.storedAccess.Load() >= m.touchEvery.Milliseconds())
}

// maxCommitAttempts bounds compare-and-swap retries under contention.
const maxCommitAttempts = 8

// errConflict: a cluster commit kept losing compare-and-swap races.
var errConflict = errors.New("sessions: too many concurrent writes to one session")

// commit writes s to storage if it changed, or if its stored access time
// is due for a refresh (cluster mode, before the response).
func (m *Manager) commit(ctx context.Context, s *Session) error {
	if !m.commitDue(s, m.now()) {
		return nil // the common read-only request: no context, no lock
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		now := m.now()
		s.mu.Lock()
		if !m.commitDueLocked(s, now) {
			s.mu.Unlock()
			return nil
		}
		key, base, seq := s.key, s.base, s.seq
		data := s.envelopeLocked(now)
		s.mu.Unlock()

		ok, err := m.storage.compareAndSwap(ctx, key, base, data, m.storeTTL)
		if err != nil {
			m.storageFailed("write", err)
			return err
		}
		if ok {
			m.stats.writes.Add(1)
			m.storageOK()
			s.mu.Lock()
			s.storedLocked(data, now, seq, true)
			s.mu.Unlock()
			return nil
		}
		m.stats.conflicts.Add(1)
		cur, err := m.storage.get(ctx, key)
		m.stats.reads.Add(1)
		switch {
		case errors.Is(err, errNotFound) && base != nil:
			// Invalidated or timed out elsewhere: drop this late write.
			s.mu.Lock()
			id := s.id
			if s.key == key {
				s.resetLocked()
			}
			s.mu.Unlock()
			m.ram.remove(id, s)
			return nil
		case errors.Is(err, errNotFound):
			continue
		case err != nil:
			m.storageFailed("read", err)
			return err
		}
		s.mu.Lock()
		if s.key == key {
			if env := m.decode(key, cur); env != nil {
				s.adoptLocked(env, cur)
			} else {
				s.base = cur // unreadable: overwrite it with this copy
			}
		}
		s.mu.Unlock()
	}
	return errConflict
}
