package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// Opener builds a gocache store from a storage URL. It is what a driver
// registers under its URL scheme. If the returned store has a
// `Close() error` method, the Manager that opened it calls it from Close.
type Opener func(ctx context.Context, u *url.URL) (store.StoreInterface, error)

var (
	driversMu sync.RWMutex
	drivers   = map[string]Opener{}
)

// RegisterDriver makes a driver available under a URL scheme (such as
// "redis" for redis://...). Drivers call it from an init function, so a
// blank import of the driver package is enough to use its scheme. It panics
// when open is nil or the scheme is already registered, as database/sql's
// Register does: two drivers claiming one scheme is a programming error.
func RegisterDriver(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	if open == nil {
		panic("sessions: RegisterDriver " + scheme + " with a nil Opener")
	}
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[scheme]; dup {
		panic("sessions: RegisterDriver called twice for scheme " + scheme)
	}
	drivers[scheme] = open
}

// Drivers returns the registered URL schemes, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	out := make([]string, 0, len(drivers))
	for s := range drivers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func lookupDriver(scheme string) (Opener, bool) {
	driversMu.RLock()
	defer driversMu.RUnlock()
	open, ok := drivers[strings.ToLower(scheme)]
	return open, ok
}

// CompareAndSwapStore is an optional capability of a store: an atomic
// conditional write. The library uses it in cluster mode so that two servers
// committing the same session at once cannot lose each other's changes.
// Without it, the library re-reads the entry just before writing, which
// narrows the race but cannot close it.
type CompareAndSwapStore interface {
	// CompareAndSwap stores value under key, with the given time to live
	// (0: no expiry), only if the current value is byte for byte equal to
	// old; old == nil means "only if key is absent" (an expired entry counts
	// as absent). It reports whether it stored. A failed comparison is not
	// an error.
	CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)
}

// ExpiryNotifier is an optional capability of a store that removes expired
// entries itself: it tells subscribers about each entry it expires, so the
// library can fire OnSessionEnd for sessions that time out in storage.
type ExpiryNotifier interface {
	// NotifyExpired registers fn; the store calls it once for each entry it
	// expires, with the entry's key and last value, delivering each entry to
	// exactly one subscriber (so N Managers sharing the store see each end
	// once in total). fn must not block for long. stop unregisters fn.
	NotifyExpired(fn func(key string, value []byte)) (stop func())
}

// KeyLister is an optional capability of a store: listing keys by prefix.
// sessionctl uses it to list and purge sessions; without it those commands
// say the storage cannot list.
type KeyLister interface {
	// ListKeys calls fn for each live key that starts with prefix, until
	// fn returns an error, which ListKeys then returns.
	ListKeys(ctx context.Context, prefix string, fn func(key string) error) error
}

// errNotFound is what storage reads report for a missing entry.
var errNotFound = errors.New("sessions: entry not found")

// Miss errors some gocache stores return unwrapped, instead of
// store.NotFound, recognised by message so the core need not link their
// client libraries: bigcache's ErrEntryNotFound, go-redis's Nil, gomemcache's
// ErrCacheMiss.
var clientMissMessages = map[string]bool{
	"Entry not found":      true,
	"redis: nil":           true,
	"memcache: cache miss": true,
}

// storage is the one adapter between the library and a gocache store. It
// absorbs the stores' differences: it always writes []byte, accepts string
// or []byte back, always passes string keys, maps every flavour of "not
// found" to errNotFound and never calls Clear or Invalidate.
type storage struct {
	name   string
	store  store.StoreInterface
	cas    CompareAndSwapStore // nil when the store lacks it
	expiry ExpiryNotifier      // nil when the store lacks it
	owned  bool                // opened from a URL: closed by the Manager
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
func (s *storage) storeTTL(ttl time.Duration) time.Duration {
	if s.wholeSeconds {
		ttl = ceilSeconds(ttl)
	}
	if s.unixAfter30Days && ttl > memcacheRelativeLimit {
		ttl = time.Duration(time.Now().Add(ttl).Unix()) * time.Second
	}
	return ttl
}

func newStorage(name string, st store.StoreInterface, owned bool) *storage {
	s := &storage{name: name, store: st, owned: owned}
	s.cas, _ = st.(CompareAndSwapStore)
	s.expiry, _ = st.(ExpiryNotifier)
	switch st.GetType() {
	case "memcache":
		s.wholeSeconds, s.unixAfter30Days = true, true
	case "freecache":
		s.wholeSeconds = true
	}
	return s
}

// openStorage resolves Config.Storage: "memory" or a URL whose scheme a
// driver registered.
func openStorage(ctx context.Context, spec string) (*storage, error) {
	if spec == "" || spec == "memory" {
		spec = "memory://"
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("sessions: storage %q is not a valid URL: %w", redactURL(spec), err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("sessions: storage %q has no URL scheme; registered schemes: %s",
			redactURL(spec), strings.Join(Drivers(), ", "))
	}
	open, ok := lookupDriver(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("sessions: no driver for scheme %q (forgotten import of its driver package?); registered schemes: %s",
			u.Scheme, strings.Join(Drivers(), ", "))
	}
	st, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("sessions: opening storage %s: %w", redactURL(spec), err)
	}
	return newStorage(redactURL(spec), st, true), nil
}

// OpenStore opens the store a storage URL names ("memory", or a URL whose
// scheme a driver registered), as Config.Storage would. The caller owns it:
// close it (if it has a Close method) when done. Tools use it to work on a
// storage without a Manager.
func OpenStore(ctx context.Context, storageURL string) (store.StoreInterface, error) {
	st, err := openStorage(ctx, storageURL)
	if err != nil {
		return nil, err
	}
	return st.store, nil
}

// redactURL hides a password in a storage URL before it is logged.
func redactURL(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return spec
	}
	return u.Redacted()
}

func (s *storage) isNotFound(err error) bool {
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

// get returns the stored bytes, or errNotFound.
func (s *storage) get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.store.Get(ctx, key)
	if err != nil {
		if s.isNotFound(err) {
			return nil, errNotFound
		}
		return nil, err
	}
	switch b := v.(type) {
	case []byte:
		return b, nil
	case string:
		return []byte(b), nil
	case nil:
		return nil, errNotFound
	default:
		return nil, fmt.Errorf("sessions: storage %s returned a %T for %s; want []byte or string", s.name, v, key)
	}
}

// set writes value with a time to live (0: none).
func (s *storage) set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// SynchronousSet: ristretto otherwise buffers the write, so an
	// immediate read misses it; other stores ignore the option.
	if ttl = s.storeTTL(ttl); ttl > 0 {
		return s.store.Set(ctx, key, value, store.WithExpiration(ttl), store.WithSynchronousSet())
	}
	return s.store.Set(ctx, key, value, store.WithSynchronousSet())
}

// compareAndSwap writes value only if the entry still holds old (nil:
// absent). Stores without the capability get a re-read then a write: right
// unless another writer slips in between the two calls.
func (s *storage) compareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if s.cas != nil {
		return s.cas.CompareAndSwap(ctx, key, old, value, s.storeTTL(ttl))
	}
	cur, err := s.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
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

// delete removes key; deleting a missing key is not an error.
func (s *storage) delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.store.Delete(ctx, key)
	if err == nil || s.isNotFound(err) {
		return nil
	}
	// Some stores (freecache) fail to delete a missing key with an error of
	// their own: the delete has its effect if the key is gone.
	if _, gerr := s.get(ctx, key); errors.Is(gerr, errNotFound) {
		return nil
	}
	return err
}

func (s *storage) close() error {
	if !s.owned {
		return nil
	}
	if c, ok := s.store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
