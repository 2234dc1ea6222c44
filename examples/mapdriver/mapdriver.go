// Package mapdriver is a session storage driver of its own: a gocache store
// on a Go map, registered under the URL scheme "map".
package mapdriver

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/driver"
)

func init() {
	driver.Register("map", func(context.Context, *url.URL) (store.StoreInterface, error) { return New(), nil })
}

type entry struct {
	value   []byte
	expires time.Time // zero: never
}

// The capabilities the library finds by type assertion: a signature
// change fails to compile here instead of silently dropping one.
var (
	_ driver.Store     = (*Store)(nil)
	_ driver.KeyLister = (*Store)(nil)
)

// Store keeps entries in a map; it is safe for concurrent use.
type Store struct {
	mu sync.Mutex
	m  map[string]entry
}

// New returns an empty Store.
func New() *Store { return &Store{m: map[string]entry{}} }

// Get returns a copy of the live value under key, or store.NotFound.
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key.(string)]
	if err := ctx.Err(); err != nil {
		return nil, err
	} else if !ok || (!e.expires.IsZero() && time.Now().After(e.expires)) {
		return nil, store.NotFoundWithCause(nil)
	}
	return append([]byte(nil), e.value...), nil
}

// Set stores a copy of value with the expiration of store.WithExpiration.
func (s *Store) Set(ctx context.Context, key, value any, opts ...store.Option) error {
	e := entry{value: append([]byte(nil), value.([]byte)...)}
	if ttl := store.ApplyOptions(opts...).Expiration; ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	return s.update(ctx, func() { s.m[key.(string)] = e })
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key any) error {
	return s.update(ctx, func() { delete(s.m, key.(string)) })
}

func (s *Store) update(ctx context.Context, change func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	change()
	return nil
}

// ListKeys calls fn for each live key that starts with prefix, outside
// the lock (fn may use the store), for sessionctl ls and purge.
func (s *Store) ListKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	s.mu.Lock()
	var keys []string
	for k, e := range s.m {
		if strings.HasPrefix(k, prefix) && (e.expires.IsZero() || time.Now().Before(e.expires)) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// GetWithTTL is Get without the TTL; the library never calls it.
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	v, err := s.Get(ctx, key)
	return v, 0, err
}

// Invalidate is not supported; the library never calls it.
func (s *Store) Invalidate(context.Context, ...store.InvalidateOption) error {
	return store.ErrNotSupported
}

// Clear is not supported; the library never calls it.
func (s *Store) Clear(context.Context) error { return store.ErrNotSupported }

// GetType returns "map".
func (s *Store) GetType() string { return "map" }
