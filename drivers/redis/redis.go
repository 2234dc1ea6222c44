package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sessionstorage/sessions/driver"

	redisstore "github.com/eko/gocache/store/redis/v4"
	goredis "github.com/redis/go-redis/v9"
)

// ScanCount is the COUNT hint ListKeys passes to each SCAN call: roughly
// how many keys the server examines per round trip.
const ScanCount = 1000

// The capabilities the library finds by type assertion: a signature
// change fails to compile here instead of silently dropping one.
var (
	_ driver.Store                  = (*Store)(nil)
	_ driver.CompareAndSwapper      = (*Store)(nil)
	_ driver.BatchCompareAndSwapper = (*Store)(nil)
	_ driver.BatchSetter            = (*Store)(nil)
	_ driver.KeyLister              = (*Store)(nil)
	_ driver.CompareAndDeleter      = (*Store)(nil)
	_ driver.ExpiryLister           = (*Store)(nil)
)

// Store is gocache's redis store (embedded: every store.StoreInterface
// method is gocache's own, except Set and Delete, which behave as
// gocache's and also keep the expiry index) plus the optional
// capabilities the sessions library discovers by type assertion:
// CompareAndSwap(Many), SetMany, ListKeys, CompareAndDelete and
// ListExpiring. GetType reports "redis". It is safe for concurrent use.
//
// Note that the embedded Clear is gocache's FLUSHALL: it empties every
// database of the server (or every master of a cluster), not only this
// store's keys. The sessions library never calls Clear or Invalidate.
type Store struct {
	*redisstore.RedisStore

	client goredis.UniversalClient
	owned  bool // created by Open from a URL: Close closes it
	// health fails commands for dead cluster nodes fast and reloads the
	// slot layout on failures (Cluster clients made by Open only).
	health *nodeHealth

	// indexKey is the expiry index: ExpiryIndexKey (tests use others).
	indexKey string
	// noExpiryIndex turns the expiry index off (for benchmarks measuring
	// its cost): ListExpiring then finds nothing.
	noExpiryIndex bool

	closeOnce sync.Once
	closeErr  error
}

// New returns a Store on client, which may be a standalone, Sentinel
// (failover), Cluster or Ring client. The caller keeps ownership of client:
// Store.Close does not close it.
func New(client goredis.UniversalClient) *Store {
	if client == nil {
		panic("redis: New with a nil client")
	}
	return &Store{RedisStore: redisstore.NewRedis(client), client: client, indexKey: ExpiryIndexKey}
}

// Client returns the go-redis client the store uses.
func (s *Store) Client() goredis.UniversalClient { return s.client }

// Close closes the go-redis client if Open created it from a URL, and does
// nothing for a Store made by New, whose client belongs to the caller. It
// is idempotent; the store must not be used after closing an owned client.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	s.closeOnce.Do(func() {
		s.health.close()
		s.closeErr = s.client.Close()
	})
	return s.closeErr
}

// casScript is the compare-and-swap, atomic because redis runs a script
// without interleaving other commands.
//
//	KEYS[1] key
//	ARGV[1] "1": store only if the key is absent; "0": only if it holds ARGV[2]
//	ARGV[2] expected value
//	ARGV[3] new value
//	ARGV[4] time to live in milliseconds, "0" for none
//
// It returns 1 when it stored, 0 when the comparison failed. A key of
// another type than string makes GET, and so the script, fail.
var casScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
`)

// CompareAndSwap stores value under key with the given time to live (0: no
// expiry) only if the current value is byte for byte equal to old; old ==
// nil means "only if key is absent" (an expired key is absent), while a
// non-nil empty old matches a stored empty value. It reports whether it
// stored; a failed comparison is not an error. It is one round trip: a Lua
// script run with EVALSHA, falling back to EVAL when the server does not
// have it cached (after a restart, for example). The TTL is sent in
// milliseconds, rounded up. A negative ttl is an error.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if ttl < 0 {
		return false, fmt.Errorf("redis: CompareAndSwap %s with a negative TTL %v", key, ttl)
	}
	ms := millis(ttl)
	absent := "0"
	if old == nil {
		absent = "1"
	}
	n, err := casScript.Run(ctx, s.client, []string{key}, absent, old, value, ms).Int64()
	if err != nil {
		return false, fmt.Errorf("redis: CompareAndSwap %s: %w", key, err)
	}
	if n != 1 {
		return false, nil
	}
	if err := s.indexUpdate(ctx, ttl, []string{key}); err != nil {
		return true, fmt.Errorf("redis: CompareAndSwap %s stored, but: %w", key, err)
	}
	return true, nil
}

// CompareAndSwapMany performs CompareAndSwap for every entry i and reports
// in swapped[i] whether it stored, in one pipeline: one round trip (on a
// Cluster client, one per node). Each entry is atomic on its own (the
// compare-and-swap script); the batch is not. On error no outcome is
// known. The sessions library flushes its write-behind queue with it.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	if len(keys) != len(olds) || len(keys) != len(values) {
		return nil, fmt.Errorf("redis: CompareAndSwapMany with %d keys, %d olds and %d values", len(keys), len(olds), len(values))
	}
	if ttl < 0 {
		return nil, fmt.Errorf("redis: CompareAndSwapMany with a negative TTL %v", ttl)
	}
	if err := s.health.checkKeys(ctx, s.indexedKeys(keys)...); err != nil {
		return nil, fmt.Errorf("redis: CompareAndSwapMany of %d entries: %w", len(keys), err)
	}
	ms := millis(ttl)
	cmds := make([]*goredis.Cmd, len(keys))
	// run sends entries idx (all when nil) with EVALSHA, or EVAL when
	// load.
	run := func(idx []int, load bool) error {
		_, err := s.pipelined(ctx, func(p goredis.Pipeliner) error {
			one := func(i int) {
				absent := "0"
				if olds[i] == nil {
					absent = "1"
				}
				if load {
					cmds[i] = casScript.Eval(ctx, p, []string{keys[i]}, absent, olds[i], values[i], ms)
				} else {
					cmds[i] = casScript.EvalSha(ctx, p, []string{keys[i]}, absent, olds[i], values[i], ms)
				}
			}
			if idx == nil {
				for i := range keys {
					one(i)
				}
			}
			for _, i := range idx {
				one(i)
			}
			return nil
		})
		return err
	}
	err := run(nil, false)
	if err != nil {
		// A server that lost its script cache (a restart; on a Cluster, a
		// replica just promoted: scripts are not replicated) answers
		// NOSCRIPT: run those entries again with EVAL, and only those,
		// since the others have run (on other nodes, or on this one
		// before it failed them).
		var again []int
		other := false
		for i, c := range cmds {
			if cerr := c.Err(); goredis.HasErrorPrefix(cerr, "NOSCRIPT") {
				again = append(again, i)
			} else if cerr != nil {
				other = true
			}
		}
		if !other && len(again) > 0 {
			err = run(again, true)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redis: CompareAndSwapMany of %d entries: %w", len(keys), err)
	}
	swapped := make([]bool, len(keys))
	var stored []string
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("redis: CompareAndSwapMany %s: %w", keys[i], err)
		}
		if swapped[i] = n == 1; swapped[i] {
			stored = append(stored, keys[i])
		}
	}
	if err := s.indexUpdate(ctx, ttl, stored); err != nil {
		return nil, fmt.Errorf("redis: CompareAndSwapMany of %d entries: %w", len(keys), err)
	}
	return swapped, nil
}

// ListKeys calls fn for each live key that starts with prefix, until fn
// returns a non-nil error, which ListKeys returns. Keys come in no
// particular order (the order of redis's SCAN). Glob metacharacters in
// prefix (* ? [ ] \) are escaped, so the prefix is matched literally.
//
// It pages with SCAN MATCH <prefix>* COUNT ScanCount and calls fn between
// pages, outside any server-side operation, so fn may use the store (for
// example delete the key it is given). On a *redis.ClusterClient it scans
// every master, one after another; on a *redis.Ring, every shard. Keys
// written or deleted while ListKeys runs may or may not be reported; a key
// present for the whole call is reported exactly once (SCAN may return a key
// twice when the server resizes its table; ListKeys filters such repeats,
// which costs memory proportional to the number of matching keys).
func (s *Store) ListKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	nodes, err := s.scanNodes(ctx)
	if err != nil {
		return fmt.Errorf("redis: ListKeys %q: %w", prefix, err)
	}
	match := escapeGlob(prefix) + "*"
	seen := map[string]struct{}{}
	for _, node := range nodes {
		var cursor uint64
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			keys, next, err := node.Scan(ctx, cursor, match, ScanCount).Result()
			if err != nil {
				return fmt.Errorf("redis: ListKeys %q: %w", prefix, err)
			}
			for _, k := range keys {
				if _, dup := seen[k]; dup {
					continue
				}
				seen[k] = struct{}{}
				if err := fn(k); err != nil {
					return err
				}
			}
			if next == 0 {
				break
			}
			cursor = next
		}
	}
	return nil
}

// scanNodes returns the clients to run SCAN on: every master of a
// cluster, every shard of a ring, or the client itself.
func (s *Store) scanNodes(ctx context.Context) ([]goredis.Cmdable, error) {
	var (
		mu    sync.Mutex
		nodes []goredis.Cmdable
	)
	collect := func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		nodes = append(nodes, c)
		mu.Unlock()
		return nil
	}
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		if err := c.ForEachMaster(ctx, collect); err != nil {
			return nil, err
		}
	case *goredis.Ring:
		if err := c.ForEachShard(ctx, collect); err != nil {
			return nil, err
		}
	default:
		return []goredis.Cmdable{s.client}, nil
	}
	if len(nodes) == 0 {
		return nil, errors.New("no nodes to scan")
	}
	return nodes, nil
}

// indexedKeys is keys and, when the store keeps an expiry index, its key:
// the keys a batch write touches.
func (s *Store) indexedKeys(keys []string) []string {
	if s.noExpiryIndex || s.health == nil {
		return keys
	}
	return append(keys[:len(keys):len(keys)], s.indexKey)
}

// escapeGlob escapes redis glob metacharacters so that pattern matches s
// literally.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// SetMany stores values[i] under keys[i], each with the time to live ttl
// (0: no expiry, rounded up to whole milliseconds), in one pipeline: one
// round trip (on a Cluster client, one per node). Not atomic: on error
// some entries may have been stored. The sessions library flushes its
// write-behind queue with it.
func (s *Store) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if len(keys) != len(values) {
		return fmt.Errorf("redis: SetMany with %d keys and %d values", len(keys), len(values))
	}
	if ttl < 0 {
		return fmt.Errorf("redis: SetMany with a negative TTL %v", ttl)
	}
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	if err := s.health.checkKeys(ctx, s.indexedKeys(keys)...); err != nil {
		return fmt.Errorf("redis: SetMany of %d entries: %w", len(keys), err)
	}
	var index []goredis.Cmder // one per indexBatch keys
	cmds, err := s.pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			p.Set(ctx, k, values[i], ttl)
		}
		if !s.noExpiryIndex {
			for i := 0; i < len(keys); i += indexBatch {
				index = append(index, s.queueIndexUpdate(ctx, p, ttl, keys[i:min(i+indexBatch, len(keys))]))
			}
		}
		return nil
	})
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// The index's server lost its script cache (a restart, a
		// promotion): run those index updates again, if every SET landed.
		err = nil
		for _, c := range cmds {
			if c.Err() != nil && !goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				err = c.Err()
				break
			}
		}
		for i, c := range index {
			if err != nil {
				break
			}
			if goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				err = s.indexUpdate(ctx, ttl, keys[i*indexBatch:min((i+1)*indexBatch, len(keys))])
			}
		}
	}
	if err != nil {
		return fmt.Errorf("redis: SetMany of %d entries: %w", len(keys), err)
	}
	return nil
}
