package sessions

import (
	"hash/maphash"
	"sync"
	"time"
)

// ram is the in-memory tier: sessions by ID, sharded to keep lock
// contention low. A request pins the state it uses (state.users) under a
// shard's read lock; the sweeper takes a state out only under the shard's
// write lock and only with no request pinning it, so the two exclude each
// other.
type ram struct {
	seed   maphash.Seed
	shards [ramShards]ramShard
}

const ramShards = 64

type ramShard struct {
	mu sync.RWMutex // protects m, and pinning a state found in it
	m  map[string]*state
}

func (r *ram) init() {
	r.seed = maphash.MakeSeed()
	for i := range r.shards {
		r.shards[i].m = make(map[string]*state)
	}
}

func (r *ram) shard(id string) *ramShard {
	return &r.shards[maphash.String(r.seed, id)%ramShards]
}

// get returns the state under id without pinning it.
func (r *ram) get(id string) *state {
	sh := r.shard(id)
	sh.mu.RLock()
	st := sh.m[id]
	sh.mu.RUnlock()
	return st
}

// acquire pins and returns the state under id. When it is unused and was
// last used before deadline (Unix ns), it is returned unpinned with
// expired set: the caller decides under the write lock.
func (r *ram) acquire(id string, deadline int64) (st *state, expired bool) {
	sh := r.shard(id)
	sh.mu.RLock()
	st = sh.m[id]
	if st != nil {
		if st.lastAccess.Load() < deadline && st.users.Load() == 0 {
			expired = true
		} else {
			st.users.Add(1)
		}
	}
	sh.mu.RUnlock()
	return st, expired
}

// acquireUnlessExpired pins and returns the state under id unless it is
// unused and was last used before deadline; then it ends it (timeout) and
// returns nil.
func (r *ram) acquireUnlessExpired(m *Manager, id string, deadline int64) *state {
	sh := r.shard(id)
	sh.mu.Lock()
	st := sh.m[id]
	if st == nil {
		sh.mu.Unlock()
		return nil
	}
	if st.users.Load() > 0 || st.lastAccess.Load() >= deadline {
		st.users.Add(1)
		sh.mu.Unlock()
		return st
	}
	snap := m.endIdleLocked(st)
	delete(sh.m, id)
	sh.mu.Unlock()
	if snap != nil {
		m.fireEnd(snap, EndTimeout)
	}
	return nil
}

// insert stores a new state under id (IDs are 256-bit random: a collision
// is a broken random source).
func (r *ram) insert(id string, st *state) {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[id]; ok {
		panic("sessions: session ID collision")
	}
	sh.m[id] = st
}

// insertOrAcquire stores st under id, or, when a state is already there,
// pins and returns that one.
func (r *ram) insertOrAcquire(id string, st *state) *state {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if cur, ok := sh.m[id]; ok {
		cur.users.Add(1)
		return cur
	}
	sh.m[id] = st
	return nil
}

// remove deletes id if it still maps to st.
func (r *ram) remove(id string, st *state) bool {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[id] == st {
		delete(sh.m, id)
		return true
	}
	return false
}

// move re-files st from oldID to newID.
func (r *ram) move(oldID, newID string, st *state) {
	r.remove(oldID, st)
	r.insert(newID, st)
}

type idleState struct {
	id string
	st *state
}

// idle lists the states last used before the given Unix ns time.
func (r *ram) idle(before int64) []idleState {
	var out []idleState
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for id, st := range sh.m {
			if st.lastAccess.Load() < before {
				out = append(out, idleState{id, st})
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// evictIfIdle drops st from memory if no request uses it, it was last
// used before the given Unix ns time, and storage holds all of it.
func (r *ram) evictIfIdle(id string, st *state, before int64) bool {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[id] != st || st.users.Load() != 0 || st.lastAccess.Load() >= before || !st.ready.Load() {
		return false
	}
	st.mu.Lock()
	clean := !st.ended && len(st.dirty) == 0 && !st.queued.Load() && st.stored()
	st.mu.Unlock()
	if clean {
		delete(sh.m, id)
	}
	return clean
}

func (r *ram) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// sweepLoop ends timed-out sessions (sticky mode) and evicts idle ones.
func (m *Manager) sweepLoop() {
	defer m.wg.Done()
	every := m.cfg.Timeout
	if m.cfg.IdleEvict > 0 && m.cfg.IdleEvict < every {
		every = m.cfg.IdleEvict
	}
	every /= 4
	every = max(every, time.Millisecond)
	every = min(every, 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			now := m.now()
			m.lastTick.Store(now.UnixNano())
			m.sweep(now)
		}
	}
}

// sweep ends (sticky mode) or evicts (cluster mode) sessions unused for
// Timeout, and evicts sessions unused for IdleEvict. Sessions a request is
// using are left alone.
func (m *Manager) sweep(now time.Time) {
	timeoutBefore := now.Add(-m.cfg.Timeout).UnixNano()
	evictBefore := int64(-1 << 63)
	if m.cfg.IdleEvict > 0 {
		evictBefore = now.Add(-m.cfg.IdleEvict).UnixNano()
	}
	for _, c := range m.ram.idle(max(timeoutBefore, evictBefore)) {
		switch {
		case !m.cfg.Cluster && c.st.lastAccess.Load() < timeoutBefore:
			m.ram.timeoutIfIdle(m, c.id, c.st, timeoutBefore)
		case m.ram.evictIfIdle(c.id, c.st, max(timeoutBefore, evictBefore)):
			m.stats.evicted.Add(1)
		}
	}
}

// timeoutIfIdle ends st (sticky mode) if no request uses it and it was last
// used before deadline.
func (r *ram) timeoutIfIdle(m *Manager, id string, st *state, deadline int64) {
	sh := r.shard(id)
	sh.mu.Lock()
	if sh.m[id] != st || st.users.Load() != 0 || st.lastAccess.Load() >= deadline {
		sh.mu.Unlock()
		return
	}
	snap := m.endIdleLocked(st)
	delete(sh.m, id)
	sh.mu.Unlock()
	if snap != nil {
		m.fireEnd(snap, EndTimeout)
	}
}
