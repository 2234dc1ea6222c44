// Package mapdriver is a session storage driver of its own: a gocache store
// on a Go map, registered under the URL scheme "map".
package mapdriver

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
)

type entry struct {
	value   []byte
	expires time.Time // zero: never
}

// Store keeps entries in a map.
type Store struct {
	mu sync.Mutex
	m  map[string]entry
}

func New() *Store { return &Store{m: map[string]entry{}} }

func init() {
	sessions.RegisterDriver("map", func(context.Context, *url.URL) (store.StoreInterface, error) { return New(), nil })
}

func (s *Store) Get(ctx context.Context, key any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key.(string)]
	if !ok || (!e.expires.IsZero() && time.Now().After(e.expires)) {
		return nil, store.NotFoundWithCause(nil)
	}
	return append([]byte(nil), e.value...), nil
}

func (s *Store) Set(ctx context.Context, key, value any, opts ...store.Option) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e := entry{value: append([]byte(nil), value.([]byte)...)}
	if ttl := store.ApplyOptions(opts...).Expiration; ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key.(string)] = e
	return nil
}

func (s *Store) Delete(ctx context.Context, key any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key.(string))
	return nil
}

// The library never calls these three.
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	v, err := s.Get(ctx, key)
	return v, 0, err
}
func (s *Store) Invalidate(context.Context, ...store.InvalidateOption) error {
	return store.ErrNotSupported
}
func (s *Store) Clear(context.Context) error { return store.ErrNotSupported }
func (s *Store) GetType() string             { return "map" }
