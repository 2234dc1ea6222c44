package sessions

import (
	"hash/maphash"
	"math"
	"runtime"
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
	mu sync.RWMutex // protects m, peak and gen, and pinning a state found in it
	m  map[string]*state
	// peak is the most entries m held since it was made. A Go map keeps
	// its memory when entries are deleted: the sweeper rebuilds m once it
	// holds under peak/shrinkRatio entries.
	peak int
	// gen counts changes to m, so that the sweeper can tell whether a
	// copy it made under the read lock is still current.
	gen uint64
}

// putLocked files st under id (write lock held).
func (sh *ramShard) putLocked(id string, st *state) {
	sh.m[id] = st
	sh.gen++
	sh.peak = max(sh.peak, len(sh.m))
}

// deleteLocked unfiles id (write lock held).
func (sh *ramShard) deleteLocked(id string) {
	delete(sh.m, id)
	sh.gen++
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

// acquire pins and returns the state under id. When it is unused and its
// deadline is before now (Unix ns; math.MinInt64: never), it is returned
// unpinned with expired set: the caller decides under the write lock.
func (r *ram) acquire(id string, now int64) (st *state, expired bool) {
	sh := r.shard(id)
	sh.mu.RLock()
	st = sh.m[id]
	if st != nil {
		if st.users.Load() == 0 && st.deadline() < now {
			expired = true
		} else {
			st.users.Add(1)
		}
	}
	sh.mu.RUnlock()
	return st, expired
}

// acquireUnlessExpired pins and returns the state under id unless it is
// unused and its deadline is before now; then it ends it (timeout) and
// returns nil.
func (r *ram) acquireUnlessExpired(m *Manager, id string, now int64) *state {
	sh := r.shard(id)
	sh.mu.Lock()
	st := sh.m[id]
	if st == nil {
		sh.mu.Unlock()
		return nil
	}
	if st.users.Load() > 0 || st.deadline() >= now {
		st.users.Add(1)
		sh.mu.Unlock()
		return st
	}
	pe, ended := m.endIdleLocked(st)
	sh.deleteLocked(id)
	sh.mu.Unlock()
	if ended {
		m.finishEnd(pe)
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
	sh.putLocked(id, st)
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
	sh.putLocked(id, st)
	return nil
}

// remove deletes id if it still maps to st.
func (r *ram) remove(id string, st *state) bool {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[id] == st {
		sh.deleteLocked(id)
		return true
	}
	return false
}

// move re-files st from oldID to newID.
func (r *ram) move(oldID, newID string, st *state) {
	r.remove(oldID, st)
	r.insert(newID, st)
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
	m.writeMarker(m.flushCtx)
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			now := m.now()
			m.lastTick.Store(now.UnixNano())
			if !m.storageDown.Load() {
				m.writeMarker(m.flushCtx)
			}
			m.sweep(now)
			m.claimExpired(m.flushCtx, now)
		}
	}
}

// The sweeper never makes a request wait long:
//   - it scans a shard at most sweepScan entries per read-lock acquisition
//     (an insert waiting for the write lock holds back the shard's
//     readers), collecting the states last used before the sweep's
//     cut-off;
//   - it takes them out at most sweepBatch (sweepEnds when it ends them)
//     per write-lock acquisition, re-checking each under that lock
//     (verdict), visiting the shards in turn, one batch each;
//   - it takes a write lock only when no reader holds the shard (TryLock):
//     a blocked Lock would make every request reading the shard meanwhile
//     wait behind it, and requests that waited behind the previous batch
//     hold the read lock until the scheduler runs them, which takes
//     milliseconds on a busy machine: such a shard is passed over until
//     the next turn;
//   - OnSessionEnd fires for the timed-out states after the lock is
//     released;
//   - once a shard holds under 1/shrinkRatio of its peak, its map is
//     rebuilt, giving the memory of the deleted entries back.
const (
	sweepScan  = 1024
	sweepBatch = 128
	// sweepEnds bounds the sessions ended per write-lock acquisition.
	sweepEnds = 16
	// sweepSpins bounds the TryLock attempts of one turn.
	sweepSpins = 64
	// sweepPasses is how many turns a shard is passed over before the
	// sweeper waits for its lock.
	sweepPasses = 16
	shrinkRatio = 4
	// shrinkMin is the smallest peak worth rebuilding a map for.
	shrinkMin = 1024
)

// sweep ends (sticky mode) or evicts (cluster mode) sessions unused for
// Timeout, and evicts sessions unused for IdleEvict. Sessions a request is
// using are left alone.
func (m *Manager) sweep(now time.Time) {
	p := sweepPass{m: m, sticky: !m.cfg.Cluster, now: now.UnixNano(), idleBefore: math.MinInt64}
	if !p.sticky {
		p.idleBefore = now.Add(-m.cfg.Timeout).UnixNano() // past its deadline: a cache entry nobody needs
	}
	if m.cfg.IdleEvict > 0 {
		p.idleBefore = max(p.idleBefore, now.Add(-m.cfg.IdleEvict).UnixNano())
	}
	var todo [ramShards][]idleState
	var passed [ramShards]int
	for i := range m.ram.shards {
		todo[i] = p.collect(&m.ram.shards[i])
	}
	for pending := true; pending; {
		progress := false
		pending = false
		for i := range todo {
			if len(todo[i]) == 0 {
				continue
			}
			n := p.take(&m.ram.shards[i], todo[i][:min(len(todo[i]), sweepBatch)], passed[i] >= sweepPasses)
			if n == 0 {
				passed[i]++
				pending = true
				continue
			}
			clear(todo[i][:n]) // no references kept to states taken out
			todo[i], passed[i], progress = todo[i][n:], 0, true
			pending = pending || len(todo[i]) > 0
		}
		if pending && !progress {
			runtime.Gosched() // let the readers holding the shards run
		}
	}
	for i := range m.ram.shards {
		m.ram.shards[i].shrink()
	}
}

// sweepPass is one sweep's cut-offs and reusable buffers.
type sweepPass struct {
	m          *Manager
	sticky     bool
	now        int64 // Unix ns: sticky mode ends states whose deadline is before it
	idleBefore int64 // Unix ns: states last used before it are evicted (IdleEvict; cluster mode: also Timeout)
	batch      []idleState
	ends       []pendingEnd
}

type idleState struct {
	id string
	st *state
}

type sweepAction int

const (
	sweepKeep sweepAction = iota
	sweepEvict
	sweepTimeout
)

// verdict says what the sweep may do with st: end it (sticky mode: no
// request uses it and its deadline has passed), evict it (no
// request uses it, last used before idleBefore, loaded, not ended, and
// storage holds all of it: no unsaved change, no write queued, and written
// or read since the storage last failed), or keep it. Only a verdict
// reached under the shard's write lock, with st still filed there, counts;
// without that lock it is a pre-check.
func (p *sweepPass) verdict(st *state) sweepAction {
	if st.users.Load() != 0 {
		return sweepKeep
	}
	if p.sticky && st.deadline() < p.now {
		return sweepTimeout
	}
	if st.lastAccess.Load() >= p.idleBefore || !st.ready.Load() {
		return sweepKeep
	}
	st.mu.Lock()
	// Since a storage failure, a session is not known to be stored until
	// written again (the storage may have come back empty).
	clean := !st.ended && len(st.dirty) == 0 && !st.queued.Load() && st.stored() && st.storedSinceOutageLocked()
	st.mu.Unlock()
	if !clean {
		return sweepKeep
	}
	return sweepEvict
}

// collect returns the states of sh last used before idleBefore or (sticky
// mode) past their deadline.
func (p *sweepPass) collect(sh *ramShard) []idleState {
	var out []idleState
	sh.mu.RLock()
	scanned := 0
	// The read lock is released between slices; changes to the map
	// meanwhile are changes during iteration, which range allows: a
	// deleted entry not reached yet is not produced, an added one may be.
	for id, st := range sh.m {
		if st.lastAccess.Load() < p.idleBefore || p.sticky && st.deadline() < p.now {
			out = append(out, idleState{id, st})
		}
		if scanned++; scanned%sweepScan == 0 {
			sh.mu.RUnlock()
			sh.mu.RLock()
		}
	}
	sh.mu.RUnlock()
	return out
}

// take ends or evicts, under one acquisition of sh's write lock, the
// candidates whose verdict under that lock says so, then fires their
// OnSessionEnd with no lock held. It returns how many candidates, from
// the first, it dealt with: none when readers hold the lock (unless wait).
func (p *sweepPass) take(sh *ramShard, cand []idleState, wait bool) int {
	// Pre-check under the read lock: the write-locked section is then
	// only the re-check of the states likely to go, their memory and
	// their map entries in cache. Ending a session costs more than
	// evicting one (a snapshot, a queued delete): at most sweepEnds are
	// ended per acquisition.
	batch, ends, dealt := p.batch[:0], 0, 0
	sh.mu.RLock()
	for _, c := range cand {
		if ends == sweepEnds {
			break
		}
		dealt++
		if sh.m[c.id] != c.st {
			continue
		}
		switch p.verdict(c.st) {
		case sweepTimeout:
			ends++
			fallthrough
		case sweepEvict:
			batch = append(batch, c)
		}
	}
	sh.mu.RUnlock()
	p.batch = batch
	if len(batch) == 0 {
		return dealt
	}
	if !sh.tryLock() {
		if !wait {
			return 0
		}
		sh.mu.Lock()
	}
	evicted := 0
	for _, c := range batch {
		if sh.m[c.id] != c.st {
			continue // removed, renewed or reloaded meanwhile
		}
		switch p.verdict(c.st) {
		case sweepEvict:
			sh.deleteLocked(c.id)
			evicted++
		case sweepTimeout:
			if pe, ended := p.m.endIdleLocked(c.st); ended {
				p.ends = append(p.ends, pe)
			}
			sh.deleteLocked(c.id)
		}
	}
	sh.mu.Unlock()
	if evicted > 0 {
		p.m.stats.evicted.Add(uint64(evicted))
	}
	clear(p.batch)
	p.m.finishEnds(p.ends)
	clear(p.ends)
	p.ends = p.ends[:0]
	return dealt
}

// tryLock takes sh's write lock if readers let it within a few attempts
// (a reader holds it for a map lookup); it never makes anyone wait.
func (sh *ramShard) tryLock() bool {
	for range sweepSpins {
		if sh.mu.TryLock() {
			return true
		}
	}
	return false
}

// shrink rebuilds sh's map when it holds under 1/shrinkRatio of its peak.
// The copy is made under the read lock and swapped in only if the map did
// not change meanwhile and no reader holds the lock; else the next sweep
// tries again.
func (sh *ramShard) shrink() {
	sh.mu.RLock()
	n, gen := len(sh.m), sh.gen
	if sh.peak < shrinkMin || n >= sh.peak/shrinkRatio {
		sh.mu.RUnlock()
		return
	}
	fresh := make(map[string]*state, n)
	for id, st := range sh.m {
		fresh[id] = st
	}
	sh.mu.RUnlock()
	if !sh.tryLock() {
		return
	}
	if sh.gen == gen {
		sh.m, sh.peak = fresh, n
	}
	sh.mu.Unlock()
}
