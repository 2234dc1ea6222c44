// Package adapter is the one adapter between the session library and a
// driver's store: it absorbs the stores' differences (value types, miss
// errors, TTL units, failed deletes of absent keys, capabilities a store
// lacks or declines), opens storages by URL or name, and is what tools such
// as sessionctl read and delete entries through, exactly as a Manager does.
package adapter

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/driver"
)

// Concurrency is how many calls the adapter (and the write-behind) makes
// at a time when a batch call is unavailable or failed.
const Concurrency = 16

// Key returns the storage key of the session with the given ID under a
// key prefix: the prefix and the base64url SHA-256 of the ID, so that
// reading the storage does not reveal live session IDs, and a key cannot
// be turned back into an ID.
func Key(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	buf := make([]byte, len(prefix)+base64.RawURLEncoding.EncodedLen(len(sum)))
	copy(buf, prefix)
	base64.RawURLEncoding.Encode(buf[len(prefix):], sum[:])
	return string(buf)
}

// ErrNotFound is what Storage.Get reports for a missing (or expired)
// entry.
var ErrNotFound = errors.New("sessions: entry not found")

// Miss errors some gocache stores return unwrapped, instead of
// store.NotFound, recognised by message so the core need not link their
// client libraries: bigcache's ErrEntryNotFound, go-redis's Nil, gomemcache's
// ErrCacheMiss.
var clientMissMessages = map[string]bool{
	"Entry not found":      true,
	"redis: nil":           true,
	"memcache: cache miss": true,
}

// Storage is the one adapter between the library and a store. It absorbs
// the stores' differences: it always writes []byte, accepts string or
// []byte back, always passes string keys, maps every flavour of "not
// found" to ErrNotFound, never calls Clear or Invalidate, and takes the
// basic path for a capability the store lacks or declines
// (driver.ErrSkip).
type Storage struct {
	name  string
	owned bool // opened from a URL: closed by the Manager
	// keyPrefix is the URL's key_prefix option ("" if none): the default
	// of Config.KeyPrefix.
	keyPrefix string
	// b is the store and what it can do; it changes once, when a storage
	// unreachable at start opens in the background (reopen).
	b atomic.Pointer[backend]
	// reopen opens the store again (nil unless it was unreachable at
	// start). Immutable.
	reopen func(ctx context.Context) (driver.Store, error)
	// Observe, when set, is told of every call made through the methods
	// below (observe.go): its operation (Op...), how long it took, and
	// its error (nil for ErrNotFound). Set it before the first call.
	Observe func(op string, took time.Duration, err error)
}

// backend is a store and its capabilities. Immutable.
type backend struct {
	store  driver.Store
	cas    driver.CompareAndSwapper      // nil when the store lacks it
	casN   driver.BatchCompareAndSwapper // nil when the store lacks it
	batch  driver.BatchSetter            // nil when the store lacks it
	cad    driver.CompareAndDeleter      // nil when the store lacks it
	lister driver.ExpiryLister           // nil unless the store has it and cad
	// wholeSeconds: the store truncates TTLs to whole seconds (memcache
	// and freecache would turn 500 ms into 0, "never expire"), so they are
	// rounded up.
	wholeSeconds bool
	// unixAfter30Days: the store passes seconds through to memcached,
	// which reads more than 30 days as an absolute Unix time.
	unixAfter30Days bool
}

// memcacheRelativeLimit: memcached reads an expiration above 30 days as
// an absolute Unix time.
const memcacheRelativeLimit = 30 * 24 * time.Hour

// ceilSeconds rounds a TTL up to whole seconds.
func ceilSeconds(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// storeTTL converts the TTL the library means into what the store needs.
func (b *backend) storeTTL(ttl time.Duration) time.Duration {
	if b.wholeSeconds {
		ttl = ceilSeconds(ttl)
	}
	if b.unixAfter30Days && ttl > memcacheRelativeLimit {
		ttl = time.Duration(time.Now().Add(ttl).Unix()) * time.Second
	}
	return ttl
}

func newBackend(st driver.Store) *backend {
	b := &backend{store: st}
	b.cas, _ = st.(driver.CompareAndSwapper)
	if b.cas != nil {
		b.casN, _ = st.(driver.BatchCompareAndSwapper)
	}
	b.batch, _ = st.(driver.BatchSetter)
	b.cad, _ = st.(driver.CompareAndDeleter)
	if b.cad != nil {
		b.lister, _ = st.(driver.ExpiryLister)
	}
	switch st.GetType() {
	case "memcache":
		b.wholeSeconds, b.unixAfter30Days = true, true
	case "freecache":
		b.wholeSeconds = true
	}
	return b
}

func New(name string, st driver.Store, owned bool) *Storage {
	s := &Storage{name: name, owned: owned}
	s.b.Store(newBackend(st))
	return s
}

// be returns the current backend.
func (s *Storage) be() *backend { return s.b.Load() }

// hasCAS, hasCAD, hasBatch and canListExpiring report the current
// store's capabilities.
func (s *Storage) HasCAS() bool          { return s.be().cas != nil }
func (s *Storage) HasCAD() bool          { return s.be().cad != nil }
func (s *Storage) HasBatch() bool        { return s.be().batch != nil }
func (s *Storage) CanListExpiring() bool { return s.be().lister != nil }

// Opened installs the store that a storage unreachable at start opened
// later.
func (s *Storage) Opened(st driver.Store) { s.b.Store(newBackend(st)) }

// unreachableStore stands in for a storage that could not be reached at
// start: every call fails with the error that opening it gave.
type unreachableStore struct{ err error }

func (u unreachableStore) Get(context.Context, any) (any, error) { return nil, u.err }
func (u unreachableStore) GetWithTTL(context.Context, any) (any, time.Duration, error) {
	return nil, 0, u.err
}
func (u unreachableStore) Set(context.Context, any, any, ...store.Option) error { return u.err }
func (u unreachableStore) Delete(context.Context, any) error                    { return u.err }
func (u unreachableStore) Invalidate(context.Context, ...store.InvalidateOption) error {
	return u.err
}
func (u unreachableStore) Clear(context.Context) error { return u.err }
func (u unreachableStore) GetType() string             { return "unreachable" }

// Open opens a storage URL ("memory" is memory://) with the driver its
// scheme names. A storage that is valid but unreachable is returned with
// an error wrapping driver.ErrUnreachable: a stand-in whose calls fail,
// which Reopen opens later.
func Open(ctx context.Context, spec string) (*Storage, error) {
	if spec == "" || spec == "memory" {
		spec = "memory://"
	}
	if strings.HasPrefix(spec, "memory?") { // "memory" with options
		spec = "memory://" + spec[len("memory"):]
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("sessions: storage %q is not a valid URL: %w", driver.RedactURL(spec), URLParseError(err))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("sessions: storage %q has no URL scheme; registered schemes: %s",
			driver.RedactURL(spec), strings.Join(driver.Schemes(), ", "))
	}
	open, ok := driver.Lookup(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("sessions: no driver for scheme %q (forgotten import of its driver package?); registered schemes: %s",
			u.Scheme, strings.Join(driver.Schemes(), ", "))
	}
	// key_prefix is the library's option, for every driver: the default
	// Config.KeyPrefix of Managers on this storage.
	q := u.Query()
	prefix, hasPrefix := q.Get("key_prefix"), q.Has("key_prefix")
	if hasPrefix {
		if prefix == "" {
			return nil, fmt.Errorf("sessions: storage %s: key_prefix must not be empty", driver.RedactURL(spec))
		}
		q.Del("key_prefix")
		u.RawQuery = q.Encode()
	}
	st, err := open(ctx, u)
	if err != nil {
		err = fmt.Errorf("sessions: opening storage %s: %w", driver.RedactURL(spec), err)
		if !errors.Is(err, driver.ErrUnreachable) {
			return nil, err
		}
		// Valid but unreachable: a stand-in that New may start with,
		// opening the store in the background.
		pending := New(driver.RedactURL(spec), unreachableStore{err}, true)
		pending.keyPrefix = prefix
		pending.reopen = func(ctx context.Context) (driver.Store, error) { return open(ctx, u) }
		return pending, err
	}
	opened := New(driver.RedactURL(spec), st, true)
	opened.keyPrefix = prefix
	return opened, nil
}

// Config defines a named storage: a driver URL plus options, which
// are added to the URL's query (so {URL: "redis://h:6379/0", Options:
// {"pool_size": "20"}} means redis://h:6379/0?pool_size=20). Each driver
// documents its options and rejects unknown ones. One option belongs to
// the library and works with every driver: key_prefix, the default
// Config.KeyPrefix of Managers using the storage, so that applications
// sharing one server each get their own namespace from the storage's
// definition alone.
type Config struct {
	URL     string
	Options map[string]string
}

func (sc Config) url() (string, error) {
	if len(sc.Options) == 0 {
		return sc.URL, nil
	}
	u, err := url.Parse(sc.URL)
	if err != nil {
		return "", fmt.Errorf("sessions: storage URL %q: %w", driver.RedactURL(sc.URL), URLParseError(err))
	}
	q := u.Query()
	for k, v := range sc.Options {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Process-wide named storages, for applications that define them once
// (like an application server's admin console) and let each Manager say
// which one it uses.
var (
	namedMu       sync.RWMutex
	namedStorages = map[string]Config{}
	namedStores   = map[string]driver.Store{}
)

// DefineStorage defines a named storage process-wide
// (sessions.DefineStorage). It panics if the name is already defined or
// registered,
// or looks like a URL.
func DefineStorage(name string, sc Config) {
	checkNewName(name)
	namedStorages[name] = sc
	namedMu.Unlock()
}

// RegisterStore makes a ready gocache store available process-wide under a
// name, for Config.Storage. Managers using it share it and do not close
// it. It panics if the name is already defined or registered, or looks
// like a URL.
func RegisterStore(name string, st driver.Store) {
	if st == nil {
		panic("sessions: RegisterStore " + name + " with a nil store")
	}
	checkNewName(name)
	namedStores[name] = st
	namedMu.Unlock()
}

// checkNewName locks namedMu (the caller unlocks) and panics on a bad or
// duplicate name.
func checkNewName(name string) {
	if name == "" || strings.Contains(name, ":") {
		panic(fmt.Sprintf("sessions: storage name %q must be non-empty and contain no ':' (names are not URLs)", name))
	}
	namedMu.Lock()
	_, defined := namedStorages[name]
	_, registered := namedStores[name]
	if defined || registered {
		namedMu.Unlock()
		panic("sessions: storage " + name + " defined twice")
	}
}

// storageNames lists the names a Config.Storage value can use, for error
// messages.
func storageNames(local map[string]Config) []string {
	namedMu.RLock()
	defer namedMu.RUnlock()
	set := map[string]bool{"memory": true}
	for n := range local {
		set[n] = true
	}
	for n := range namedStorages {
		set[n] = true
	}
	for n := range namedStores {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resolve opens what a sessions.Config.Storage value names: a storage of
// local (sessions.Config.Storages), one defined or registered
// process-wide, or a URL.
func Resolve(ctx context.Context, spec string, local map[string]Config) (*Storage, error) {
	if sc, ok := local[spec]; ok {
		return openNamed(ctx, spec, sc)
	}
	namedMu.RLock()
	sc, defined := namedStorages[spec]
	st, registered := namedStores[spec]
	namedMu.RUnlock()
	switch {
	case defined:
		return openNamed(ctx, spec, sc)
	case registered:
		return New(spec, st, false), nil
	case spec == "" || spec == "memory" || strings.HasPrefix(spec, "memory?") || strings.Contains(spec, ":"):
		return Open(ctx, spec)
	}
	return nil, fmt.Errorf("sessions: unknown storage %q; defined storages: %s (or give a URL such as redis://host:6379/0; registered schemes: %s)",
		spec, strings.Join(storageNames(local), ", "), strings.Join(driver.Schemes(), ", "))
}

func openNamed(ctx context.Context, name string, sc Config) (*Storage, error) {
	raw, err := sc.url()
	if err != nil {
		return nil, fmt.Errorf("sessions: storage %q: %w", name, err)
	}
	st, err := Open(ctx, raw)
	if st != nil {
		st.name = name + " (" + st.name + ")"
	}
	if err != nil {
		return st, fmt.Errorf("sessions: storage %q: %w", name, err)
	}
	return st, nil
}

// URLParseError is url.Parse's error without the URL it repeats.
func URLParseError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (s *Storage) isNotFound(err error) bool {
	if errors.Is(err, &store.NotFound{}) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if clientMissMessages[e.Error()] {
			return true
		}
	}
	return false
}

// get returns the stored bytes, or ErrNotFound.
func (s *Storage) get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.be().store.Get(ctx, key)
	if err != nil {
		if s.isNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	// An empty value is no entry: the library never writes one, and a
	// store may leave one for a moment as the mark of a claimed delete
	// (the memcached driver's CompareAndDelete).
	switch b := v.(type) {
	case []byte:
		if len(b) == 0 {
			return nil, ErrNotFound
		}
		return b, nil
	case string:
		if b == "" {
			return nil, ErrNotFound
		}
		return []byte(b), nil
	case nil:
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("sessions: storage %s returned a %T for %s; want []byte or string", s.name, v, key)
	}
}

// set writes value with a time to live (0: none).
func (s *Storage) set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// SynchronousSet: ristretto otherwise buffers the write, so an
	// immediate read misses it; other stores ignore the option.
	b := s.be()
	if ttl = b.storeTTL(ttl); ttl > 0 {
		return b.store.Set(ctx, key, value, store.WithExpiration(ttl), store.WithSynchronousSet())
	}
	return b.store.Set(ctx, key, value, store.WithSynchronousSet())
}

// setMany writes a batch: in one call where the store can (HasBatch),
// else Concurrency Set calls at a time.
func (s *Storage) setMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b := s.be(); b.batch != nil {
		err := b.batch.SetMany(ctx, keys, values, b.storeTTL(ttl))
		if !errors.Is(err, driver.ErrSkip) {
			return err
		}
		s.decline(func(b *backend) { b.batch = nil })
	}
	errs := make([]error, len(keys))
	for start := 0; start < len(keys); start += Concurrency {
		var wg sync.WaitGroup
		for i := start; i < min(start+Concurrency, len(keys)); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.set(ctx, keys[i], values[i], ttl)
			}()
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// decline removes a capability the store declined (driver.ErrSkip) from
// the current backend: calls from then on take the basic path.
func (s *Storage) decline(drop func(b *backend)) {
	for {
		old := s.b.Load()
		b := *old
		drop(&b)
		if b.cas == nil {
			b.casN = nil
		}
		if b.cad == nil {
			b.lister = nil
		}
		if s.b.CompareAndSwap(old, &b) {
			return
		}
	}
}

// compareAndSwap writes value only if the entry still holds old (nil:
// absent). Stores without the capability get a re-read then a write: right
// unless another writer slips in between the two calls.
func (s *Storage) compareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if b := s.be(); b.cas != nil {
		ok, err := b.cas.CompareAndSwap(ctx, key, old, value, b.storeTTL(ttl))
		if !errors.Is(err, driver.ErrSkip) {
			return ok, err
		}
		s.decline(func(b *backend) { b.cas = nil })
	}
	cur, err := s.get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		if old != nil {
			return false, nil
		}
	case err != nil:
		return false, err
	case old == nil || string(cur) != string(old):
		return false, nil
	}
	return true, s.set(ctx, key, value, ttl)
}

// compareAndSwapMany performs compareAndSwap per entry: in one call where
// the store can, else Concurrency calls at a time. errs[i] is entry i's
// error (all the same when the batch call failed).
func (s *Storage) compareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) (swapped []bool, errs []error) {
	swapped, errs = make([]bool, len(keys)), make([]error, len(keys))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return swapped, errs
	}
	b := s.be()
	if b.casN != nil && len(keys) > 1 {
		got, err := b.casN.CompareAndSwapMany(ctx, keys, olds, values, b.storeTTL(ttl))
		if errors.Is(err, driver.ErrSkip) {
			s.decline(func(b *backend) { b.casN = nil })
		}
		if err == nil && len(got) != len(keys) {
			err = fmt.Errorf("sessions: storage %s: CompareAndSwapMany of %d entries reported %d outcomes", s.name, len(keys), len(got))
		}
		if err == nil {
			return got, errs
		}
		// One entry the storage refuses fails the whole call (or the
		// store declined): find it (and let the others land) one by one,
		// below.
	}
	// Concurrency calls at a time; a group in which every call fails
	// means the storage itself is failing: the rest are not tried.
	for start := 0; start < len(keys); start += Concurrency {
		end := min(start+Concurrency, len(keys))
		var wg sync.WaitGroup
		for i := start; i < end; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				swapped[i], errs[i] = s.compareAndSwap(ctx, keys[i], olds[i], values[i], ttl)
			}()
		}
		wg.Wait()
		allFailed := true
		for i := start; i < end; i++ {
			allFailed = allFailed && errs[i] != nil
		}
		if allFailed {
			for i := end; i < len(keys); i++ {
				errs[i] = errs[start]
			}
			break
		}
	}
	return swapped, errs
}

// compareAndDelete deletes key if it still holds old, reporting whether
// this call deleted it: of concurrent calls, at most one wins, where the
// store has CompareAndDelete. Without it the entry is deleted and every
// caller wins.
func (s *Storage) compareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if b := s.be(); b.cad != nil {
		ok, err := b.cad.CompareAndDelete(ctx, key, old)
		if !errors.Is(err, driver.ErrSkip) {
			return ok, err
		}
		s.decline(func(b *backend) { b.cad = nil })
	}
	return true, s.delete(ctx, key)
}

// listExpiring lists entries under prefix whose time to live ends before
// before (the store must have ExpiryLister: CanListExpiring).
func (s *Storage) listExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	b := s.be()
	if b.lister == nil {
		return nil, nil, fmt.Errorf("sessions: storage %s cannot list expiring entries", s.name)
	}
	keys, values, err := b.lister.ListExpiring(ctx, prefix, before, limit)
	if errors.Is(err, driver.ErrSkip) {
		s.decline(func(b *backend) { b.lister = nil })
		return nil, nil, nil
	}
	if err == nil && len(keys) != len(values) {
		err = fmt.Errorf("sessions: storage %s: ListExpiring returned %d keys and %d values", s.name, len(keys), len(values))
	}
	return keys, values, err
}

// delete removes key; deleting a missing key is not an error.
func (s *Storage) delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.be().store.Delete(ctx, key)
	if err == nil || s.isNotFound(err) {
		return nil
	}
	// Some stores (freecache) fail to delete a missing key with an error of
	// their own: the delete has its effect if the key is gone.
	if _, gerr := s.get(ctx, key); errors.Is(gerr, ErrNotFound) {
		return nil
	}
	return err
}

// Close closes the store if this Storage opened it from a URL; a store
// handed over (sessions.Config.Store, RegisterStore) stays open.
func (s *Storage) Close() error {
	if !s.owned {
		return nil
	}
	if c, ok := s.be().store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// KeyPrefix returns the storage's key_prefix option, "" if it has none.
func (s *Storage) KeyPrefix() string { return s.keyPrefix }

// Name describes the storage for people: its name and URL, passwords
// hidden.
func (s *Storage) Name() string { return s.name }

// Store returns the current underlying store.
func (s *Storage) Store() driver.Store { return s.be().store }

// CanReopen reports whether the storage was unreachable when opened, and
// Reopen opens it.
func (s *Storage) CanReopen() bool { return s.reopen != nil }

// Reopen opens a storage that was unreachable when opened; the caller
// installs the store with Opened.
func (s *Storage) Reopen(ctx context.Context) (driver.Store, error) { return s.reopen(ctx) }
