package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/serializer"
)

// This file owns a session's lifecycle: the states a session goes through
// on this server and every transition between them. docs/architecture.md
// has the table of what memory, storage, cookies and OnSessionEnd see at
// each transition.
//
//	(none) --first Set--> live --Renew--> live under a new ID
//	                      live --Invalidate / timeout / gone from storage--> ended
//	                      live --idle eviction (no request using it, nothing unsaved)--> (not resident)
//
// One *state per session per server is shared by every request using it;
// each request has its own *Session handle, bound to the state under the
// ID the request arrived with (or started). A handle whose state ended or
// moved to another ID sees an ended session. The rules that keep a session
// from coming back once ended:
//   - ended is set under st.mu and never cleared; a state is never reused.
//   - sticky mode queues the storage delete (a tombstone the memory-miss
//     path checks) before the state leaves memory, and the tombstone stays
//     until storage acknowledged the delete, so no request loads the entry
//     back while the delete is queued or in flight.
//   - a memory miss publishes a loading placeholder before it reads
//     storage: concurrent misses of one ID wait for that one read.
//   - requests pin their state (users), and the sweeper takes a state out
//     of memory only under the shard's write lock with users == 0.

// state is one session as this server holds it.
type state struct {
	m *Manager

	// commitMu serialises storage writes of this session on this server in
	// cluster mode (commits, Renew, Invalidate), held across the I/O.
	commitMu sync.Mutex

	// users counts the requests using the state; the sweeper neither
	// evicts nor times out a state in use. Changed under the RAM shard's
	// read lock (acquire) or freely when decrementing.
	users atomic.Int32
	// ready is false while a load from storage fills a placeholder
	// (sticky mode); loading is closed, and loadErr set, when it is done.
	ready   atomic.Bool
	loading chan struct{}
	loadErr error

	mu       sync.Mutex // protects following fields
	id       string     // "" until the session is first written
	key      string     // storage key, derived from id
	ended    bool       // invalidated, timed out or gone from storage: final
	values   map[string]entry
	size     int               // encoded size of values, roughly as stored
	dirty    map[string]uint64 // keys changed since the last store → change seq
	seq      uint64
	created  int64 // Unix ms
	revision uint64
	base     []byte // the stored bytes this copy is based on (nil: none, or not kept)
	// storedOutages is Manager.outages when the session was last read
	// from or written to storage: a copy stored before a storage failure
	// may be gone because the storage lost it (a restart without
	// persistence), not because the session ended elsewhere, and is not
	// known to be in storage until written again.
	storedOutages uint64
	expires       int64 // Unix ms: deadline of the stored copy (0: never stored)
	// verified is the latest version made on another server that a
	// request showed and the stored copy was found to include (sticky
	// mode): requests showing it need no reload.
	verified version

	// storedAccess is the LastAccess (Unix ms) of the latest stored
	// envelope, 0 while the session has not been stored under its current
	// key; a touch is due when it falls Timeout/10 behind. Written under
	// mu, read without it.
	storedAccess atomic.Int64

	lastAccess atomic.Int64 // Unix ns: when a request last started or finished using it
	cookieSent atomic.Int64 // Unix ms of the last persistent cookie sent
	queued     atomic.Bool  // in the write-behind queue (changed under the queue's lock)
}

type entry struct {
	raw []byte // the codec's encoding
	val any    // the decoded value, or notDecoded
}

// notDecoded marks an entry whose value has not been decoded yet (nil is a
// value like any other).
type notDecodedType struct{}

var notDecoded any = notDecodedType{}

// fieldOverhead approximates the envelope bytes around one value.
const fieldOverhead = 4

// newState returns an unwritten session (no ID, not resident).
func (m *Manager) newState() *state {
	st := &state{m: m, values: make(map[string]entry)}
	st.lastAccess.Store(m.now().UnixNano())
	st.ready.Store(true)
	return st
}

// startLocked gives a new session its identity.
func (m *Manager) startLocked(st *state) {
	st.id = newID()
	st.key = adapter.Key(m.cfg.KeyPrefix, st.id)
	st.created = m.now().UnixMilli()
	m.stats.created.Add(1)
}

func (st *state) markDirtyLocked(key string) {
	st.seq++
	if st.dirty == nil {
		st.dirty = make(map[string]uint64)
	}
	st.dirty[key] = st.seq
}

// stored reports whether an entry for the session's current key has been
// written (or read) in storage.
func (st *state) stored() bool { return st.storedAccess.Load() != 0 }

// envelopeLocked encodes the whole session as it is now, for storage key
// key (sealed entries are bound to it), stamped with access time now, as
// the next revision.
func (st *state) envelopeLocked(key string, now time.Time) []byte {
	m := st.m
	env := serializer.Envelope{
		Codec:      m.codec.ID(),
		Created:    st.created,
		LastAccess: now.UnixMilli(),
		Expires:    now.Add(m.cfg.Timeout).UnixMilli(),
		Revision:   st.revision + 1,
		Values:     make([]serializer.Field, 0, len(st.values)),
	}
	for k, e := range st.values {
		env.Values = append(env.Values, serializer.Field{Key: k, Value: e.raw})
	}
	if m.sealer != nil {
		return m.sealer.Seal(env.Marshal(), []byte(key))
	}
	return env.Marshal()
}

// storedLocked records a successful write of data under key: an envelope
// made by envelopeLocked at access time now when the change counter was at
// seq. A write for a key the session no longer has (renewed meanwhile) or
// of an ended session records nothing.
func (st *state) storedLocked(key string, data []byte, now time.Time, seq uint64, keepBase bool) {
	if st.key != key || st.ended {
		return
	}
	st.revision++
	st.storedAccess.Store(now.UnixMilli())
	st.expires = now.Add(st.m.cfg.Timeout).UnixMilli()
	st.storedOutages = st.m.outages.Load()
	if keepBase {
		st.base = data
	}
	for k, v := range st.dirty {
		if v <= seq {
			delete(st.dirty, k)
		}
	}
	if len(st.dirty) == 0 {
		st.dirty = nil // most sessions are clean most of the time
	}
}

// adoptLocked makes st reflect a stored envelope (read at request start, or
// after losing a compare-and-swap) while keeping this server's uncommitted
// changes on top: the key-level merge of cluster mode.
func (st *state) adoptLocked(env *serializer.Envelope, data []byte) {
	values := make(map[string]entry, len(env.Values)+len(st.dirty))
	size := 0
	for _, f := range env.Values {
		values[f.Key] = entry{raw: f.Value, val: notDecoded}
		size += len(f.Key) + fieldOverhead + len(f.Value)
	}
	for k := range st.dirty {
		old, had := values[k]
		if had {
			size -= len(k) + fieldOverhead + len(old.raw)
		}
		if e, ok := st.values[k]; ok {
			values[k] = e
			size += len(k) + fieldOverhead + len(e.raw)
		} else {
			delete(values, k)
		}
	}
	st.values, st.size = values, size
	st.revision = env.Revision
	st.created = env.Created
	st.expires = env.Expires
	st.storedAccess.Store(env.LastAccess)
	st.base, st.storedOutages = data, st.m.outages.Load()
}

// endedElsewhereLocked reports whether a missing entry means the session
// ended on another server (sticky mode): it was based on a stored copy
// read or written since the storage last failed. Otherwise the storage
// may have lost it (a restart without persistence) and it is written again.
func (st *state) endedElsewhereLocked() bool {
	return st.base != nil && st.storedSinceOutageLocked()
}

// storedSinceOutageLocked reports whether the session was read from or
// written to storage since the storage last failed.
func (st *state) storedSinceOutageLocked() bool {
	return st.storedOutages == st.m.outages.Load()
}

// stateFromEnvelope builds a session from stored bytes, not yet resident.
func (m *Manager) stateFromEnvelope(id, key string, env *serializer.Envelope, data []byte, keepBase bool) *state {
	st := &state{m: m, id: id, key: key}
	st.adoptLocked(env, data)
	if !keepBase {
		st.base = nil
	}
	st.lastAccess.Store(m.now().UnixNano())
	st.ready.Store(true)
	return st
}

// snapshotLocked copies st for OnSessionEnd: a read-only *Session that
// outlives st's reset.
func (m *Manager) snapshotLocked(st *state) *Session {
	c := &state{m: m, id: st.id, key: st.key, created: st.created, revision: st.revision, ended: true,
		values: make(map[string]entry, len(st.values))}
	for k, e := range st.values {
		c.values[k] = e
	}
	c.lastAccess.Store(st.lastAccess.Load())
	snap := &Session{m: m, readOnly: true, firstUsed: true}
	snap.first = binding{c, st.id}
	snap.bound.Store(&snap.first)
	return snap
}

func (m *Manager) fireEnd(s *Session, reason EndReason) {
	m.stats.ended.Add(1)
	if reason == EndInvalidated {
		m.stats.endedInvalidated.Add(1)
	} else {
		m.stats.endedTimeout.Add(1)
	}
	if m.cfg.OnSessionEnd != nil {
		m.cfg.OnSessionEnd(s, reason)
	}
}

// acquire finds the session for a valid incoming ID and pins it for the
// request (release unpins it): nil, and no error, when there is none, so
// that the request starts without a session.
func (m *Manager) acquire(ctx context.Context, id string, ver version, now time.Time) (*state, error) {
	if m.cfg.Cluster {
		return m.load(ctx, id, ver, now)
	}
	st, expired := m.ram.acquire(id, now.UnixNano())
	switch {
	case expired:
		// Past its deadline and not in use: it ends here, not later in
		// a sweep (which would let this request revive it).
		if st = m.ram.acquireUnlessExpired(m, id, now.UnixNano()); st == nil {
			return nil, nil
		}
	case st == nil:
		return m.load(ctx, id, ver, now)
	}
	st, err := m.await(ctx, st, id)
	if st == nil || err != nil || ver.node == 0 || ver.node == m.node {
		if st != nil {
			m.stats.reqMemory.Add(1)
		}
		return st, err // the common case: no change the browser saw was made elsewhere
	}
	if st, err = m.catchUp(ctx, st, id, ver); st != nil {
		m.stats.reqMemory.Add(1)
	}
	return st, err
}

// catchUp makes sure a resident session includes a change the browser
// saw another server make (its cookie's version: sticky mode, a routing
// flap): the first request showing that version reloads the stored copy
// and merges it with this server's unsaved changes. If the other server
// has not stored the change yet, this request is served the copy it has,
// and the next one tries again.
func (m *Manager) catchUp(ctx context.Context, st *state, id string, ver version) (*state, error) {
	st.mu.Lock()
	key, seen := st.key, st.verified == ver
	st.mu.Unlock()
	if seen {
		return st, nil
	}
	data, err := m.read(ctx, key)
	st.mu.Lock()
	endedElsewhere := st.endedElsewhereLocked()
	st.mu.Unlock()
	if errors.Is(err, adapter.ErrNotFound) && endedElsewhere {
		if lost, merr := m.storageLost(ctx); merr != nil || lost {
			return st, nil // this server's copy is the one left
		}
		// Ended on the other server (the browser would have no version
		// cookie had this tab seen the logout).
		m.forget(id, st)
		m.release(st)
		return nil, nil
	}
	if err != nil {
		return st, nil // storage failing: sticky mode serves its copy
	}
	env := m.decode(key, data)
	if env == nil {
		return st, nil
	}
	st.mu.Lock()
	if st.key == key && !st.ended {
		if env.Revision > st.revision {
			st.adoptLocked(env, data)
			if !m.storage.HasCAS() {
				st.base = nil
			}
		}
		if env.Revision >= ver.rev {
			st.verified = ver
		}
	}
	st.mu.Unlock()
	return st, nil
}

// await returns a pinned state once it is loaded, if it is still the live
// session id; else it unpins it.
func (m *Manager) await(ctx context.Context, st *state, id string) (*state, error) {
	if !st.ready.Load() {
		select {
		case <-st.loading:
		case <-ctx.Done():
			m.release(st)
			return nil, ctx.Err()
		}
		if st.loadErr != nil {
			m.release(st)
			return nil, st.loadErr
		}
	}
	st.mu.Lock()
	live := !st.ended && st.id == id
	st.mu.Unlock()
	if !live {
		m.release(st)
		return nil, nil
	}
	return st, nil
}

// release unpins a state a request acquired or started. Its last use
// moves to the sweeper's latest tick if that is later than the request's
// start (a long request), which is precise enough for sweeps that run on
// those ticks and costs no clock read per request.
func (m *Manager) release(st *state) {
	if tick := m.lastTick.Load(); tick > st.lastAccess.Load() {
		st.lastAccess.Store(tick)
		m.refreshIfDue(st, tick) // a long request: the stored deadline follows
	}
	st.users.Add(-1)
}

// loadSticky reads a session missing from memory (sticky mode). A
// placeholder in memory makes concurrent misses of the same ID wait for
// this one read instead of loading copies of their own.
func (m *Manager) loadSticky(ctx context.Context, id string, ver version, now time.Time) (*state, error) {
	key := adapter.Key(m.cfg.KeyPrefix, id)
	if m.wb.deleting(key) {
		return nil, nil // ended here; its delete has not reached storage yet
	}
	ph := &state{m: m, id: id, key: key, loading: make(chan struct{})}
	ph.users.Store(1)
	ph.lastAccess.Store(now.UnixNano())
	if cur := m.ram.insertOrAcquire(id, ph); cur != nil {
		return m.await(ctx, cur, id)
	}
	// Checked again now that the placeholder is published: an end that
	// queued its delete before this point is seen here, one after it
	// finds the placeholder.
	if m.wb.deleting(key) {
		m.loadFailed(ph, nil)
		return nil, nil
	}
	// The read serves every request waiting on the placeholder: it must
	// not fail because this request's client went away.
	data, err := m.read(context.WithoutCancel(ctx), key)
	var env *serializer.Envelope
	if err == nil {
		env = m.decode(key, data)
	}
	switch {
	case err != nil && !errors.Is(err, adapter.ErrNotFound):
		m.loadFailed(ph, err)
		return nil, err
	case err != nil || env == nil:
		m.loadFailed(ph, nil)
		return nil, nil
	}
	ph.mu.Lock()
	ph.adoptLocked(env, data)
	if !m.storage.HasCAS() && !m.claimsWithStorage() {
		ph.base = nil // writes and ends are blind: no need to keep it
	}
	if env.Expires < now.UnixMilli() {
		snap := m.snapshotLocked(ph)
		ph.ended = true
		ph.mu.Unlock()
		if !m.claimsWithStorage() {
			m.wb.addDelete(key)
			m.loadFailed(ph, nil)
			m.fireEnd(snap, EndTimeout)
			return nil, nil
		}
		// Claimed before the placeholder goes: requests waiting on it
		// find no session, and the end fires on one server only.
		won := m.claimEnd(context.WithoutCancel(ctx), key, data)
		m.loadFailed(ph, nil)
		if won {
			m.fireEnd(snap, EndTimeout)
		}
		return nil, nil
	}
	if ver.node != m.node && env.Revision >= ver.rev {
		ph.verified = ver
	}
	ph.mu.Unlock()
	ph.ready.Store(true)
	close(ph.loading)
	return ph, nil
}

// loadFailed ends a placeholder whose load found nothing (err nil) or
// failed, and wakes its waiters.
func (m *Manager) loadFailed(ph *state, err error) {
	ph.mu.Lock()
	ph.ended = true
	ph.mu.Unlock()
	ph.loadErr = err
	m.ram.remove(ph.id, ph)
	ph.users.Add(-1)
	ph.ready.Store(true)
	close(ph.loading)
}

// changed is called after every change a request made to st; started
// says the change created it.
func (m *Manager) changed(h *Session, st *state, started bool) {
	if started && m.cfg.OnSessionStart != nil {
		m.cfg.OnSessionStart(h)
	}
	if !m.cfg.Cluster {
		m.enqueue(st)
	}
}

// renew moves the request's session to a new ID.
func (m *Manager) renew(h *Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readOnly {
		return fmt.Errorf("%w: the session passed to OnSessionEnd is read-only", ErrSessionEnded)
	}
	b := h.bound.Load()
	if b == nil {
		return nil // never written: nothing to renew
	}
	st := b.st
	if m.cfg.Cluster {
		st.commitMu.Lock()
		defer st.commitMu.Unlock()
	}
	st.mu.Lock()
	if !h.liveLocked(b) {
		st.mu.Unlock()
		return fmt.Errorf("%w: Renew: it was renewed, invalidated or timed out by another request", ErrSessionEnded)
	}
	oldID, oldKey := st.id, st.key
	newID := newID()
	newKey := adapter.Key(m.cfg.KeyPrefix, newID)
	if !m.cfg.Cluster {
		st.id, st.key = newID, newKey
		st.storedAccess.Store(0)
		st.expires = 0
		st.base = nil // nothing is stored under the new key yet
		st.mu.Unlock()
		// The old key's delete (a tombstone) is queued before the old ID
		// leaves memory, so no request can load the old entry back.
		m.wb.renamed(oldKey, newKey, st)
		m.ram.move(oldID, newID, st)
		h.bind(st, newID)
		h.renewed = true
		return nil
	}
	wasStored := st.stored()
	now := m.now()
	data := st.envelopeLocked(newKey, now)
	seq := st.seq
	st.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StorageTimeout)
	defer cancel()
	ok, err := m.storage.CompareAndSwap(ctx, newKey, nil, data, m.storeTTL)
	if err == nil && !ok {
		err = errors.New("an entry already exists under the new key")
	}
	if err != nil {
		err = m.storageFailed("renew", err)
		m.log.Warn("sessions: Renew failed; the session keeps its ID", "err", err)
		return fmt.Errorf("sessions: renew: writing the new entry (the session keeps its ID): %w", err)
	}
	m.stats.writes.Add(1)
	if wasStored {
		if err := m.storage.Delete(ctx, oldKey); err != nil {
			err = m.storageFailed("renew", err)
			// Undo: the session keeps its old ID; the new entry, under an
			// ID nobody was given, is removed (or expires).
			uctx, ucancel := context.WithTimeout(context.Background(), m.cfg.StorageTimeout)
			_ = m.storage.Delete(uctx, newKey)
			ucancel()
			m.log.Warn("sessions: Renew failed; the session keeps its ID", "err", err)
			return fmt.Errorf("sessions: renew: removing the old entry (the session keeps its ID): %w", err)
		}
		m.stats.deletes.Add(1)
	}
	m.storageOK()
	st.mu.Lock()
	st.id, st.key = newID, newKey
	st.storedAccess.Store(0)
	st.storedLocked(newKey, data, now, seq, true)
	st.mu.Unlock()
	m.ram.move(oldID, newID, st)
	h.bind(st, newID)
	h.renewed = true
	return nil
}

// invalidate ends the request's session everywhere and leaves the request
// without one. OnSessionEnd fires once every lock is released.
func (m *Manager) invalidate(h *Session) error {
	snap, err := m.invalidateLocked(h)
	if snap != nil {
		m.fireEnd(snap, EndInvalidated)
	}
	return err
}

func (m *Manager) invalidateLocked(h *Session) (*Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.readOnly {
		return nil, fmt.Errorf("%w: the session passed to OnSessionEnd is read-only", ErrSessionEnded)
	}
	b := h.bound.Load()
	if b == nil {
		return nil, nil
	}
	st := b.st
	if m.cfg.Cluster {
		st.commitMu.Lock()
		defer st.commitMu.Unlock()
	}
	st.mu.Lock()
	if !h.liveLocked(b) {
		// Ended by another request meanwhile: this one goes on as a guest.
		st.mu.Unlock()
		h.drop()
		return nil, nil
	}
	id, key := st.id, st.key
	if m.cfg.Cluster && st.stored() {
		// Cluster commits of this session hold commitMu, as this does:
		// none of this server's can write it back between the delete
		// and the end.
		base := st.base
		st.mu.Unlock()
		won, err := m.deleteToEnd(key, base)
		if err != nil {
			err = m.storageFailed("invalidate", err)
			m.log.Warn("sessions: Invalidate failed; the session is unchanged", "err", err)
			return nil, fmt.Errorf("sessions: invalidate (the session is unchanged): %w", err)
		}
		m.stats.deletes.Add(1)
		m.storageOK()
		st.mu.Lock()
		if !won {
			// Ended on another server meanwhile (which fired the end):
			// this request goes on as a guest.
			st.ended = true
			st.mu.Unlock()
			m.ram.remove(id, st)
			h.drop()
			return nil, nil
		}
	}
	snap := m.snapshotLocked(st)
	st.ended = true
	st.mu.Unlock()
	if !m.cfg.Cluster {
		// Unconditionally: a write-behind batch may be storing the key
		// right now, before the session records that it is stored; the
		// delete is queued after it and lands after it.
		m.wb.addDelete(key)
	}
	m.ram.remove(id, st)
	h.drop()
	h.invalidated = true
	return snap, nil
}

// deleteToEnd deletes a session's stored entry for Invalidate (cluster
// mode), reporting whether this call ended it, so that concurrent
// Invalidates on several servers, or a timeout claimed meanwhile, fire
// one end. With CompareAndDelete it deletes the copy it last saw, or the
// one another server wrote since (the session is invalidated whatever it
// holds); without it, it deletes and wins.
func (m *Manager) deleteToEnd(key string, base []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.StorageTimeout)
	defer cancel()
	if !m.claimsWithStorage() || base == nil {
		return true, m.storage.Delete(ctx, key)
	}
	for {
		won, err := m.storage.CompareAndDelete(ctx, key, base)
		if err != nil || won {
			return won, err
		}
		m.stats.reads.Add(1)
		base, err = m.storage.Get(ctx, key)
		if errors.Is(err, adapter.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// drop leaves the request without a session (h.mu held).
func (h *Session) drop() {
	if st, _ := h.cur(); h.pinned {
		h.m.release(st)
	}
	h.bind(nil, "")
	h.pinned, h.created, h.renewed, h.wrote = false, false, false, false
}

// endIdleLocked ends a resident session that timed out (sticky mode);
// the caller holds the RAM shard's write lock and checked that no request
// uses st. It returns the end for finishEnd to fire once the lock is
// released; ended is false if st had already ended.
func (m *Manager) endIdleLocked(st *state) (pe pendingEnd, ended bool) {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return pendingEnd{}, false
	}
	pe = pendingEnd{snap: m.snapshotLocked(st), key: st.key, base: st.base,
		stored: st.stored(), sinceOutage: st.storedSinceOutageLocked()}
	st.ended = true
	st.mu.Unlock()
	if !pe.stored || !m.claimsWithStorage() {
		m.wb.addDelete(pe.key) // before it leaves memory: see renew
	}
	return pe, true
}

// deadline returns when st times out (Unix ns): Timeout after the access
// time of its stored copy, the deadline other servers and the storage's
// claims judge it by; or, while it has never been stored or a refresh of
// the stored copy is due (queued or being written), Timeout after its last
// use.
func (st *state) deadline() int64 {
	last := st.lastAccess.Load()
	if stored := st.storedAccess.Load() * int64(time.Millisecond); stored != 0 && last-stored < int64(st.m.touchEvery) {
		return stored + int64(st.m.cfg.Timeout)
	}
	return last + int64(st.m.cfg.Timeout)
}
