package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/eko/gocache/lib/v4/store"
	memcachestore "github.com/eko/gocache/store/memcache/v4"
)

const (
	// DefaultMaxItem is memcached's default item size limit (its -I
	// option), 1 MiB.
	DefaultMaxItem = 1 << 20

	// ItemOverhead is what the driver counts, besides key and value,
	// toward the item size limit: memcached 1.6 needs 59 bytes (item
	// header, CAS id, terminators) and the rest is margin.
	ItemOverhead = 64

	// maxRelative is the longest expiry memcached reads as relative
	// seconds (30 days); larger numbers are absolute Unix times.
	maxRelative = 30 * 24 * 60 * 60
)

// ErrTooLarge is matched (with errors.Is) by the error a write returns for a
// value that would exceed the item size limit.
var ErrTooLarge = errors.New("memcached: item too large")

// The capabilities the library finds by type assertion: a signature
// change fails to compile here instead of silently dropping one.
var (
	_ driver.Store             = (*Store)(nil)
	_ driver.CompareAndSwapper = (*Store)(nil)
	_ driver.CompareAndDeleter = (*Store)(nil)
)

// Store is gocache's memcache store (embedded) with memcached's quirks fixed
// in its own methods, plus the CompareAndSwap and CompareAndDelete
// capabilities. GetType reports
// "memcached" (not gocache's "memcache": the sessions core corrects TTLs
// for the raw gocache store, and this one needs no correction). It is safe
// for concurrent use.
//
// Every method checks the context before talking to the server (gomemcache
// takes no context); each call is then bounded by the client's Timeout.
// The embedded Clear is gocache's flush_all: it empties every server of the
// client, not only this store's keys. The sessions library never calls
// Clear or Invalidate.
type Store struct {
	*memcachestore.MemcacheStore

	client  *memcache.Client
	maxItem int
	owned   bool // created by Open from a URL: Close closes its connections
	now     func() time.Time
}

// Option configures a Store made by New.
type Option func(*Store)

// WithMaxItem sets the item size limit the store enforces before sending a
// write; set it to the servers' -I value. n must be larger than
// ItemOverhead, else New panics. The default is DefaultMaxItem.
func WithMaxItem(n int) Option {
	return func(s *Store) {
		if n <= ItemOverhead {
			panic(fmt.Sprintf("memcached: WithMaxItem(%d): the limit must exceed the %d-byte item overhead", n, ItemOverhead))
		}
		s.maxItem = n
	}
}

// New returns a Store on client. The caller keeps ownership of client:
// Store.Close does not close its connections.
func New(client *memcache.Client, opts ...Option) *Store {
	if client == nil {
		panic("memcached: New with a nil client")
	}
	s := &Store{
		MemcacheStore: memcachestore.NewMemcache(client),
		client:        client,
		maxItem:       DefaultMaxItem,
		now:           time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Client returns the gomemcache client the store uses.
func (s *Store) Client() *memcache.Client { return s.client }

// MaxItem returns the item size limit the store enforces.
func (s *Store) MaxItem() int { return s.maxItem }

// Close closes the client's idle connections if Open created the client,
// and does nothing for a Store made by New. gomemcache starts no
// goroutines, and a closed client still works (it dials again), so Close
// cannot break a concurrent call.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	return s.client.Close()
}

// Get returns the []byte stored under key (a string), or an error matching
// store.NotFound when there is none.
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := stringKey(key); err != nil {
		return nil, err
	}
	return s.MemcacheStore.Get(ctx, key)
}

// GetWithTTL is Get; memcached does not report a key's remaining time to
// live, so the duration is always 0 (as in gocache's store).
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if _, err := stringKey(key); err != nil {
		return nil, 0, err
	}
	return s.MemcacheStore.GetWithTTL(ctx, key)
}

// Set stores value ([]byte or string) under key (a string) with the
// options' expiration (0: none). Unlike gocache's Set it does not panic on
// other value types, rounds a TTL up to whole seconds (gocache truncates,
// so 500ms became 0, "never expire"), sends TTLs over 30 days as an absolute
// Unix time (memcached would read the number of seconds as a date in 1970
// and expire the item at once), and refuses a value over the item size
// limit with an error matching ErrTooLarge before sending it.
func (s *Store) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := stringKey(key)
	if err != nil {
		return err
	}
	var v []byte
	switch b := value.(type) {
	case []byte:
		v = b
	case string:
		v = []byte(b)
	default:
		return fmt.Errorf("memcached: Set %s: value is a %T; want []byte or string", k, value)
	}
	if err := s.checkSize(k, v); err != nil {
		return err
	}
	exp, err := s.expiration(store.ApplyOptions(options...).Expiration)
	if err != nil {
		return fmt.Errorf("memcached: Set %s: %w", k, err)
	}
	// gocache converts the duration with int32(d.Seconds()): a whole number
	// of seconds survives exactly, absolute Unix times included.
	options = append(options[:len(options):len(options)], store.WithExpiration(time.Duration(exp)*time.Second))
	return s.MemcacheStore.Set(ctx, k, v, options...)
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := stringKey(key); err != nil {
		return err
	}
	return s.MemcacheStore.Delete(ctx, key)
}

// Invalidate is gocache's tag invalidation, after a context check.
func (s *Store) Invalidate(ctx context.Context, options ...store.InvalidateOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemcacheStore.Invalidate(ctx, options...)
}

// Clear is gocache's Clear, flush_all on every server, after a context
// check. It empties the servers entirely.
func (s *Store) Clear(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemcacheStore.Clear(ctx)
}

// CompareAndSwap stores value under key with the given time to live (0: no
// expiry) only if the current value is byte for byte equal to old; old ==
// nil means "only if key is absent" (an expired item is absent), while a
// non-nil empty old matches a stored empty value. It reports whether it
// stored; a failed comparison is not an error.
//
// With old == nil it is memcached's add. Otherwise it is gets (value and
// CAS id), a comparison here, then cas with that id, which the server
// refuses if the item changed or vanished in between, so the swap is atomic.
// TTLs are handled as by Set, and an oversize value fails with ErrTooLarge.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := s.checkSize(key, value); err != nil {
		return false, err
	}
	exp, err := s.expiration(ttl)
	if err != nil {
		return false, fmt.Errorf("memcached: CompareAndSwap %s: %w", key, err)
	}
	if value == nil {
		value = []byte{}
	}
	if old == nil {
		err := s.client.Add(&memcache.Item{Key: key, Value: value, Expiration: exp})
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, memcache.ErrNotStored):
			return false, nil
		}
		return false, fmt.Errorf("memcached: CompareAndSwap %s: %w", key, err)
	}
	cur, err := s.client.Get(key)
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("memcached: CompareAndSwap %s: %w", key, err)
	case !bytes.Equal(cur.Value, old):
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	cur.Value, cur.Expiration = value, exp
	err = s.client.CompareAndSwap(cur)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
		return false, nil
	}
	return false, fmt.Errorf("memcached: CompareAndSwap %s: %w", key, err)
}

// claimExpiration is the expiration, in seconds, of the empty item
// CompareAndDelete leaves behind should its delete fail.
const claimExpiration = 1

// CompareAndDelete deletes key only if its value is byte for byte equal to
// old and not empty, and reports whether it deleted. A missing (or
// expired) key, or one holding an empty value, is (false, nil).
//
// memcached has no conditional delete, so the claim is a cas: gets (value
// and CAS id), a comparison here, then cas with that id of the item to an
// empty value with a one-second expiration, which the server refuses if
// the item changed or vanished in between. Of any number of concurrent
// calls with the same key and old, in every process, only one cas
// succeeds, and only that call reports true. A plain delete follows, best
// effort: if it fails (or ctx ends first) the call still reports true and
// the empty item expires within about a second. Until then a reader may
// see an empty value under key, which the sessions library reads as
// absent; for the same reason an empty value is never claimed, so that
// two callers cannot both claim that empty item.
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(old) == 0 { // only an empty value could match: never claimed
		return false, nil
	}
	cur, err := s.client.Get(key)
	switch {
	case errors.Is(err, memcache.ErrCacheMiss):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("memcached: CompareAndDelete %s: %w", key, err)
	case !bytes.Equal(cur.Value, old):
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	cur.Value, cur.Expiration = []byte{}, claimExpiration
	err = s.client.CompareAndSwap(cur)
	switch {
	case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCacheMiss):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("memcached: CompareAndDelete %s: %w", key, err)
	}
	if ctx.Err() == nil {
		_ = s.client.Delete(key) // best effort: the empty item expires anyway
	}
	return true, nil
}

// checkSize refuses an item memcached would reject as too large.
func (s *Store) checkSize(key string, value []byte) error {
	if n := len(key) + len(value) + ItemOverhead; n > s.maxItem {
		return fmt.Errorf("%w: value for key %q is %d bytes; with the key and %d bytes of overhead that is %d bytes, over the item size limit of %d bytes (memcached -I; the driver's max_item option)",
			ErrTooLarge, key, len(value), ItemOverhead, n, s.maxItem)
	}
	return nil
}

// expiration converts a time to live to memcached's expiration field:
// 0 for none, whole seconds rounded up to 30 days, an absolute Unix time
// (rounded up to the second) beyond.
func (s *Store) expiration(ttl time.Duration) (int32, error) {
	return expiration(ttl, s.now())
}

func expiration(ttl time.Duration, now time.Time) (int32, error) {
	switch {
	case ttl < 0:
		return 0, fmt.Errorf("negative TTL %v", ttl)
	case ttl == 0:
		return 0, nil
	}
	secs := ttl / time.Second
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= maxRelative {
		return int32(secs), nil
	}
	at := now.Add(ttl)
	abs := at.Unix()
	if at.Nanosecond() > 0 {
		abs++
	}
	if abs > math.MaxInt32 {
		return 0, fmt.Errorf("TTL %v ends after %s, past memcached's 32-bit expiry time", ttl, time.Unix(math.MaxInt32, 0).UTC().Format(time.RFC3339))
	}
	return int32(abs), nil
}

// stringKey asserts a string key (gocache's stores panic on others).
func stringKey(key any) (string, error) {
	k, ok := key.(string)
	if !ok {
		return "", fmt.Errorf("memcached: key is a %T; want string", key)
	}
	return k, nil
}

// GetType returns "memcached".
func (s *Store) GetType() string { return "memcached" }
