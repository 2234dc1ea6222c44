package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/drivers/memory"
)

// countingStore wraps the memory driver and counts the writes that reach it
// (Set, each entry of SetMany, and CompareAndSwap of keys under prefix). It forwards the optional
// capabilities the library discovers by type assertion, so the Manager sees
// the same store it would see without the wrapper.
type countingStore struct {
	*memory.Store
	prefix string
	writes atomic.Int64
}

var (
	_ store.StoreInterface     = (*countingStore)(nil)
	_ driver.CompareAndSwapper = (*countingStore)(nil)
	_ driver.BatchSetter       = (*countingStore)(nil)
	_ driver.CompareAndDeleter = (*countingStore)(nil)
)

func newCountingStore(prefix string) *countingStore {
	return &countingStore{Store: memory.New(memory.Options{}), prefix: prefix}
}

func (c *countingStore) count(key any) {
	if k, ok := key.(string); ok && strings.HasPrefix(k, c.prefix) {
		c.writes.Add(1)
	}
}

func (c *countingStore) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	c.count(key)
	return c.Store.Set(ctx, key, value, options...)
}

func (c *countingStore) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	for _, k := range keys {
		c.count(k)
	}
	return c.Store.SetMany(ctx, keys, values, ttl)
}

func (c *countingStore) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	c.count(key)
	return c.Store.CompareAndSwap(ctx, key, old, value, ttl)
}

// nullStore accepts every write and keeps nothing: with it, the heap of the
// process holds only the library's in-memory tier, which is what the
// resident-heap benchmark measures (a real deployment's storage is another
// process: Redis, memcached, a database).
type nullStore struct{ writes atomic.Int64 }

var _ store.StoreInterface = (*nullStore)(nil)

var errNullMiss = errors.New("null store: miss")

func (*nullStore) Get(context.Context, any) (any, error) {
	return nil, store.NotFoundWithCause(errNullMiss)
}

func (*nullStore) GetWithTTL(context.Context, any) (any, time.Duration, error) {
	return nil, 0, store.NotFoundWithCause(errNullMiss)
}

func (n *nullStore) Set(context.Context, any, any, ...store.Option) error {
	n.writes.Add(1)
	return nil
}

func (*nullStore) Delete(context.Context, any) error                           { return nil }
func (*nullStore) Invalidate(context.Context, ...store.InvalidateOption) error { return nil }
func (*nullStore) Clear(context.Context) error                                 { return nil }
func (*nullStore) GetType() string                                             { return "null" }
