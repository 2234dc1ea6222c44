package sessions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/internal/adapter"
	"go.opentelemetry.io/otel/attribute"
)

// Sticky mode's storage policy (Config.Cluster false): memory is
// authoritative. A request finds its session in memory; storage is read
// only on a miss. Changes mark the session queued; flushLoop writes queued
// sessions after a WriteBehind window (so many changes cost one write) and
// never blocks a request. A write that fails is retried alone, with a
// backoff of its own, so one entry storage refuses does not hold back the
// others. Close drains the queue. After a storage failure the resident
// sessions are written again (repersistWalk), and an alive marker tells a
// storage that lost its data from a session that ended elsewhere.

// writeBehind is sticky mode's queue: the latest operation per storage key.
type writeBehind struct {
	mu  sync.Mutex        // protects following fields
	ops map[string]*state // storage key → session to write; nil: delete
	// tomb holds the keys whose delete is queued or in flight: a memory
	// miss must not load them back.
	tomb map[string]struct{}
	// retry holds the keys whose last attempt failed: not taken again
	// before their time (unless draining).
	retry    map[string]retryAt
	inflight int // taken by a flush, not yet done
	// since holds, for each queued key, when its oldest change not yet
	// in storage was queued (Unix ns); flushOldest, the oldest of the
	// operations a flush has taken, while any is in flight.
	since       map[string]int64
	flushOldest int64
	wake        chan struct{}
	// requeued counts operations queued again after a failure
	// (Stats.WriteBehindRetries).
	requeued atomic.Uint64
}

type retryAt struct {
	at    time.Time
	fails int
}

func (w *writeBehind) init() {
	w.ops = make(map[string]*state)
	w.tomb = make(map[string]struct{})
	w.retry = make(map[string]retryAt)
	w.since = make(map[string]int64)
	w.wake = make(chan struct{}, 1)
}

func (w *writeBehind) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// addWrite queues a write of st under key, unless key is being deleted
// (the session was renewed or ended: its key is never written again).
func (w *writeBehind) addWrite(key string, st *state) {
	w.mu.Lock()
	if _, deleting := w.tomb[key]; !deleting {
		w.ops[key] = st
		w.queuedNow(key)
	}
	w.mu.Unlock()
	w.signal()
}

// queuedNow records that key has a queued change from now on, unless an
// older one is queued already (w.mu held).
func (w *writeBehind) queuedNow(key string) {
	if _, ok := w.since[key]; !ok {
		w.since[key] = time.Now().UnixNano()
	}
}

// addDelete queues a delete of key, replacing any queued write.
func (w *writeBehind) addDelete(key string) {
	w.mu.Lock()
	w.ops[key] = nil
	w.queuedNow(key)
	w.tomb[key] = struct{}{}
	delete(w.retry, key)
	w.mu.Unlock()
	w.signal()
}

// renamed queues the delete of a renewed session's old key and the write
// of its new one, in one step.
func (w *writeBehind) renamed(oldKey, newKey string, st *state) {
	w.mu.Lock()
	w.ops[oldKey] = nil
	w.queuedNow(oldKey)
	w.tomb[oldKey] = struct{}{}
	delete(w.retry, oldKey)
	w.ops[newKey] = st
	w.queuedNow(newKey)
	st.queued.Store(true)
	w.mu.Unlock()
	w.signal()
}

// requeue puts back a failed operation, unless a newer one replaced it,
// and holds it back with a backoff of its own.
func (w *writeBehind) requeue(key string, st *state, base time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, newer := w.ops[key]; !newer {
		w.ops[key] = st
		if st != nil {
			st.queued.Store(true)
		}
	}
	if since, ok := w.since[key]; !ok || w.flushOldest < since {
		w.since[key] = w.flushOldest // as old as the flush it failed in
	}
	w.requeued.Add(1)
	r := w.retry[key]
	r.fails++
	r.at = time.Now().Add(min(base<<min(r.fails, 20), maxBackoff))
	w.retry[key] = r
}

// succeeded records that an operation on key reached storage.
func (w *writeBehind) succeeded(key string, deleted bool) {
	w.mu.Lock()
	delete(w.retry, key)
	if _, again := w.ops[key]; deleted && !again {
		delete(w.tomb, key)
	}
	w.mu.Unlock()
}

// take removes and returns the operations due (all of them when force),
// and which of them failed before (those are written alone).
func (w *writeBehind) take(force bool) (ops map[string]*state, failedBefore map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ops) == 0 {
		return nil, nil
	}
	if len(w.retry) == 0 {
		ops = w.ops
		w.ops = make(map[string]*state, min(len(ops), 1024)) // a burst's size is not kept
	} else {
		now := time.Now()
		ops = make(map[string]*state)
		failedBefore = make(map[string]bool)
		for key, st := range w.ops {
			if r, held := w.retry[key]; held {
				if !force && r.at.After(now) {
					continue
				}
				failedBefore[key] = true
			}
			ops[key] = st
			delete(w.ops, key)
		}
	}
	oldest := int64(0)
	for key, st := range ops {
		if st != nil {
			st.queued.Store(false)
		}
		if t := w.since[key]; oldest == 0 || t < oldest {
			oldest = t
		}
		delete(w.since, key)
	}
	if w.inflight == 0 || oldest < w.flushOldest {
		w.flushOldest = oldest
	}
	w.inflight += len(ops)
	return ops, failedBefore
}

// lag returns the age of the oldest change not yet acknowledged by
// storage: what a crash would lose right now.
func (w *writeBehind) lag() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := int64(0)
	if w.inflight > 0 {
		oldest = w.flushOldest
	}
	for _, t := range w.since {
		if oldest == 0 || t < oldest {
			oldest = t
		}
	}
	if oldest == 0 {
		return 0
	}
	return time.Duration(max(time.Now().UnixNano()-oldest, 0))
}

// nextRetry returns the earliest time a held-back operation is due.
func (w *writeBehind) nextRetry() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Time
	for key, r := range w.retry {
		if _, queued := w.ops[key]; queued && (next.IsZero() || r.at.Before(next)) {
			next = r.at
		}
	}
	return next, !next.IsZero()
}

// done ends n operations taken by take (after any requeue).
func (w *writeBehind) done(n int) {
	w.mu.Lock()
	w.inflight -= n
	w.mu.Unlock()
}

// deleting reports whether a delete of key is queued or in flight, so that
// a memory miss does not read back an entry that is already gone logically.
func (w *writeBehind) deleting(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.tomb[key]
	return ok
}

// len counts operations not yet acknowledged: queued or being written.
func (w *writeBehind) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ops) + w.inflight
}

// enqueue schedules a write-behind of st (sticky mode); cheap when st is
// already queued.
func (m *Manager) enqueue(st *state) {
	if st.queued.CompareAndSwap(false, true) {
		st.mu.Lock()
		key := st.key
		st.mu.Unlock()
		m.wb.addWrite(key, st)
	}
}

const maxBackoff = 5 * time.Second

func (m *Manager) flushLoop() {
	defer m.wg.Done()
	window := time.NewTimer(time.Hour)
	window.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer window.Stop()
	defer retry.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.wb.wake:
			// Coalesce the changes of one WriteBehind window.
			window.Reset(m.cfg.WriteBehind)
			select {
			case <-m.stop:
				return
			case <-window.C:
			}
		case <-retry.C:
		}
		if m.repersist.step(m) {
			m.wb.signal() // more to walk after this flush
		}
		m.flushBatch(m.flushCtx, false)
		if at, ok := m.wb.nextRetry(); ok {
			retry.Reset(max(time.Until(at), m.cfg.WriteBehind))
		}
	}
}

// flushBatch performs every due operation once and returns how many failed
// (those are queued again, each with its own backoff). force takes held
// back operations too (Close).
func (m *Manager) flushBatch(ctx context.Context, force bool) (failed int) {
	ops, failedBefore := m.wb.take(force)
	if len(ops) == 0 {
		return 0
	}
	ctx, sp := m.startSpan(ctx, "sessions.flush")
	if sp != nil || m.cfg.Observer != nil {
		defer func() {
			if m.cfg.Observer != nil {
				m.cfg.Observer.FlushBatch(len(ops), failed)
			}
			outcome := "written"
			if failed > 0 {
				outcome = "retrying"
			}
			endSpan(sp, outcome, nil, func() []attribute.KeyValue {
				return []attribute.KeyValue{attribute.Int("sessions.batch_size", len(ops)), attribute.Int("sessions.failed", failed)}
			})
		}()
	}
	var (
		wg       sync.WaitGroup
		nfailed  atomic.Int64
		sema     = make(chan struct{}, adapter.Concurrency)
		batchKey []string
		batchSt  []*state
	)
	run := func(fn func() error) {
		sema <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sema; wg.Done() }()
			if fn() != nil {
				nfailed.Add(1)
			}
		}()
	}
	var retryKey []string
	var retrySt []*state
	for key, st := range ops {
		switch {
		case st == nil:
			run(func() error { return m.flushDelete(ctx, key) })
		case m.storage.HasCAS() && failedBefore[key]:
			retryKey, retrySt = append(retryKey, key), append(retrySt, st)
		case m.storage.HasCAS(), m.storage.HasBatch() && !failedBefore[key]:
			batchKey, batchSt = append(batchKey, key), append(batchSt, st)
		default:
			run(func() error { return m.flushWrite(ctx, key, st) })
		}
	}
	flush := m.flushBatched
	if m.storage.HasCAS() {
		flush = m.flushMerged
	}
	// Up to batchesInFlight batches at a time: the keys of one flush are
	// distinct, so batches of it may land in any order; the next flush
	// starts after the last of them.
	var bwg sync.WaitGroup
	bsema := make(chan struct{}, batchesInFlight)
	batches := func(keys []string, sts []*state) {
		for i := 0; i < len(keys); i += batchSize {
			end := min(i+batchSize, len(keys))
			bsema <- struct{}{}
			bwg.Add(1)
			go func() {
				defer func() { <-bsema; bwg.Done() }()
				nfailed.Add(int64(flush(ctx, keys[i:end], sts[i:end])))
			}()
		}
	}
	batches(batchKey, batchSt)
	// Entries that failed before go in batches of their own, so that one
	// the storage keeps refusing does not fail a batch of others.
	batches(retryKey, retrySt)
	bwg.Wait()
	wg.Wait()
	return int(nfailed.Load())
}

// batchesInFlight bounds the batches of one flush written in parallel.
const batchesInFlight = 4

// flushMerged writes up to batchSize sessions with compare-and-swap
// against the stored copy each is based on (stores with CompareAndSwap),
// so that a flush never replaces a version another server stored
// meanwhile (a routing flap). A session that lost is merged: the stored
// version is read, this server's changed keys are applied on top of it,
// and it is queued again; one whose entry is gone with a stored base ended
// on another server and is not written back.
func (m *Manager) flushMerged(ctx context.Context, keys []string, sts []*state) (failed int) {
	writes := m.encodeQueued(keys, sts)
	if len(writes) == 0 {
		return 0
	}
	olds := make([][]byte, len(writes))
	values := make([][]byte, len(writes))
	wkeys := make([]string, len(writes))
	for i, w := range writes {
		olds[i], values[i], wkeys[i] = w.base, w.data, w.key
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	swapped, errs := m.storage.CompareAndSwapMany(cctx, wkeys, olds, values, m.storeTTL)
	cancel()
	landed := 0
	var lost []queuedWrite
	for i, w := range writes {
		switch {
		case errs[i] != nil:
			failed++
			m.storageFailed("write", errs[i])
			m.wb.requeue(w.key, w.st, m.cfg.WriteBehind)
		case swapped[i]:
			landed++
			m.wb.succeeded(w.key, false)
			w.st.mu.Lock()
			w.st.storedLocked(w.key, w.data, w.now, w.seq, true)
			w.st.mu.Unlock()
		default:
			lost = append(lost, w)
		}
	}
	if landed > 0 {
		m.stats.writes.Add(uint64(landed))
		m.storageOK()
		for i, w := range writes {
			// Refused alone while others landed: say which, once.
			if errs[i] != nil && m.refused.first(w.key) {
				m.log.Warn("sessions: storage refuses this session's write; retrying it alone with backoff",
					"key", w.key, "bytes", len(w.data), "err", errs[i])
			}
		}
	}
	for _, w := range lost {
		m.stats.conflicts.Add(1)
		if err := m.mergeStored(ctx, w.key, w.st, w.base); err != nil {
			failed++
			m.wb.requeue(w.key, w.st, m.cfg.WriteBehind)
		} else {
			m.wb.succeeded(w.key, false)
		}
	}
	m.wb.done(len(writes))
	return failed
}

// mergeStored brings st up to date with the version another server stored
// under key (sticky mode, after a lost compare-and-swap against base) and
// queues it again so that its own changes are written on top. An entry gone
// although st was based on a stored one ended on another server: st ends
// here too, without an end event (the other server fired it).
func (m *Manager) mergeStored(ctx context.Context, key string, st *state, base []byte) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	cur, err := m.storage.Get(cctx, key)
	cancel()
	m.stats.reads.Add(1)
	st.mu.Lock()
	id, ours, endedElsewhere := st.id, st.key == key, st.endedElsewhereLocked()
	st.mu.Unlock()
	if errors.Is(err, adapter.ErrNotFound) && endedElsewhere {
		lost, merr := m.storageLost(ctx)
		if merr != nil {
			return merr
		}
		endedElsewhere = !lost
	}
	switch {
	case errors.Is(err, adapter.ErrNotFound) && endedElsewhere:
		if ours {
			m.forget(id, st)
			m.log.Info("sessions: session ended on another server; its changes here are dropped", "key", key)
		}
		return nil
	case errors.Is(err, adapter.ErrNotFound):
		// Absent and not ended elsewhere: the storage lost it while it
		// failed, or an "only if absent" write raced with another
		// writer. Write it again, only if absent.
		st.mu.Lock()
		if st.key == key {
			st.base = nil
		}
		st.mu.Unlock()
	case err != nil:
		m.storageFailed("read", err)
		return err
	default:
		env := m.decode(key, cur)
		rewrite := true
		st.mu.Lock()
		if st.key == key && !st.ended {
			if env != nil && env.Revision >= st.revision {
				st.adoptLocked(env, cur)
				rewrite = len(st.dirty) > 0 // else storage has all of it
			} else {
				st.base = cur // older or unreadable: overwrite it with this copy
			}
		}
		st.mu.Unlock()
		if !rewrite {
			return nil
		}
	}
	if st.queued.CompareAndSwap(false, true) {
		m.wb.addWrite(key, st)
	}
	return nil
}

// batchSize bounds one SetMany call.
const batchSize = 256

// flushBatched writes up to batchSize sessions with one SetMany. When the
// batch fails, its entries are written one by one, so that one entry the
// storage refuses (too large, say) does not hold back the others; only
// the ones that fail alone are queued again. A flush ends only when all
// its batches are done, so an operation queued after a batch was taken (a
// delete after Invalidate) always lands after it.
func (m *Manager) flushBatched(ctx context.Context, keys []string, sts []*state) (failed int) {
	writes := m.encodeQueued(keys, sts)
	if len(writes) == 0 {
		return 0
	}
	values := make([][]byte, len(writes))
	wkeys := make([]string, len(writes))
	for i, w := range writes {
		values[i], wkeys[i] = w.data, w.key
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	err := m.storage.SetMany(cctx, wkeys, values, m.storeTTL)
	cancel()
	if err == nil {
		m.stats.writes.Add(uint64(len(writes)))
		m.storageOK()
		for _, w := range writes {
			m.wb.succeeded(w.key, false)
			w.st.mu.Lock()
			w.st.storedLocked(w.key, w.data, w.now, w.seq, false)
			w.st.mu.Unlock()
		}
		m.wb.done(len(writes))
		return 0
	}
	m.storageFailed("write", err)
	m.log.Warn("sessions: a batched write failed; writing its sessions one by one", "sessions", len(writes), "err", err)
	// One by one, adapter.Concurrency at a time; a group in which every
	// write fails means the storage itself is failing: the rest are
	// queued again without trying.
	for i := 0; i < len(writes); i += adapter.Concurrency {
		group := writes[i:min(i+adapter.Concurrency, len(writes))]
		var wg sync.WaitGroup
		var ok atomic.Int64
		errs := make([]error, len(group))
		for j, w := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if errs[j] = m.flushWrite(ctx, w.key, w.st); errs[j] == nil {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		failed += len(group) - int(ok.Load())
		for j, err := range errs {
			// Refused alone while others landed: say which, once.
			if err != nil && ok.Load() > 0 && m.refused.first(group[j].key) {
				m.log.Warn("sessions: storage refuses this session's write; retrying it alone with backoff",
					"key", group[j].key, "bytes", len(group[j].data), "err", err)
			}
		}
		if ok.Load() == 0 {
			for _, w := range writes[i+len(group):] {
				m.wb.requeue(w.key, w.st, m.cfg.WriteBehind)
				m.wb.done(1)
				failed++
			}
			break
		}
	}
	return failed
}

// queuedWrite is one session encoded for a batch write.
type queuedWrite struct {
	key        string
	st         *state
	base, data []byte // the stored copy it is based on, and the new one
	now        time.Time
	seq        uint64
}

// encodeQueued encodes the sessions of a batch taken from the queue,
// skipping (and ending the operations of) those renewed or ended since.
func (m *Manager) encodeQueued(keys []string, sts []*state) []queuedWrite {
	writes := make([]queuedWrite, 0, len(keys))
	for i, key := range keys {
		st := sts[i]
		st.mu.Lock()
		if st.ended || st.key != key {
			st.mu.Unlock()
			continue // renewed or ended since it was queued
		}
		now := m.now()
		writes = append(writes, queuedWrite{key: key, st: st, base: st.base, data: st.envelopeLocked(key, now), now: now, seq: st.seq})
		st.mu.Unlock()
	}
	m.wb.done(len(keys) - len(writes))
	return writes
}

// flushWrite writes one session; on failure it queues it again with its
// own backoff. It ends one operation taken by take.
func (m *Manager) flushWrite(ctx context.Context, key string, st *state) error {
	defer m.wb.done(1)
	st.mu.Lock()
	if st.ended || st.key != key {
		st.mu.Unlock()
		return nil // renewed or ended since it was queued
	}
	now := m.now()
	data := st.envelopeLocked(key, now)
	seq := st.seq
	st.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	err := m.storage.Set(cctx, key, data, m.storeTTL)
	cancel()
	if err != nil {
		m.storageFailed("write", err)
		m.wb.requeue(key, st, m.cfg.WriteBehind)
		return err
	}
	m.stats.writes.Add(1)
	m.storageOK()
	m.wb.succeeded(key, false)
	st.mu.Lock()
	st.storedLocked(key, data, now, seq, false)
	st.mu.Unlock()
	return nil
}

// flushDelete deletes one key; on failure it queues it again. It ends one
// operation taken by take.
func (m *Manager) flushDelete(ctx context.Context, key string) error {
	defer m.wb.done(1)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	err := m.storage.Delete(cctx, key)
	cancel()
	if err != nil {
		m.storageFailed("delete", err)
		m.wb.requeue(key, nil, m.cfg.WriteBehind)
		return err
	}
	m.stats.deletes.Add(1)
	m.storageOK()
	m.wb.succeeded(key, true)
	return nil
}

// drain flushes until the queue is empty or ctx ends (Close).
func (m *Manager) drain(ctx context.Context) error {
	backoff := m.cfg.WriteBehind
	// A rewrite of the resident sessions after a storage failure is
	// finished too: a storage that came back empty holds them only once
	// they are written again.
	for m.repersist.step(m) || m.wb.len() > 0 {
		if ctx.Err() == nil && m.flushBatch(ctx, true) == 0 {
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

// repersistWalk re-queues every resident session after storage recovered
// from a failure (sticky mode): a storage that comes back empty (Redis
// without persistence, a memcached restart) would otherwise hold only the
// sessions that changed since, and a restart of this server would lose
// the others. The walk is paced, a few batches per write-behind window, by
// the flusher; each session is written "only if absent" and merged with
// what storage has otherwise, so a storage that kept its data costs a read
// per session and loses nothing.
type repersistWalk struct {
	mu     sync.Mutex // protects following fields
	active bool
	shard  int // next shard to walk
	queued int // sessions queued by this walk so far
}

// repersistPerStep bounds the sessions one step queues.
const repersistPerStep = 4 * batchSize

func (r *repersistWalk) start(m *Manager) {
	r.mu.Lock()
	r.active, r.shard, r.queued = true, 0, 0
	r.mu.Unlock()
	m.log.Info("sessions: storage recovered after a failure; writing the sessions held in memory again, in case it lost them",
		"resident", m.ram.len())
	m.wb.signal()
}

// step queues the next sessions of the walk; it reports whether the walk
// has more to do.
func (r *repersistWalk) step(m *Manager) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		return false
	}
	budget := repersistPerStep
	for ; r.shard < ramShards && budget > 0; r.shard++ {
		sh := &m.ram.shards[r.shard]
		sh.mu.RLock()
		sts := make([]*state, 0, len(sh.m))
		for _, st := range sh.m {
			sts = append(sts, st)
		}
		sh.mu.RUnlock()
		for _, st := range sts {
			if !st.ready.Load() {
				continue
			}
			st.mu.Lock()
			live := !st.ended && st.id != ""
			if live {
				st.base = nil // unknown: write only if absent, else merge
			}
			st.mu.Unlock()
			if live {
				st.queued.Store(false)
				m.enqueue(st)
				r.queued++
				budget--
				m.stats.repersisted.Add(1)
			}
		}
	}
	if r.shard < ramShards {
		return true
	}
	r.active = false
	m.log.Info("sessions: every session held in memory is queued to be written again", "sessions", r.queued)
	return false
}

// The alive marker: a small entry each sticky Manager keeps in storage, so
// that it can tell a session ended on another server (its entry deleted,
// the marker still there) from a storage that lost its data without this
// server seeing a failed call (a Redis restarted empty between two calls:
// go-redis retries on a new connection and reports nothing). Its key is
// outside the sessions' key space, one per Manager; its TTL covers many
// sweeps, each of which writes it again.

const markerTTL = 10 * time.Minute

func (m *Manager) markerKey() string {
	return "sessions-alive:" + m.cfg.KeyPrefix + strconv.FormatUint(uint64(m.node), 36)
}

// keepsMarker reports whether the storage gets an alive marker: one that
// may lose its data while this process runs (a server: Redis, memcached,
// SQL, or a cache that evicts), not the memory driver or a bolt file,
// which cannot lose it behind this process's back.
func (m *Manager) keepsMarker() bool {
	if m.cfg.Cluster {
		return false
	}
	switch m.storage.Store().GetType() {
	case memory.Type, "bolt", "unreachable":
		return false
	}
	return true
}

// writeMarker (re)writes this Manager's alive marker.
func (m *Manager) writeMarker(ctx context.Context) {
	if !m.keepsMarker() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	defer cancel()
	if err := m.storage.Set(ctx, m.markerKey(), []byte{1}, markerTTL); err == nil {
		m.markerWritten.Store(true)
	}
}

// storageLost reports whether the storage lost its data since this
// Manager last wrote its marker: then a missing entry was not deleted by
// another server. A lost storage starts the rewrite of every resident
// session, as after an outage.
func (m *Manager) storageLost(ctx context.Context) (bool, error) {
	if !m.markerWritten.Load() {
		return false, nil // no marker yet: nothing to compare with
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.StorageTimeout)
	_, err := m.storage.Get(cctx, m.markerKey())
	cancel()
	switch {
	case errors.Is(err, adapter.ErrNotFound):
	case err != nil:
		m.storageFailed("read", err)
		return false, err
	default:
		return false, nil
	}
	if m.markerWritten.CompareAndSwap(true, false) {
		m.log.Warn("sessions: the storage lost its data (restarted empty?); writing the sessions held in memory again",
			"storage", m.storage.Name())
		m.outages.Add(1) // every stored copy is in doubt until written again
		m.repersist.start(m)
		m.writeMarker(ctx)
	}
	return true, nil
}
