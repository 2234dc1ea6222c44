// Package faultstore wraps a gocache store to count calls and to inject
// failures and hangs on demand, for tests of how the library behaves when
// its storage misbehaves. It is not a fake: every call that is let through
// goes to the real store underneath.
package faultstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
)

// ErrInjected is what calls return while the store is set to fail.
var ErrInjected = errors.New("faultstore: injected storage failure")

// Mode selects how calls behave.
type Mode int32

const (
	// Pass lets calls through.
	Pass Mode = iota
	// Fail makes calls return ErrInjected.
	Fail
	// Hang makes calls block until their context ends (then they return
	// its error) or the mode changes.
	Hang
)

// Store wraps a store. It forwards CompareAndSwap, CompareAndSwapMany,
// SetMany, CompareAndDelete and ListExpiring, declining one the wrapped
// store lacks with driver.ErrSkip; use Plain for a view without those
// capabilities.
type Store struct {
	inner store.StoreInterface

	mode     atomic.Int32
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every mode change
	opModes  map[Op]Mode   // per-operation overrides of mode (under mu)
	failNext map[Op]int    // calls of an op still to fail (under mu)
	failKey  func(key string) bool

	// Call counters. A SetMany counts one Set per entry.
	Gets, Sets, Deletes, CASes, Batches atomic.Int64
}

// New wraps inner.
func New(inner store.StoreInterface) *Store {
	return &Store{inner: inner, changed: make(chan struct{})}
}

// Op names one kind of call, for SetOpMode.
type Op int

const (
	OpGet Op = iota + 1 // Get and GetWithTTL
	OpSet
	OpDelete
	OpCAS
	OpSetMany
)

// SetMode switches the behaviour of subsequent and hanging calls. It
// clears the per-operation modes of SetOpMode.
func (s *Store) SetMode(m Mode) {
	s.mu.Lock()
	s.mode.Store(int32(m))
	s.opModes = nil
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// SetOpMode switches the behaviour of one kind of call only, overriding
// SetMode for it until the next SetMode.
func (s *Store) SetOpMode(op Op, m Mode) {
	s.mu.Lock()
	if s.opModes == nil {
		s.opModes = make(map[Op]Mode)
	}
	s.opModes[op] = m
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// FailNext makes the next n calls of op fail with ErrInjected, whatever
// the mode.
func (s *Store) FailNext(op Op, n int) {
	s.mu.Lock()
	if s.failNext == nil {
		s.failNext = make(map[Op]int)
	}
	s.failNext[op] = n
	s.mu.Unlock()
}

// FailKeys makes every write (Set, CompareAndSwap) of a key for which fn
// reports true fail with ErrInjected, and every SetMany that includes
// one, as an all-or-nothing transaction would. nil clears it.
func (s *Store) FailKeys(fn func(key string) bool) {
	s.mu.Lock()
	s.failKey = fn
	s.mu.Unlock()
}

func (s *Store) keyFails(keys ...string) bool {
	s.mu.Lock()
	fn := s.failKey
	s.mu.Unlock()
	if fn == nil {
		return false
	}
	for _, k := range keys {
		if fn(k) {
			return true
		}
	}
	return false
}

// Writes returns Sets + CASes: the writes that reached the check.
func (s *Store) Writes() int64 { return s.Sets.Load() + s.CASes.Load() }

// ResetCounts zeroes the counters.
func (s *Store) ResetCounts() {
	s.Gets.Store(0)
	s.Sets.Store(0)
	s.Deletes.Store(0)
	s.CASes.Store(0)
	s.Batches.Store(0)
}

func (s *Store) gate(ctx context.Context, op Op) error {
	for {
		s.mu.Lock()
		mode, changed := Mode(s.mode.Load()), s.changed
		if m, ok := s.opModes[op]; ok {
			mode = m
		}
		if s.failNext[op] > 0 {
			s.failNext[op]--
			mode = Fail
		}
		s.mu.Unlock()
		switch mode {
		case Fail:
			return ErrInjected
		case Hang:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				continue
			}
		}
		return nil
	}
}

// Get counts and forwards.
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	s.Gets.Add(1)
	if err := s.gate(ctx, OpGet); err != nil {
		return nil, err
	}
	return s.inner.Get(ctx, key)
}

// GetWithTTL counts as a Get and forwards.
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	s.Gets.Add(1)
	if err := s.gate(ctx, OpGet); err != nil {
		return nil, 0, err
	}
	return s.inner.GetWithTTL(ctx, key)
}

// Set counts and forwards.
func (s *Store) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	s.Sets.Add(1)
	if err := s.gate(ctx, OpSet); err != nil {
		return err
	}
	if k, _ := key.(string); s.keyFails(k) {
		return ErrInjected
	}
	return s.inner.Set(ctx, key, value, options...)
}

// Delete counts and forwards.
func (s *Store) Delete(ctx context.Context, key any) error {
	s.Deletes.Add(1)
	if err := s.gate(ctx, OpDelete); err != nil {
		return err
	}
	return s.inner.Delete(ctx, key)
}

// Invalidate forwards.
func (s *Store) Invalidate(ctx context.Context, options ...store.InvalidateOption) error {
	return s.inner.Invalidate(ctx, options...)
}

// Clear forwards.
func (s *Store) Clear(ctx context.Context) error { return s.inner.Clear(ctx) }

// GetType reports the wrapped store's type.
func (s *Store) GetType() string { return s.inner.GetType() }

// CompareAndSwap counts and forwards.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	s.CASes.Add(1)
	if err := s.gate(ctx, OpCAS); err != nil {
		return false, err
	}
	if s.keyFails(key) {
		return false, ErrInjected
	}
	cas, ok := s.inner.(interface {
		CompareAndSwap(context.Context, string, []byte, []byte, time.Duration) (bool, error)
	})
	if !ok {
		return false, driver.ErrSkip
	}
	return cas.CompareAndSwap(ctx, key, old, value, ttl)
}

// SetMany counts and forwards.
func (s *Store) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	s.Batches.Add(1)
	s.Sets.Add(int64(len(keys)))
	if err := s.gate(ctx, OpSetMany); err != nil {
		return err
	}
	if s.keyFails(keys...) {
		return ErrInjected
	}
	b, ok := s.inner.(interface {
		SetMany(context.Context, []string, [][]byte, time.Duration) error
	})
	if !ok {
		return driver.ErrSkip
	}
	return b.SetMany(ctx, keys, values, ttl)
}

// CompareAndSwapMany counts one batch and one CAS per entry, and forwards;
// it fails whole when any key fails (see FailKeys), as an all-or-nothing
// call would.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	s.Batches.Add(1)
	s.CASes.Add(int64(len(keys)))
	if err := s.gate(ctx, OpCAS); err != nil {
		return nil, err
	}
	if s.keyFails(keys...) {
		return nil, ErrInjected
	}
	b, ok := s.inner.(interface {
		CompareAndSwapMany(context.Context, []string, [][]byte, [][]byte, time.Duration) ([]bool, error)
	})
	if !ok {
		return nil, driver.ErrSkip
	}
	return b.CompareAndSwapMany(ctx, keys, olds, values, ttl)
}

// CompareAndDelete counts a Delete and forwards (failing as a Delete
// does).
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	s.Deletes.Add(1)
	if err := s.gate(ctx, OpDelete); err != nil {
		return false, err
	}
	c, ok := s.inner.(interface {
		CompareAndDelete(context.Context, string, []byte) (bool, error)
	})
	if !ok {
		return false, driver.ErrSkip
	}
	return c.CompareAndDelete(ctx, key, old)
}

// ListExpiring forwards (failing as a Get does).
func (s *Store) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	if err := s.gate(ctx, OpGet); err != nil {
		return nil, nil, err
	}
	l, ok := s.inner.(interface {
		ListExpiring(context.Context, string, time.Time, int) ([]string, [][]byte, error)
	})
	if !ok {
		return nil, nil, driver.ErrSkip
	}
	return l.ListExpiring(ctx, prefix, before, limit)
}

// Plain returns a view of s with only the gocache methods, hiding the
// optional capabilities.
func (s *Store) Plain() store.StoreInterface { return plain{s} }

type plain struct{ s *Store }

func (p plain) Get(ctx context.Context, key any) (any, error) { return p.s.Get(ctx, key) }
func (p plain) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	return p.s.GetWithTTL(ctx, key)
}
func (p plain) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	return p.s.Set(ctx, key, value, options...)
}
func (p plain) Delete(ctx context.Context, key any) error { return p.s.Delete(ctx, key) }
func (p plain) Invalidate(ctx context.Context, options ...store.InvalidateOption) error {
	return p.s.Invalidate(ctx, options...)
}
func (p plain) Clear(ctx context.Context) error { return p.s.Clear(ctx) }
func (p plain) GetType() string                 { return p.s.GetType() }
