package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// Opener builds a gocache store from a storage URL. It is what a driver
// registers under its URL scheme.
//
// An Opener must reject an unknown URL option with an error naming it and
// the known ones; it may connect (and should, so that a wrong password
// fails at start), and then wraps a connectivity failure in
// ErrStorageUnreachable, so that New can start anyway and open the store
// later. ctx bounds the opening only and is cancelled afterwards: the
// store must not keep it. The library removes its own option, key_prefix,
// before the Opener sees the URL. If the returned store has a
// `Close() error` method, the Manager that opened it calls it from Close,
// once. Every store method may be called concurrently from many
// goroutines, must honour its context's deadline, and must copy the
// []byte values it is given and return ones the caller owns.
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
	// as absent), while a non-nil empty old matches a stored empty value.
	// The comparison and the write must be one atomic step against every
	// other writer, in every process. It reports whether it stored; a
	// failed comparison is not an error. On error the outcome is unknown.
	CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)
}

// CompareAndSwapManyStore is an optional capability of a store that has
// CompareAndSwap: many of them in one round trip or transaction. Sticky
// mode's write-behind uses it to flush every queued session at once
// without ever replacing a version another server stored meanwhile.
// Without it, the library makes one CompareAndSwap call per session,
// several in parallel.
type CompareAndSwapManyStore interface {
	// CompareAndSwapMany performs CompareAndSwap(keys[i], olds[i],
	// values[i], ttl) for every i and reports in swapped[i] whether entry
	// i was stored. Each entry compares and swaps atomically on its own;
	// the batch as a whole need not be atomic. It must accept up to 256
	// entries per call, and an error (mismatched slice lengths among
	// them) means no entry's outcome is known: any subset may have been
	// stored.
	CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) (swapped []bool, err error)
}

// CompareAndDeleteStore is an optional capability of a store: an atomic
// conditional delete. The library ends a stored session with it, so that
// the storage, not a guess of each server, decides which server reports
// the end: OnSessionEnd fires only on the server whose delete succeeded.
// Without it, two servers finding the same expired entry at once may
// both report it.
type CompareAndDeleteStore interface {
	// CompareAndDelete deletes key only if its current value is byte for
	// byte equal to old (an expired entry counts as absent), and reports
	// whether it deleted. The comparison and the delete must be one
	// atomic step against every other writer and deleter, in every
	// process: of any number of concurrent calls with the same key and
	// old, at most one reports true. A missing key is (false, nil). On
	// error the outcome is unknown.
	CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error)
}

// ExpiryLister is an optional capability of a store that has
// CompareAndDelete and keeps its entries' expiry times in an index: it
// lets the Managers sharing the store find the sessions that timed out
// while no server held them (evicted from memory, or written by a process
// that has exited) and report each end once, claiming it with
// CompareAndDelete.
type ExpiryLister interface {
	// ListExpiring returns up to limit live entries (present and not yet
	// expired) whose key starts with prefix and whose time to live ends
	// before the instant before, earliest first, with their values. The
	// index must follow every Set, SetMany, CompareAndSwap(Many), Delete
	// and CompareAndDelete, and must not outlive the entries: the store
	// removes the index records of entries gone (deleted or expired) on
	// its own, even if nobody ever calls ListExpiring.
	ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) (keys []string, values [][]byte, err error)
}

// BatchSetter is an optional capability of a store: many writes in one
// round trip or transaction. Sticky mode's write-behind uses it to flush
// every queued session at once (a Redis pipeline, one bbolt transaction)
// instead of one call per session.
type BatchSetter interface {
	// SetMany stores values[i] under keys[i], as Set would, each with the
	// time to live ttl (0: none). On error any subset may have been
	// stored: the caller writes them all again.
	SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error
}

// KeyLister is an optional capability of a store: listing keys by prefix.
// sessionctl uses it to list and purge sessions; without it those commands
// say the storage cannot list.
type KeyLister interface {
	// ListKeys calls fn for each live key that starts with prefix, until
	// fn returns an error, which ListKeys then returns. fn may call the
	// store (Get, Delete the key it was given): ListKeys must not hold a
	// lock those calls need. A key present for the whole call is reported
	// exactly once; keys written or deleted meanwhile may or may not be.
	ListKeys(ctx context.Context, prefix string, fn func(key string) error) error
}

// ErrStorageUnreachable is what an Opener wraps when the storage could
// not be reached (connection refused, a timeout, a file locked by another
// process) although its URL and options are valid. New then starts
// anyway, unless Config.RequireStorageAtStart, and keeps trying in the
// background; any other Opener error is a configuration error and fails
// New at once.
var ErrStorageUnreachable = errors.New("sessions: storage unreachable")

// ErrNotFound is what Storage.Get reports for a missing (or expired) entry.
var ErrNotFound = errors.New("sessions: entry not found")

// errNotFound is the internal name of ErrNotFound.
var errNotFound = ErrNotFound

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
	reopen func(ctx context.Context) (store.StoreInterface, error)
}

// backend is a store and its capabilities. Immutable.
type backend struct {
	store  store.StoreInterface
	cas    CompareAndSwapStore     // nil when the store lacks it
	casN   CompareAndSwapManyStore // nil when the store lacks it
	batch  BatchSetter             // nil when the store lacks it
	cad    CompareAndDeleteStore   // nil when the store lacks it
	lister ExpiryLister            // nil unless the store has it and cad
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

func newBackend(st store.StoreInterface) *backend {
	b := &backend{store: st}
	b.cas, _ = st.(CompareAndSwapStore)
	if b.cas != nil {
		b.casN, _ = st.(CompareAndSwapManyStore)
	}
	b.batch, _ = st.(BatchSetter)
	b.cad, _ = st.(CompareAndDeleteStore)
	if b.cad != nil {
		b.lister, _ = st.(ExpiryLister)
	}
	switch st.GetType() {
	case "memcache":
		b.wholeSeconds, b.unixAfter30Days = true, true
	case "freecache":
		b.wholeSeconds = true
	}
	return b
}

func newStorage(name string, st store.StoreInterface, owned bool) *storage {
	s := &storage{name: name, owned: owned}
	s.b.Store(newBackend(st))
	return s
}

// be returns the current backend.
func (s *storage) be() *backend { return s.b.Load() }

// hasCAS, hasCAD, hasBatch and canListExpiring report the current
// store's capabilities.
func (s *storage) hasCAS() bool          { return s.be().cas != nil }
func (s *storage) hasCAD() bool          { return s.be().cad != nil }
func (s *storage) hasBatch() bool        { return s.be().batch != nil }
func (s *storage) canListExpiring() bool { return s.be().lister != nil }

// opened installs the store that a storage unreachable at start opened
// later.
func (s *storage) opened(st store.StoreInterface) { s.b.Store(newBackend(st)) }

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

// openStorage resolves Config.Storage: "memory" or a URL whose scheme a
// driver registered.
func openStorage(ctx context.Context, spec string) (*storage, error) {
	if spec == "" || spec == "memory" {
		spec = "memory://"
	}
	if strings.HasPrefix(spec, "memory?") { // "memory" with options
		spec = "memory://" + spec[len("memory"):]
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("sessions: storage %q is not a valid URL: %w", redactURL(spec), urlParseError(err))
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
	// key_prefix is the library's option, for every driver: the default
	// Config.KeyPrefix of Managers on this storage.
	q := u.Query()
	prefix, hasPrefix := q.Get("key_prefix"), q.Has("key_prefix")
	if hasPrefix {
		if prefix == "" {
			return nil, fmt.Errorf("sessions: storage %s: key_prefix must not be empty", redactURL(spec))
		}
		q.Del("key_prefix")
		u.RawQuery = q.Encode()
	}
	st, err := open(ctx, u)
	if err != nil {
		err = fmt.Errorf("sessions: opening storage %s: %w", redactURL(spec), err)
		if !errors.Is(err, ErrStorageUnreachable) {
			return nil, err
		}
		// Valid but unreachable: a stand-in that New may start with,
		// opening the store in the background.
		pending := newStorage(redactURL(spec), unreachableStore{err}, true)
		pending.keyPrefix = prefix
		pending.reopen = func(ctx context.Context) (store.StoreInterface, error) { return open(ctx, u) }
		return pending, err
	}
	opened := newStorage(redactURL(spec), st, true)
	opened.keyPrefix = prefix
	return opened, nil
}

// StorageConfig defines a named storage: a driver URL plus options, which
// are added to the URL's query (so {URL: "redis://h:6379/0", Options:
// {"pool_size": "20"}} means redis://h:6379/0?pool_size=20). Each driver
// documents its options and rejects unknown ones. One option belongs to
// the library and works with every driver: key_prefix, the default
// Config.KeyPrefix of Managers using the storage, so that applications
// sharing one server each get their own namespace from the storage's
// definition alone.
type StorageConfig struct {
	URL     string
	Options map[string]string
}

func (sc StorageConfig) url() (string, error) {
	if len(sc.Options) == 0 {
		return sc.URL, nil
	}
	u, err := url.Parse(sc.URL)
	if err != nil {
		return "", fmt.Errorf("sessions: storage URL %q: %w", redactURL(sc.URL), urlParseError(err))
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
	namedStorages = map[string]StorageConfig{}
	namedStores   = map[string]store.StoreInterface{}
)

// DefineStorage defines a named storage process-wide: Config.Storage may
// then name it. It panics if the name is already defined or registered,
// or looks like a URL.
func DefineStorage(name string, sc StorageConfig) {
	checkNewName(name)
	namedStorages[name] = sc
	namedMu.Unlock()
}

// RegisterStore makes a ready gocache store available process-wide under a
// name, for Config.Storage. Managers using it share it and do not close
// it. It panics if the name is already defined or registered, or looks
// like a URL.
func RegisterStore(name string, st store.StoreInterface) {
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

// storageNames lists the names Config.Storage can use, for error messages.
func storageNames(local map[string]StorageConfig) []string {
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

// resolveStorage finds what Config.Storage names: a storage of
// Config.Storages, one defined or registered process-wide, or a URL.
func resolveStorage(ctx context.Context, spec string, local map[string]StorageConfig) (*storage, error) {
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
		return newStorage(spec, st, false), nil
	case spec == "" || spec == "memory" || strings.HasPrefix(spec, "memory?") || strings.Contains(spec, ":"):
		return openStorage(ctx, spec)
	}
	return nil, fmt.Errorf("sessions: unknown storage %q; defined storages: %s (or give a URL such as redis://host:6379/0; registered schemes: %s)",
		spec, strings.Join(storageNames(local), ", "), strings.Join(Drivers(), ", "))
}

func openNamed(ctx context.Context, name string, sc StorageConfig) (*storage, error) {
	raw, err := sc.url()
	if err != nil {
		return nil, fmt.Errorf("sessions: storage %q: %w", name, err)
	}
	st, err := openStorage(ctx, raw)
	if st != nil {
		st.name = name + " (" + st.name + ")"
	}
	if err != nil {
		return st, fmt.Errorf("sessions: storage %q: %w", name, err)
	}
	return st, nil
}

// Storage is an open storage as the library sees it: a gocache store
// behind the adapter that absorbs the stores' differences (value types,
// miss errors, TTL units, failed deletes of absent keys). Tools such as
// sessionctl use it to read and delete entries exactly as a Manager does.
type Storage struct{ s *storage }

// OpenStorage opens what a Config.Storage value names: a name defined in
// defined (may be nil) or process-wide, or a URL. Close releases it.
func OpenStorage(ctx context.Context, nameOrURL string, defined map[string]StorageConfig) (*Storage, error) {
	st, err := resolveStorage(ctx, nameOrURL, defined)
	if err != nil {
		return nil, err // nothing to close: an unreachable store never opened
	}
	return &Storage{st}, nil
}

// KeyPrefix returns the storage's key_prefix option, "" if it has none.
func (s *Storage) KeyPrefix() string { return s.s.keyPrefix }

// Name describes the storage for people: its name and URL, passwords hidden.
func (s *Storage) Name() string { return s.s.name }

// Store returns the underlying gocache store.
func (s *Storage) Store() store.StoreInterface { return s.s.be().store }

// Get returns the bytes stored under key, or ErrNotFound.
func (s *Storage) Get(ctx context.Context, key string) ([]byte, error) { return s.s.get(ctx, key) }

// Delete removes key; a missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error { return s.s.delete(ctx, key) }

// Close closes the store if this Storage opened it (from a URL); a store
// registered with RegisterStore stays open.
func (s *Storage) Close() error { return s.s.close() }

// RedactURL hides the passwords in a storage URL (in the user info, and in
// any option whose name contains "password", as Sentinel URLs carry), for
// logs and messages.
func RedactURL(spec string) string { return redactURL(spec) }

func redactURL(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		return redactUnparsed(spec)
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	if u.User == nil && !changed {
		return spec
	}
	return u.Redacted()
}

// Password-shaped parts of a URL that did not parse: user information's
// password, and password options.
var (
	unparsedUserPassword = regexp.MustCompile(`^([^:/?#]+://[^/?#@]*?:)[^/?#]*@`)
	unparsedPasswordOpt  = regexp.MustCompile(`(?i)([?&][^=&]*password[^=&]*=)[^&#]*`)
)

// redactUnparsed masks the passwords of a URL that url.Parse rejected, so
// that an error about it (a typo in a port) does not print them.
func redactUnparsed(spec string) string {
	spec = unparsedUserPassword.ReplaceAllString(spec, "${1}xxxxx@")
	return unparsedPasswordOpt.ReplaceAllString(spec, "${1}xxxxx")
}

// urlParseError is url.Parse's error without the URL it repeats.
func urlParseError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
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
	v, err := s.be().store.Get(ctx, key)
	if err != nil {
		if s.isNotFound(err) {
			return nil, errNotFound
		}
		return nil, err
	}
	// An empty value is no entry: the library never writes one, and a
	// store may leave one for a moment as the mark of a claimed delete
	// (the memcached driver's CompareAndDelete).
	switch b := v.(type) {
	case []byte:
		if len(b) == 0 {
			return nil, errNotFound
		}
		return b, nil
	case string:
		if b == "" {
			return nil, errNotFound
		}
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
	b := s.be()
	if ttl = b.storeTTL(ttl); ttl > 0 {
		return b.store.Set(ctx, key, value, store.WithExpiration(ttl), store.WithSynchronousSet())
	}
	return b.store.Set(ctx, key, value, store.WithSynchronousSet())
}

// setMany writes a batch through the store's BatchSetter (one it has:
// else an error).
func (s *storage) setMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.be()
	if b.batch == nil {
		return fmt.Errorf("sessions: storage %s cannot write batches", s.name)
	}
	return b.batch.SetMany(ctx, keys, values, b.storeTTL(ttl))
}

// compareAndSwap writes value only if the entry still holds old (nil:
// absent). Stores without the capability get a re-read then a write: right
// unless another writer slips in between the two calls.
func (s *storage) compareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if b := s.be(); b.cas != nil {
		return b.cas.CompareAndSwap(ctx, key, old, value, b.storeTTL(ttl))
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

// compareAndSwapMany performs a compare-and-swap per entry (the store
// must have CompareAndSwap: else every entry fails): in one call where the store can, else flushConcurrency calls at a
// time. errs[i] is entry i's error (all the same when the batch call
// failed).
func (s *storage) compareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) (swapped []bool, errs []error) {
	swapped, errs = make([]bool, len(keys)), make([]error, len(keys))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return swapped, errs
	}
	b := s.be()
	if b.cas == nil {
		err := fmt.Errorf("sessions: storage %s has no CompareAndSwap", s.name)
		for i := range errs {
			errs[i] = err
		}
		return swapped, errs
	}
	if b.casN != nil && len(keys) > 1 {
		got, err := b.casN.CompareAndSwapMany(ctx, keys, olds, values, b.storeTTL(ttl))
		if err == nil && len(got) != len(keys) {
			err = fmt.Errorf("sessions: storage %s: CompareAndSwapMany of %d entries reported %d outcomes", s.name, len(keys), len(got))
		}
		if err == nil {
			return got, errs
		}
		// One entry the storage refuses fails the whole call: find it
		// (and let the others land) one by one, below.
	}
	// flushConcurrency calls at a time; a group in which every call fails
	// means the storage itself is failing: the rest are not tried.
	for start := 0; start < len(keys); start += flushConcurrency {
		end := min(start+flushConcurrency, len(keys))
		var wg sync.WaitGroup
		for i := start; i < end; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				swapped[i], errs[i] = b.cas.CompareAndSwap(ctx, keys[i], olds[i], values[i], b.storeTTL(ttl))
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
func (s *storage) compareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if b := s.be(); b.cad != nil {
		return b.cad.CompareAndDelete(ctx, key, old)
	}
	return true, s.delete(ctx, key)
}

// listExpiring lists entries under prefix whose time to live ends before
// before (the store must have ExpiryLister).
func (s *storage) listExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	b := s.be()
	if b.lister == nil {
		return nil, nil, fmt.Errorf("sessions: storage %s cannot list expiring entries", s.name)
	}
	keys, values, err := b.lister.ListExpiring(ctx, prefix, before, limit)
	if err == nil && len(keys) != len(values) {
		err = fmt.Errorf("sessions: storage %s: ListExpiring returned %d keys and %d values", s.name, len(keys), len(values))
	}
	return keys, values, err
}

// delete removes key; deleting a missing key is not an error.
func (s *storage) delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.be().store.Delete(ctx, key)
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
	if c, ok := s.be().store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
