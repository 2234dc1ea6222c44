// Package memory is an in-process gocache store: the library's default
// storage and the reference implementation of the driver contract.
//
// It keeps byte values in a sharded map with per-entry expiry. Every value
// is copied in and out, so callers never share memory with the store. It
// implements the optional capabilities the library uses: CompareAndSwap and
// NotifyExpired. Expired entries are invisible at once and removed by a
// background sweep (every SweepInterval, default 1 s), which delivers each
// one to one expiry subscriber. The sweep goroutine starts with the first
// entry that has a TTL or the first subscriber; Close stops it.
//
// URL form (for sessions.Config.Storage): "memory" or "memory://". Data lives
// only as long as the process; use it for single-server development and
// tests, or as a Config.Store shared by several Managers in one process.
package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// Type is what GetType returns.
const Type = "memory"

const shardCount = 32

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// SweepInterval is how often expired entries are removed and reported
	// to expiry subscribers. Default 1 s.
	SweepInterval time.Duration
}

// Store is the in-process store. It is safe for concurrent use. The zero
// value is not usable: call New.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard
	sweep  time.Duration

	subMu  sync.Mutex
	subs   []*subscriber
	next   atomic.Uint64 // round-robin over subs
	start  sync.Once
	stop   chan struct{}
	done   chan struct{}
	closed atomic.Bool
}

type shard struct {
	mu sync.RWMutex
	m  map[string]item
}

type item struct {
	value   []byte
	expires int64 // Unix nanoseconds; 0: never
}

type subscriber struct{ fn func(string, []byte) }

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

func (it item) live(now int64) bool { return it.expires == 0 || now < it.expires }

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

func (s *Store) lookup(ctx context.Context, key any) (item, error) {
	if err := ctx.Err(); err != nil {
		return item{}, err
	}
	k, err := keyString(key)
	if err != nil {
		return item{}, err
	}
	sh := s.shard(k)
	sh.mu.RLock()
	it, ok := sh.m[k]
	sh.mu.RUnlock()
	if !ok || !it.live(time.Now().UnixNano()) {
		return item{}, notFound()
	}
	return it, nil
}

// Get returns a copy of the value as []byte, or store.NotFound.
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	it, err := s.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), it.value...), nil
}

// GetWithTTL is Get plus the remaining time to live (0: none).
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	it, err := s.lookup(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	var ttl time.Duration
	if it.expires != 0 {
		ttl = time.Duration(it.expires - time.Now().UnixNano())
	}
	return append([]byte(nil), it.value...), ttl, nil
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
	it := item{value: v}
	if ttl > 0 {
		it.expires = time.Now().Add(ttl).UnixNano()
		s.startSweeper()
	}
	sh := s.shard(k)
	sh.mu.Lock()
	sh.m[k] = it
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
	it := item{value: append(make([]byte, 0, len(value)), value...)}
	if ttl > 0 {
		it.expires = time.Now().Add(ttl).UnixNano()
		s.startSweeper()
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[key]
	ok = ok && cur.live(time.Now().UnixNano())
	if (old == nil) == ok || (ok && string(cur.value) != string(old)) {
		return false, nil
	}
	sh.m[key] = it
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
	delete(sh.m, k)
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

// NotifyExpired registers fn to be told of entries the sweep removes. Each
// expired entry goes to exactly one subscriber (round robin), on the sweep
// goroutine. stop unregisters fn; it is safe to call more than once.
func (s *Store) NotifyExpired(fn func(key string, value []byte)) (stop func()) {
	sub := &subscriber{fn: fn}
	s.subMu.Lock()
	s.subs = append(s.subs, sub)
	s.subMu.Unlock()
	s.startSweeper()
	return func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		for i, x := range s.subs {
			if x == sub {
				s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
				return
			}
		}
	}
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

// SweepExpired removes expired entries now and reports each to one
// subscriber. The background sweep calls it; tests may call it directly.
func (s *Store) SweepExpired() {
	now := time.Now().UnixNano()
	type expired struct {
		key   string
		value []byte
	}
	var gone []expired
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, it := range sh.m {
			if !it.live(now) {
				delete(sh.m, k)
				gone = append(gone, expired{k, it.value})
			}
		}
		sh.mu.Unlock()
	}
	for _, e := range gone {
		s.subMu.Lock()
		var sub *subscriber
		if n := len(s.subs); n > 0 {
			sub = s.subs[s.next.Add(1)%uint64(n)]
		}
		s.subMu.Unlock()
		if sub != nil {
			sub.fn(e.key, e.value)
		}
	}
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
