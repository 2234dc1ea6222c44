// Package memory is an in-process gocache store: the library's default
// storage and the reference implementation of the driver contract.
//
// It keeps byte values in a sharded map with per-entry expiry. Every value
// is copied in and out, so callers never share memory with the store. It
// implements the optional capabilities the library uses: CompareAndSwap
// (and CompareAndSwapMany, SetMany), CompareAndDelete, with which servers
// sharing the store claim an entry exactly once, and ListExpiring, which
// lists the entries about to expire. Each shard keeps its entries that have
// a TTL in a min-heap by deadline: ListExpiring reads only the part of each
// heap due before its bound. Expired entries are invisible at once and
// removed by a background sweep (every SweepInterval, default 1 s) that
// frees their memory; it touches only expired entries and takes a shard's
// lock for at most sweepSlice of them at a time. The sweep goroutine starts
// with the first entry that has a TTL; Close stops it.
//
// URL form (for sessions.Config.Storage): "memory" or "memory://", with one
// option, sweep (the SweepInterval, such as ?sweep=2s). Data lives
// only as long as the process; use it for single-server development and
// tests, or as a Config.Store shared by several Managers in one process.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
)

// Type is what GetType returns.
const Type = "memory"

const shardCount = 32

// sweepSlice is the most expired entries the sweep removes under one
// acquisition of a shard's lock.
const sweepSlice = 64

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often expired entries are removed, to free
	// their memory (they are invisible from their deadline on). Default 1 s.
	SweepInterval time.Duration
}

// The capabilities the library finds by type assertion: a signature
// change fails to compile here instead of silently dropping one.
var (
	_ driver.Store                  = (*Store)(nil)
	_ driver.CompareAndSwapper      = (*Store)(nil)
	_ driver.BatchCompareAndSwapper = (*Store)(nil)
	_ driver.BatchSetter            = (*Store)(nil)
	_ driver.CompareAndDeleter      = (*Store)(nil)
	_ driver.ExpiryLister           = (*Store)(nil)
)

// Store is the in-process store. It is safe for concurrent use. The zero
// value is not usable: call New.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard
	sweep  time.Duration

	start  sync.Once
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
}

// shard is one lock's share of the entries. Every entry with a deadline
// has a node in h, exactly one, at that deadline; entries without have
// none.
type shard struct {
	mu sync.RWMutex
	m  map[string]item
	h  deadlines
}

type item struct {
	value   []byte // replaced on write, never modified in place
	expires int64  // Unix nanoseconds; 0: never
	node    *node  // in h when expires != 0, else nil
}

// node is an entry's place in its shard's heap.
type node struct {
	key string
	idx int
}

// deadlines is a 4-ary min-heap of nodes by deadline.
type deadlines []slot

type slot struct {
	expires int64
	n       *node
}

func (h deadlines) put(i int, s slot) {
	h[i] = s
	s.n.idx = i
}

// up moves the slot at i towards the root to its place.
func (h deadlines) up(i int) {
	s := h[i]
	for i > 0 {
		p := (i - 1) / 4
		if h[p].expires <= s.expires {
			break
		}
		h.put(i, h[p])
		i = p
	}
	h.put(i, s)
}

// down moves the slot at i towards the leaves to its place.
func (h deadlines) down(i int) {
	s := h[i]
	for {
		c := 4*i + 1
		if c >= len(h) {
			break
		}
		m := c
		for j := c + 1; j < c+4 && j < len(h); j++ {
			if h[j].expires < h[m].expires {
				m = j
			}
		}
		if s.expires <= h[m].expires {
			break
		}
		h.put(i, h[m])
		i = m
	}
	h.put(i, s)
}

func (h *deadlines) push(n *node, expires int64) {
	*h = append(*h, slot{expires, n})
	h.up(len(*h) - 1)
}

// update gives the node at i the deadline expires.
func (h deadlines) update(i int, expires int64) {
	n := h[i].n
	h[i].expires = expires
	h.up(i)
	h.down(n.idx)
}

// remove takes the node at i out of the heap.
func (h *deadlines) remove(i int) {
	old := *h
	last := len(old) - 1
	if i != last {
		old.put(i, old[last])
	}
	old[last] = slot{}
	*h = old[:last]
	if i != last {
		h.update(i, old[i].expires)
	}
}

// set stores v under k with the deadline expires (0: none). The caller
// holds the write lock.
func (sh *shard) set(k string, v []byte, expires int64) {
	n := sh.m[k].node
	switch {
	case expires != 0 && n != nil:
		sh.h.update(n.idx, expires)
	case expires != 0:
		n = &node{key: k}
		sh.h.push(n, expires)
	case n != nil:
		sh.h.remove(n.idx)
		n = nil
	}
	sh.m[k] = item{value: v, expires: expires, node: n}
}

// remove deletes k. The caller holds the write lock.
func (sh *shard) remove(k string) {
	if it, ok := sh.m[k]; ok {
		delete(sh.m, k)
		if it.node != nil {
			sh.h.remove(it.node.idx)
		}
	}
}

// New returns an empty Store.
func New(opts Options) *Store {
	s := &Store{seed: maphash.MakeSeed(), sweep: opts.SweepInterval,
		stop: make(chan struct{}), done: make(chan struct{})}
	if s.sweep <= 0 {
		s.sweep = time.Second
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]item)
	}
	return s
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

func live(expires, now int64) bool { return expires == 0 || now < expires }

// expiresAt is the deadline for a time to live (0: none).
func expiresAt(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return time.Now().Add(ttl).UnixNano()
}

func keyString(key any) (string, error) {
	k, ok := key.(string)
	if !ok {
		return "", fmt.Errorf("memory store: key must be a string, got %T", key)
	}
	return k, nil
}

func valueBytes(value any) ([]byte, error) {
	switch v := value.(type) {
	case []byte:
		return append(make([]byte, 0, len(v)), v...), nil
	case string:
		return []byte(v), nil
	}
	return nil, fmt.Errorf("memory store: value must be []byte or string, got %T", value)
}

func notFound() error {
	return store.NotFoundWithCause(fmt.Errorf("memory store: key not found"))
}

// lookup returns key's live value (not a copy) and deadline.
func (s *Store) lookup(ctx context.Context, key any) ([]byte, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	k, err := keyString(key)
	if err != nil {
		return nil, 0, err
	}
	sh := s.shard(k)
	sh.mu.RLock()
	it, ok := sh.m[k]
	sh.mu.RUnlock()
	if !ok || !live(it.expires, time.Now().UnixNano()) {
		return nil, 0, notFound()
	}
	return it.value, it.expires, nil
}

// Get returns a copy of the value as []byte, or store.NotFound.
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	v, _, err := s.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), v...), nil
}

// GetWithTTL is Get plus the remaining time to live (0: none).
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	v, expires, err := s.lookup(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	var ttl time.Duration
	if expires != 0 {
		ttl = time.Duration(expires - time.Now().UnixNano())
	}
	return append([]byte(nil), v...), ttl, nil
}

// Set stores a copy of value ([]byte or string) with the expiration from
// store.WithExpiration (none by default).
func (s *Store) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := keyString(key)
	if err != nil {
		return err
	}
	v, err := valueBytes(value)
	if err != nil {
		return err
	}
	s.put(k, v, store.ApplyOptions(options...).Expiration)
	return nil
}

func (s *Store) put(k string, v []byte, ttl time.Duration) {
	expires := expiresAt(ttl)
	if expires != 0 {
		s.startSweeper()
	}
	sh := s.shard(k)
	sh.mu.Lock()
	sh.set(k, v, expires)
	sh.mu.Unlock()
}

// SetIfNotExists stores value only if key is absent or expired.
func (s *Store) SetIfNotExists(ctx context.Context, key any, value any, options ...store.Option) (bool, error) {
	k, err := keyString(key)
	if err != nil {
		return false, err
	}
	v, err := valueBytes(value)
	if err != nil {
		return false, err
	}
	return s.CompareAndSwap(ctx, k, nil, v, store.ApplyOptions(options...).Expiration)
}

// CompareAndSwap stores value under key with ttl (0: none) only if the
// current live value equals old byte for byte; old == nil means "only if
// absent". It reports whether it stored.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	v := append(make([]byte, 0, len(value)), value...)
	expires := expiresAt(ttl)
	if expires != 0 {
		s.startSweeper()
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[key]
	ok = ok && live(cur.expires, time.Now().UnixNano())
	if (old == nil) == ok || (ok && string(cur.value) != string(old)) {
		return false, nil
	}
	sh.set(key, v, expires)
	return true, nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := keyString(key)
	if err != nil {
		return err
	}
	sh := s.shard(k)
	sh.mu.Lock()
	sh.remove(k)
	sh.mu.Unlock()
	return nil
}

// Invalidate is not supported: the store has no tags.
func (s *Store) Invalidate(context.Context, ...store.InvalidateOption) error {
	return store.ErrNotSupported
}

// Clear removes every entry of this Store.
func (s *Store) Clear(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		clear(sh.h)
		sh.h = sh.h[:0]
		sh.mu.Unlock()
	}
	return nil
}

// GetType returns "memory".
func (s *Store) GetType() string { return Type }

// Len returns the number of entries, expired ones not yet swept included.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Close stops the sweep goroutine. The data stays readable; entries simply
// stop being swept. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.start.Do(func() { close(s.done) }) // never started: nothing to wait for
	close(s.stop)
	<-s.done
	return nil
}

func (s *Store) startSweeper() {
	s.start.Do(func() {
		if s.closed.Load() {
			close(s.done)
			return
		}
		go s.sweepLoop()
	})
}

func (s *Store) sweepLoop() {
	defer close(s.done)
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.SweepExpired()
		}
	}
}

// SweepExpired removes the entries expired now and returns how many. It
// takes each shard's lock for at most sweepSlice entries at a time, and a
// shard with none expired for a single look at its soonest deadline. The
// background sweep calls it; tests may call it directly.
func (s *Store) SweepExpired() int {
	now := time.Now().UnixNano()
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		for {
			n := 0
			sh.mu.Lock()
			for n < sweepSlice && len(sh.h) > 0 && !live(sh.h[0].expires, now) {
				sh.remove(sh.h[0].n.key)
				n++
			}
			sh.mu.Unlock()
			removed += n
			if n < sweepSlice {
				break
			}
		}
	}
	return removed
}

// SetMany stores copies of values[i] under keys[i], each with the time to
// live ttl (0: none).
func (s *Store) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(keys) != len(values) {
		return fmt.Errorf("memory store: SetMany with %d keys and %d values", len(keys), len(values))
	}
	for i, k := range keys {
		s.put(k, append(make([]byte, 0, len(values[i])), values[i]...), ttl)
	}
	return nil
}

// CompareAndSwapMany performs CompareAndSwap for every entry i and reports
// in swapped[i] whether it stored; each entry is atomic on its own. The
// sessions library flushes its write-behind queue with it.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	if len(keys) != len(olds) || len(keys) != len(values) {
		return nil, fmt.Errorf("memory: CompareAndSwapMany with %d keys, %d olds and %d values", len(keys), len(olds), len(values))
	}
	swapped := make([]bool, len(keys))
	for i, k := range keys {
		ok, err := s.CompareAndSwap(ctx, k, olds[i], values[i], ttl)
		if err != nil {
			return nil, err
		}
		swapped[i] = ok
	}
	return swapped, nil
}

// CompareAndDelete deletes key only if its live value equals old byte for
// byte (an expired entry counts as absent) and reports whether it deleted.
// The comparison and the delete happen under the shard's lock, so of any
// number of concurrent calls with the same key and old at most one reports
// true. A missing key is (false, nil).
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[key]
	if !ok || !live(cur.expires, time.Now().UnixNano()) || string(cur.value) != string(old) {
		return false, nil
	}
	sh.remove(key)
	return true, nil
}

// expiringEntry is a ListExpiring candidate.
type expiringEntry struct {
	key     string
	value   []byte // the stored slice, never modified in place: copied at the end
	expires int64
}

// ListExpiring returns up to limit live entries whose key starts with
// prefix and whose deadline is before the instant before, earliest first
// (ties in key order), with copies of their values. Entries without a TTL
// are never listed; limit <= 0 lists nothing. Each shard is read under its
// read lock, one at a time, so the result is not one snapshot of the whole
// store: an entry written meanwhile may or may not be listed.
func (s *Store) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) (keys []string, values [][]byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if limit <= 0 {
		return nil, nil, nil
	}
	if !before.After(time.Unix(0, 0)) {
		return nil, nil, nil
	}
	end := int64(math.MaxInt64) // UnixNano is undefined past 2262
	if before.Before(time.Unix(0, math.MaxInt64)) {
		end = before.UnixNano()
	}
	byDeadline := func(a, b expiringEntry) int {
		if c := cmp.Compare(a.expires, b.expires); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	}
	var found []expiringEntry
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		fromShard := s.shards[i].expiring(prefix, time.Now().UnixNano(), end)
		// Only the shard's earliest limit entries can be among the
		// store's earliest limit.
		if len(fromShard) > limit {
			slices.SortFunc(fromShard, byDeadline)
			fromShard = fromShard[:limit]
		}
		found = append(found, fromShard...)
	}
	slices.SortFunc(found, byDeadline)
	found = found[:min(limit, len(found))]
	keys = make([]string, len(found))
	values = make([][]byte, len(found))
	for i, e := range found {
		keys[i] = e.key
		values[i] = append(make([]byte, 0, len(e.value)), e.value...)
	}
	return keys, values, nil
}

// expiring returns the shard's entries whose key starts with prefix and
// whose deadline is in (now, end), in no particular order. A heap node is
// due no earlier than its parent, so it skips every subtree whose root is
// due at or after end.
func (sh *shard) expiring(prefix string, now, end int64) []expiringEntry {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	var out []expiringEntry
	var pending []int
	if len(sh.h) > 0 {
		pending = append(pending, 0)
	}
	for len(pending) > 0 {
		i := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		sl := sh.h[i]
		if sl.expires >= end {
			continue
		}
		for c := 4*i + 1; c <= 4*i+4 && c < len(sh.h); c++ {
			pending = append(pending, c)
		}
		if live(sl.expires, now) && strings.HasPrefix(sl.n.key, prefix) {
			out = append(out, expiringEntry{sl.n.key, sh.m[sl.n.key].value, sl.expires})
		}
	}
	return out
}
