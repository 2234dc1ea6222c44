package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"go.etcd.io/bbolt"
)

// StoreType is what Store.GetType returns.
const StoreType = "bolt"

// Defaults for the zero fields of Options.
const (
	DefaultBucket        = "sessions"
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 1000
)

// ErrClosed is returned by every operation on a Store after Close.
var ErrClosed = errors.New("bolt: store is closed")

// Names of the buckets nested in the store's bucket.
var (
	dataBucket   = []byte("data")
	expiryBucket = []byte("expiry")
)

const (
	formatV1  = 1
	headerLen = 9 // format byte + 8-byte deadline
	pageSize  = 256
)

// Options configures a Store. The zero value selects every default.
type Options struct {
	// Bucket is the top-level bucket that holds this store's entries and
	// nothing else. Default DefaultBucket ("sessions").
	Bucket string
	// SweepInterval is how often the background sweeper removes expired
	// entries. Zero selects DefaultSweepInterval (1m); a negative value
	// disables the sweeper (expired entries are still never returned).
	SweepInterval time.Duration
	// SweepBatch is the largest number of entries one sweeper write
	// transaction deletes. Zero selects DefaultSweepBatch (1000).
	SweepBatch int
}

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

// Store is a gocache store (store.StoreInterface) on a bbolt database. It is
// safe for concurrent use. Create it with NewFromDB or Open; call Close when
// done.
type Store struct {
	db         *bbolt.DB
	bucket     []byte
	batch      int
	release    func() error // returns the file to the registry; nil for NewFromDB
	sweeperWG  sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
	closedFlag chan struct{} // closed by Close
}

var _ store.SetIfNotExistsStore = (*Store)(nil)

// NewFromDB returns a Store that keeps its entries in the bucket
// opts.Bucket of db, creating the bucket when missing. The caller keeps
// ownership of db: Close stops the sweeper but does not close db, and db
// must stay open until the Store is closed.
func NewFromDB(db *bbolt.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("bolt: NewFromDB with a nil *bbolt.DB")
	}
	return newStore(db, opts, nil)
}

func newStore(db *bbolt.DB, opts Options, release func() error) (*Store, error) {
	if opts.Bucket == "" {
		opts.Bucket = DefaultBucket
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.SweepBatch <= 0 {
		opts.SweepBatch = DefaultSweepBatch
	}
	s := &Store{
		db:         db,
		bucket:     []byte(opts.Bucket),
		batch:      opts.SweepBatch,
		release:    release,
		closedFlag: make(chan struct{}),
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := s.ensureBuckets(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: creating bucket %q in %s: %w", opts.Bucket, db.Path(), err)
	}
	if opts.SweepInterval > 0 {
		s.sweeperWG.Add(1)
		go s.sweeper(opts.SweepInterval)
	}
	return s, nil
}

// ensureBuckets creates the store's bucket and its nested buckets if needed
// (in a writable tx) and returns the top-level bucket.
func (s *Store) ensureBuckets(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(s.bucket)
	if err != nil {
		return nil, err
	}
	if _, err := b.CreateBucketIfNotExists(dataBucket); err != nil {
		return nil, err
	}
	if _, err := b.CreateBucketIfNotExists(expiryBucket); err != nil {
		return nil, err
	}
	return b, nil
}

// buckets returns the data and expiry buckets, recreating them in a writable
// transaction (someone may have deleted the bucket behind our back). In a
// read-only transaction a missing bucket yields nils: the store is empty.
func (s *Store) buckets(tx *bbolt.Tx) (data, expiry *bbolt.Bucket, err error) {
	b := tx.Bucket(s.bucket)
	if b == nil || b.Bucket(dataBucket) == nil || b.Bucket(expiryBucket) == nil {
		if !tx.Writable() {
			return nil, nil, nil
		}
		if b, err = s.ensureBuckets(tx); err != nil {
			return nil, nil, err
		}
	}
	return b.Bucket(dataBucket), b.Bucket(expiryBucket), nil
}

// check reports ErrClosed or the context's error, whichever applies.
func (s *Store) check(ctx context.Context) error {
	select {
	case <-s.closedFlag:
		return ErrClosed
	default:
	}
	return ctx.Err()
}

func keyOf(key any) ([]byte, error) {
	k, ok := key.(string)
	if !ok {
		return nil, fmt.Errorf("bolt: key must be a string, got %T", key)
	}
	if k == "" {
		return nil, errors.New("bolt: key must not be empty")
	}
	if len(k) > bbolt.MaxKeySize-8 {
		return nil, fmt.Errorf("bolt: key of %d bytes is longer than the %d allowed", len(k), bbolt.MaxKeySize-8)
	}
	return []byte(k), nil
}

func valueOf(value any) ([]byte, error) {
	switch v := value.(type) {
	case []byte:
		return v, nil
	case string:
		return []byte(v), nil
	default:
		return nil, fmt.Errorf("bolt: value must be []byte or string, got %T", value)
	}
}

// deadline converts a time to live into Unix milliseconds (0: no expiry),
// rounding up so that a positive ttl never means "no expiry".
func deadline(ttl time.Duration) (uint64, error) {
	switch {
	case ttl < 0:
		return 0, fmt.Errorf("bolt: negative expiration %v", ttl)
	case ttl == 0:
		return 0, nil
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	return uint64(time.Now().UnixMilli() + int64(ms)), nil
}

func nowMS() uint64 { return uint64(time.Now().UnixMilli()) }

func encodeEntry(exp uint64, value []byte) []byte {
	buf := make([]byte, headerLen+len(value))
	buf[0] = formatV1
	binary.BigEndian.PutUint64(buf[1:headerLen], exp)
	copy(buf[headerLen:], value)
	return buf
}

// decodeEntry splits a stored entry; the value aliases raw.
func decodeEntry(key, raw []byte) (exp uint64, value []byte, err error) {
	if len(raw) < headerLen || raw[0] != formatV1 {
		return 0, nil, fmt.Errorf("bolt: entry %q has an unknown format", key)
	}
	return binary.BigEndian.Uint64(raw[1:headerLen]), raw[headerLen:], nil
}

func indexKey(exp uint64, key []byte) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, exp)
	copy(k[8:], key)
	return k
}

func live(exp, now uint64) bool { return exp == 0 || exp > now }

// lookup returns the live value of key (aliasing the transaction's memory),
// its deadline and whether it is present and unexpired.
func lookup(data *bbolt.Bucket, key []byte, now uint64) (value []byte, exp uint64, ok bool, err error) {
	if data == nil {
		return nil, 0, false, nil
	}
	raw := data.Get(key)
	if raw == nil {
		return nil, 0, false, nil
	}
	exp, value, err = decodeEntry(key, raw)
	if err != nil {
		return nil, 0, false, err
	}
	return value, exp, live(exp, now), nil
}

// put writes an entry and keeps the expiry index in step.
func put(data, expiry *bbolt.Bucket, key, value []byte, exp uint64) error {
	if err := remove(data, expiry, key); err != nil {
		return err
	}
	if err := data.Put(key, encodeEntry(exp, value)); err != nil {
		return err
	}
	if exp != 0 {
		return expiry.Put(indexKey(exp, key), []byte{})
	}
	return nil
}

// remove deletes an entry and its index record, if any.
func remove(data, expiry *bbolt.Bucket, key []byte) error {
	raw := data.Get(key)
	if raw == nil {
		return nil
	}
	if len(raw) >= headerLen {
		if exp := binary.BigEndian.Uint64(raw[1:headerLen]); exp != 0 {
			if err := expiry.Delete(indexKey(exp, key)); err != nil {
				return err
			}
		}
	}
	return data.Delete(key)
}

func notFound(key []byte) error {
	return store.NotFoundWithCause(fmt.Errorf("bolt: key %q not found", key))
}

// Get returns a copy of the value stored under key as a []byte. A missing or
// expired key yields an error matching store.NotFound (errors.Is(err,
// &store.NotFound{})).
func (s *Store) Get(ctx context.Context, key any) (any, error) {
	v, _, err := s.GetWithTTL(ctx, key)
	return v, err
}

// GetWithTTL is Get plus the time the entry has left to live; 0 means the
// entry does not expire.
func (s *Store) GetWithTTL(ctx context.Context, key any) (any, time.Duration, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	k, err := keyOf(key)
	if err != nil {
		return nil, 0, err
	}
	var (
		out []byte
		exp uint64
		ok  bool
	)
	err = s.db.View(func(tx *bbolt.Tx) error {
		data, _, err := s.buckets(tx)
		if err != nil {
			return err
		}
		var v []byte
		v, exp, ok, err = lookup(data, k, nowMS())
		if ok {
			out = bytes.Clone(v)
			if out == nil {
				out = []byte{}
			}
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, notFound(k)
	}
	var ttl time.Duration
	if exp != 0 {
		ttl = time.Until(time.UnixMilli(int64(exp)))
		if ttl <= 0 {
			ttl = time.Millisecond
		}
	}
	return out, ttl, nil
}

// Set stores value ([]byte or string) under key (a string), replacing any
// previous entry. The expiration option (store.WithExpiration) sets the time
// to live; without it the entry does not expire. Tags are not supported.
func (s *Store) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	k, err := keyOf(key)
	if err != nil {
		return err
	}
	v, err := valueOf(value)
	if err != nil {
		return err
	}
	o := store.ApplyOptions(options...)
	if len(o.Tags) > 0 {
		return fmt.Errorf("bolt: tags: %w", store.ErrNotSupported)
	}
	exp, err := deadline(o.Expiration)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		return put(data, expiry, k, v, exp)
	})
}

// Delete removes key. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key any) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	k, err := keyOf(key)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		return remove(data, expiry, k)
	})
}

// Invalidate is part of gocache's interface for tag-based invalidation,
// which this store does not support: with tags it returns an error wrapping
// store.ErrNotSupported; without tags there is nothing to invalidate and it
// returns nil.
func (s *Store) Invalidate(ctx context.Context, options ...store.InvalidateOption) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(store.ApplyInvalidateOptions(options...).Tags) > 0 {
		return fmt.Errorf("bolt: invalidate by tags: %w", store.ErrNotSupported)
	}
	return nil
}

// Clear deletes every entry of this store (its bucket) and nothing else in
// the file.
func (s *Store) Clear(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(s.bucket) != nil {
			if err := tx.DeleteBucket(s.bucket); err != nil {
				return err
			}
		}
		_, err := s.ensureBuckets(tx)
		return err
	})
}

// GetType returns StoreType ("bolt").
func (s *Store) GetType() string { return StoreType }

// SetIfNotExists implements gocache's optional store.SetIfNotExistsStore:
// it stores value ([]byte or string) under key only if the key is absent or
// expired, with the expiration option as time to live, and reports whether
// it stored. It is CompareAndSwap with old == nil.
func (s *Store) SetIfNotExists(ctx context.Context, key any, value any, options ...store.Option) (bool, error) {
	k, err := keyOf(key)
	if err != nil {
		return false, err
	}
	v, err := valueOf(value)
	if err != nil {
		return false, err
	}
	o := store.ApplyOptions(options...)
	if len(o.Tags) > 0 {
		return false, fmt.Errorf("bolt: tags: %w", store.ErrNotSupported)
	}
	return s.CompareAndSwap(ctx, string(k), nil, v, o.Expiration)
}

// CompareAndSwap stores value under key with ttl (0: no expiry) only if the
// current value is byte-for-byte equal to old; old == nil means "only if key
// is absent" (an expired entry counts as absent), while a non-nil empty old
// matches a present, empty value. It reports whether it stored. A failed
// comparison is not an error. The comparison and the write happen in one
// bbolt Update transaction, so they are atomic.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	k, err := keyOf(key)
	if err != nil {
		return false, err
	}
	exp, err := deadline(ttl)
	if err != nil {
		return false, err
	}
	if value == nil {
		value = []byte{}
	}
	stored := false
	err = s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		cur, _, ok, err := lookup(data, k, nowMS())
		if err != nil {
			return err
		}
		if old == nil && ok || old != nil && (!ok || !bytes.Equal(cur, old)) {
			return nil
		}
		stored = true
		return put(data, expiry, k, value, exp)
	})
	if err != nil {
		return false, err
	}
	return stored, nil
}

// ListKeys calls fn for each live (unexpired) key that starts with prefix,
// in byte order, until fn returns a non-nil error, which ListKeys returns.
// Keys are read in pages, and fn runs outside any transaction, so fn may
// use the store (for example to delete the key it is given). Keys written
// while ListKeys runs may or may not be reported.
func (s *Store) ListKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	p := []byte(prefix)
	var after []byte // last key reported; nil before the first page
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		var page []string
		err := s.db.View(func(tx *bbolt.Tx) error {
			data, _, err := s.buckets(tx)
			if err != nil || data == nil {
				return err
			}
			now := nowMS()
			c := data.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.Seek(p)
			} else {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				if v == nil { // a nested bucket: not ours
					continue
				}
				exp, _, err := decodeEntry(k, v)
				if err != nil {
					return err
				}
				after = bytes.Clone(k)
				if live(exp, now) {
					page = append(page, string(k))
					if len(page) == pageSize {
						break
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range page {
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// Sweep deletes expired entries now, in transactions of at most
// Options.SweepBatch entries, until none is left or ctx ends. It returns the
// number of entries deleted. The background sweeper calls it.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := s.check(ctx); err != nil {
			return total, err
		}
		n, more := 0, false
		err := s.db.Update(func(tx *bbolt.Tx) error {
			data, expiry, err := s.buckets(tx)
			if err != nil {
				return err
			}
			now := nowMS()
			var due [][]byte
			c := expiry.Cursor()
			for k, _ := c.First(); k != nil && len(due) < s.batch; k, _ = c.Next() {
				if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > now {
					break
				}
				due = append(due, bytes.Clone(k))
			}
			for _, ik := range due {
				exp, key := binary.BigEndian.Uint64(ik[:8]), ik[8:]
				if err := expiry.Delete(ik); err != nil {
					return err
				}
				// Delete the entry only if the index record is its own:
				// a stale record must not remove a rewritten entry.
				if raw := data.Get(key); len(raw) >= headerLen && binary.BigEndian.Uint64(raw[1:headerLen]) == exp {
					if err := data.Delete(key); err != nil {
						return err
					}
					n++
				}
			}
			more = len(due) == s.batch
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

func (s *Store) sweeper(every time.Duration) {
	defer s.sweeperWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closedFlag:
			return
		case <-t.C:
			// Sweep stops between batches once Close is called. Errors (a
			// full disk, say) are retried at the next tick.
			_, _ = s.Sweep(context.Background())
		}
	}
}

// Close stops the background sweeper and, for a store made by Open,
// releases the file (which is closed when no other store uses it). A store
// made by NewFromDB leaves its *bbolt.DB open. Close is idempotent; every
// other method returns ErrClosed afterwards.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closedFlag)
		s.sweeperWG.Wait()
		if s.release != nil {
			s.closeErr = s.release()
		}
	})
	return s.closeErr
}

// CompareAndSwapMany performs CompareAndSwap for every entry i and reports
// in swapped[i] whether it stored, all in one bbolt Update transaction:
// one fsync for the batch, and each comparison atomic with its write. On
// error nothing was stored. The sessions library flushes its write-behind
// queue with it.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if len(keys) != len(olds) || len(keys) != len(values) {
		return nil, fmt.Errorf("bolt: CompareAndSwapMany with %d keys, %d olds and %d values", len(keys), len(olds), len(values))
	}
	exp, err := deadline(ttl)
	if err != nil {
		return nil, err
	}
	ks := make([][]byte, len(keys))
	for i, key := range keys {
		if ks[i], err = keyOf(key); err != nil {
			return nil, err
		}
	}
	swapped := make([]bool, len(keys))
	err = s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		now := nowMS()
		for i, k := range ks {
			cur, _, ok, err := lookup(data, k, now)
			if err != nil {
				return err
			}
			old := olds[i]
			swapped[i] = false
			if old == nil && ok || old != nil && (!ok || !bytes.Equal(cur, old)) {
				continue
			}
			v := values[i]
			if v == nil {
				v = []byte{}
			}
			if err := put(data, expiry, k, v, exp); err != nil {
				return err
			}
			swapped[i] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return swapped, nil
}

// SetMany stores values[i] under keys[i], each with the time to live ttl
// (0: no expiry), in one transaction: one fsync for the whole batch. It is
// all or nothing. The sessions library flushes its write-behind queue
// with it.
func (s *Store) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(keys) != len(values) {
		return fmt.Errorf("bolt: SetMany with %d keys and %d values", len(keys), len(values))
	}
	exp, err := deadline(ttl)
	if err != nil {
		return err
	}
	ks := make([][]byte, len(keys))
	for i, key := range keys {
		if ks[i], err = keyOf(key); err != nil {
			return err
		}
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		for i, k := range ks {
			if err := put(data, expiry, k, values[i], exp); err != nil {
				return err
			}
		}
		return nil
	})
}

// CompareAndDelete deletes key, with its expiry index record, only if its
// live value is byte for byte equal to old (an expired entry counts as
// absent), and reports whether it deleted. A missing key is (false, nil).
// The comparison and the delete happen in one bbolt Update transaction, so
// of any number of concurrent calls with the same key and old, in this
// process or another sharing the file through Open, at most one reports
// true.
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	k, err := keyOf(key)
	if err != nil {
		return false, err
	}
	deleted := false
	err = s.db.Update(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil {
			return err
		}
		cur, _, ok, err := lookup(data, k, nowMS())
		if err != nil || !ok || !bytes.Equal(cur, old) {
			return err
		}
		deleted = true
		return remove(data, expiry, k)
	})
	if err != nil {
		return false, err
	}
	return deleted, nil
}

// expiringCheckEvery is how many index records ListExpiring reads between
// checks of its context and of Close.
const expiringCheckEvery = 1024

// ListExpiring returns up to limit live entries whose key starts with
// prefix and whose deadline is before the instant before, earliest first
// (ties in key order), with copies of their values. It walks the expiry
// index from now to before in one read transaction, so the result is a
// consistent snapshot; entries without a time to live are never listed.
// limit <= 0 lists nothing.
func (s *Store) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) (keys []string, values [][]byte, err error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	if limit <= 0 {
		return nil, nil, nil
	}
	// Deadlines are whole milliseconds: exp is before `before` iff exp < end.
	end := before.UnixMilli()
	if time.UnixMilli(end).Before(before) {
		end++
	}
	p := []byte(prefix)
	err = s.db.View(func(tx *bbolt.Tx) error {
		data, expiry, err := s.buckets(tx)
		if err != nil || data == nil {
			return err
		}
		now := nowMS()
		if end <= 0 || uint64(end) <= now+1 {
			return nil
		}
		c := expiry.Cursor()
		read := 0
		for ik, _ := c.Seek(indexKey(now+1, nil)); ik != nil && len(keys) < limit; ik, _ = c.Next() {
			if read++; read%expiringCheckEvery == 0 {
				if err := s.check(ctx); err != nil {
					return err
				}
			}
			if len(ik) < 8 {
				continue
			}
			exp, key := binary.BigEndian.Uint64(ik[:8]), ik[8:]
			if exp >= uint64(end) {
				break
			}
			if !bytes.HasPrefix(key, p) {
				continue
			}
			v, cur, ok, err := lookup(data, key, now)
			if err != nil {
				return err
			}
			if !ok || cur != exp { // a stale record: the entry moved or left
				continue
			}
			keys = append(keys, string(key))
			values = append(values, append(make([]byte, 0, len(v)), v...))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return keys, values, nil
}
