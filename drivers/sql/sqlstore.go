package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	sessdriver "github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/go-sql-driver/mysql"
)

// StoreType is what Store.GetType returns.
const StoreType = "sql"

// Defaults for the zero fields of Options.
const (
	DefaultTable         = "sessions"
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 1000
)

// MaxKeyLen is the longest key, in bytes, a Store accepts (the key column is
// 255 wide in every dialect's DDL).
const MaxKeyLen = 255

// pageSize is how many keys ListKeys reads per query.
const pageSize = 256

// ErrClosed is returned by every operation on a Store after Close.
var ErrClosed = errors.New("sqlstore: store is closed")

// Options configures a Store. The zero value selects every default.
type Options struct {
	// Table is the table holding this store's entries and nothing else:
	// "name" or "schema.name", each part matching [A-Za-z_][A-Za-z0-9_]*
	// and at most 48 characters long. Default DefaultTable ("sessions").
	Table string
	// SweepInterval is how often the background sweeper deletes expired
	// rows. Zero selects DefaultSweepInterval (1m); a negative value
	// disables the sweeper (expired rows are still never returned).
	SweepInterval time.Duration
	// SweepBatch is the largest number of rows one sweeper DELETE removes.
	// Zero selects DefaultSweepBatch (1000).
	SweepBatch int
	// NoCreate skips CREATE TABLE IF NOT EXISTS (and the index) at start-up,
	// for databases whose schema is managed by migrations (see DDL). The
	// table must exist either way.
	NoCreate bool
}

// The capabilities the library finds by type assertion: a signature
// change fails to compile here instead of silently dropping one.
var (
	_ sessdriver.Store                  = (*Store)(nil)
	_ sessdriver.CompareAndSwapper      = (*Store)(nil)
	_ sessdriver.BatchCompareAndSwapper = (*Store)(nil)
	_ sessdriver.BatchSetter            = (*Store)(nil)
	_ sessdriver.KeyLister              = (*Store)(nil)
	_ sessdriver.CompareAndDeleter      = (*Store)(nil)
	_ sessdriver.ExpiryLister           = (*Store)(nil)
)

// Store is a gocache store (store.StoreInterface) on a database/sql
// database. It is safe for concurrent use. Create it with New or Open; call
// Close when done.
type Store struct {
	db      *sql.DB
	dialect Dialect
	q       queries
	many    [maxManyRows + 1]atomic.Pointer[string] // upsertMany by row count
	// casStmts: CompareAndSwapMany's statements by kind and row count.
	casStmts [casKinds][maxManyRows + 1]atomic.Pointer[string]
	// sqliteReturning: SQLite 3.35 or later (RETURNING, UPDATE ... FROM).
	sqliteReturning bool
	batch           int
	owned           bool // opened by Open: Close closes db

	stopSweep context.CancelFunc
	sweeperWG sync.WaitGroup
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ store.SetIfNotExistsStore = (*Store)(nil)

// New returns a Store that keeps its entries in the table opts.Table of db,
// speaking dialect. Unless opts.NoCreate is set it creates the table and its
// index when missing (see DDL); either way it checks that the table has the
// expected columns. The caller keeps ownership of db: Close stops the
// sweeper but does not close db, and db must stay open until the Store is
// closed. For an in-memory SQLite database, db must be limited to one
// connection (db.SetMaxOpenConns(1)), or each connection sees its own empty
// database.
func New(db *sql.DB, dialect Dialect, opts Options) (*Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return newStore(ctx, db, dialect, opts, false)
}

func newStore(ctx context.Context, db *sql.DB, dialect Dialect, opts Options, owned bool) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: New with a nil *sql.DB")
	}
	if !dialect.valid() {
		return nil, fmt.Errorf("sqlstore: unknown dialect %v", dialect)
	}
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	t, err := parseTable(opts.Table)
	if err != nil {
		return nil, err
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.SweepBatch <= 0 {
		opts.SweepBatch = DefaultSweepBatch
	}
	s := &Store{
		db:      db,
		dialect: dialect,
		q:       buildQueries(dialect, t),
		batch:   opts.SweepBatch,
		owned:   owned,
		closed:  make(chan struct{}),
	}
	if !opts.NoCreate {
		if err := s.createTable(ctx, opts.Table); err != nil {
			return nil, err
		}
	}
	rows, err := db.QueryContext(ctx, s.q.probe)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: table %s is missing or lacks the columns key, value, expires_at: %w", opts.Table, err)
	}
	_ = rows.Close()
	if dialect == SQLite {
		if s.sqliteReturning, err = sqliteHasReturning(ctx, db); err != nil {
			return nil, err
		}
	}

	sweepCtx, cancel := context.WithCancel(context.Background())
	s.stopSweep = cancel
	if opts.SweepInterval > 0 {
		s.sweeperWG.Add(1)
		go s.sweeper(sweepCtx, opts.SweepInterval)
	}
	return s, nil
}

// createTable runs the DDL. Concurrent CREATE ... IF NOT EXISTS can still
// collide in PostgreSQL (several processes starting at once), so a failure
// is retried a few times before it is reported.
func (s *Store) createTable(ctx context.Context, table string) error {
	stmts, err := DDL(s.dialect, table)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err = nil
		for _, stmt := range stmts {
			if _, err = s.db.ExecContext(ctx, stmt); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
		if attempt == 3 || ctx.Err() != nil {
			return fmt.Errorf("sqlstore: creating table %s (%s): %w", table, s.dialect, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// Dialect returns the dialect the store speaks.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the underlying database handle.
func (s *Store) DB() *sql.DB { return s.db }

// check reports ErrClosed or the context's error, whichever applies.
func (s *Store) check(ctx context.Context) error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	return ctx.Err()
}

func keyOf(key any) (string, error) {
	k, ok := key.(string)
	if !ok {
		return "", fmt.Errorf("sqlstore: key must be a string, got %T", key)
	}
	return k, checkKey(k)
}

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("sqlstore: key must not be empty")
	case len(k) > MaxKeyLen:
		return fmt.Errorf("sqlstore: key of %d bytes is longer than the %d allowed", len(k), MaxKeyLen)
	case !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0:
		return fmt.Errorf("sqlstore: key %q is not valid UTF-8 without NUL bytes", k)
	}
	return nil
}

func valueOf(value any) ([]byte, error) {
	switch v := value.(type) {
	case []byte:
		if v == nil {
			return []byte{}, nil // NULL would violate NOT NULL
		}
		return v, nil
	case string:
		return []byte(v), nil
	default:
		return nil, fmt.Errorf("sqlstore: value must be []byte or string, got %T", value)
	}
}

// expiresAt converts a time to live into the expires_at column value: nil
// (NULL) for none, else Unix milliseconds rounded up so that a positive ttl
// never means "no expiry".
func expiresAt(ttl time.Duration) (any, error) {
	switch {
	case ttl < 0:
		return nil, fmt.Errorf("sqlstore: negative expiration %v", ttl)
	case ttl == 0:
		return nil, nil
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	return time.Now().UnixMilli() + int64(ms), nil
}

func nowMS() int64 { return time.Now().UnixMilli() }

func notFound(key string) error {
	return store.NotFoundWithCause(fmt.Errorf("sqlstore: key %q not found", key))
}

// isDeadlock reports a MySQL/MariaDB deadlock, after which InnoDB has
// rolled the statement back and it is safe to retry.
func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}

func isDuplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// exec runs a statement, retrying MySQL deadlocks a few times.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := s.db.ExecContext(ctx, query, args...)
		if err == nil || s.dialect != MySQL || !isDeadlock(err) || attempt == 5 || ctx.Err() != nil {
			return res, err
		}
	}
}

// Get returns the value stored under key as a fresh []byte. A missing or
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
		v   []byte
		exp sql.NullInt64
	)
	err = s.db.QueryRowContext(ctx, s.q.get, k, nowMS()).Scan(&v, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, notFound(k)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: get %q: %w", k, err)
	}
	if v == nil {
		v = []byte{}
	}
	var ttl time.Duration
	if exp.Valid {
		ttl = time.Until(time.UnixMilli(exp.Int64))
		if ttl <= 0 {
			ttl = time.Millisecond
		}
	}
	return v, ttl, nil
}

// Set stores value ([]byte or string) under key (a string), replacing any
// previous entry, in one upsert statement. The expiration option
// (store.WithExpiration) sets the time to live; without it the entry does
// not expire. Tags are not supported.
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
		return fmt.Errorf("sqlstore: tags: %w", store.ErrNotSupported)
	}
	exp, err := expiresAt(o.Expiration)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.q.upsert, k, v, exp); err != nil {
		return fmt.Errorf("sqlstore: set %q: %w", k, err)
	}
	return nil
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
	if _, err := s.exec(ctx, s.q.del, k); err != nil {
		return fmt.Errorf("sqlstore: delete %q: %w", k, err)
	}
	return nil
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
		return fmt.Errorf("sqlstore: invalidate by tags: %w", store.ErrNotSupported)
	}
	return nil
}

// Clear deletes every row of this store's table, and nothing else.
func (s *Store) Clear(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.q.clear); err != nil {
		return fmt.Errorf("sqlstore: clear: %w", err)
	}
	return nil
}

// GetType returns StoreType ("sql").
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
		return false, fmt.Errorf("sqlstore: tags: %w", store.ErrNotSupported)
	}
	return s.CompareAndSwap(ctx, k, nil, v, o.Expiration)
}

// CompareAndSwap stores value under key with ttl (0: no expiry) only if the
// current value is byte-for-byte equal to old; old == nil means "only if key
// is absent" (an expired entry counts as absent), while a non-nil empty old
// matches a present, empty value. It reports whether it stored. A failed
// comparison is not an error.
//
// With old != nil it is one conditional UPDATE. With old == nil it is, in
// PostgreSQL and SQLite, one INSERT ... ON CONFLICT DO UPDATE ... WHERE the
// existing row has expired; in MySQL an INSERT that fails on a duplicate
// key followed by an UPDATE of the row only if it has expired. Each
// statement is atomic, so of several concurrent calls with the same old,
// exactly one succeeds.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if err := checkKey(key); err != nil {
		return false, err
	}
	exp, err := expiresAt(ttl)
	if err != nil {
		return false, err
	}
	if value == nil {
		value = []byte{}
	}
	var ok bool
	switch {
	case old != nil:
		ok, err = s.casUpdate(ctx, key, old, value, exp)
	case s.dialect == MySQL:
		ok, err = s.casInsertMySQL(ctx, s.exec, key, value, exp)
	default:
		ok, err = s.affected(s.exec(ctx, s.q.casInsert, key, value, exp, nowMS()))
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: compare-and-swap %q: %w", key, err)
	}
	return ok, nil
}

func (s *Store) affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (s *Store) casUpdate(ctx context.Context, key string, old, value []byte, exp any) (bool, error) {
	ok, err := s.affected(s.exec(ctx, s.q.casUpdate, value, exp, key, old, nowMS()))
	if err != nil || ok || s.dialect != MySQL || !bytes.Equal(old, value) {
		return ok, err
	}
	// MySQL reports rows changed, not rows matched (unless the connection
	// has CLIENT_FOUND_ROWS), so a match that left the row as it was
	// (same value, same expiry) reads as 0. The row holding exactly what
	// we would have written is a success.
	var n int
	err = s.db.QueryRowContext(ctx, s.q.casVerify, key, value, exp, nowMS()).Scan(&n)
	return n > 0, err
}

// casInsertMySQL is set-if-absent for MySQL, which has no conditional
// ON DUPLICATE KEY UPDATE whose outcome the client can read reliably
// (affected-row counts depend on CLIENT_FOUND_ROWS). exec runs each
// statement: s.exec, or a transaction's ExecContext.
func (s *Store) casInsertMySQL(ctx context.Context, exec func(context.Context, string, ...any) (sql.Result, error), key string, value []byte, exp any) (bool, error) {
	for attempt := 0; attempt < 3; attempt++ {
		_, err := exec(ctx, s.q.casInsert, key, value, exp)
		if err == nil {
			return true, nil // the key was absent
		}
		if !isDuplicate(err) {
			return false, err
		}
		// Present: take it over only if it has expired. The new
		// expires_at always differs from an expired one, so a match is
		// always a change and counts as one affected row.
		ok, err := s.affected(exec(ctx, s.q.casReplaceExpired, value, exp, key, nowMS()))
		if err != nil || ok {
			return ok, err
		}
		// Zero rows: the row is live (the usual case; the next INSERT
		// fails again) or was deleted in between (the INSERT succeeds).
	}
	return false, nil
}

// ListKeys calls fn for each live (unexpired) key that starts with prefix,
// in key (byte) order, until fn returns a non-nil error, which ListKeys
// returns. Keys are read in pages of 256 and fn runs with no query or
// connection held, so fn may use the store (for example to delete the key
// it is given). Keys written while ListKeys runs may or may not be
// reported.
func (s *Store) ListKeys(ctx context.Context, prefix string, fn func(key string) error) error {
	query, from := s.q.listFirst, prefix
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		page, err := s.listPage(ctx, query, from)
		if err != nil {
			return fmt.Errorf("sqlstore: list keys: %w", err)
		}
		done := len(page) < pageSize
		for _, k := range page {
			if !strings.HasPrefix(k, prefix) {
				return nil // past the prefix range
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		query, from = s.q.listNext, page[len(page)-1]
	}
}

func (s *Store) listPage(ctx context.Context, query, from string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query, from, nowMS())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := make([]string, 0, pageSize)
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		page = append(page, k)
	}
	return page, rows.Err()
}

// Sweep deletes expired rows now, at most Options.SweepBatch per statement,
// until none is left or ctx ends. It returns the number of rows deleted.
// The background sweeper calls it.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	var total int64
	for {
		if err := s.check(ctx); err != nil {
			return total, err
		}
		res, err := s.exec(ctx, s.q.sweep, nowMS(), s.batch)
		if err != nil {
			return total, fmt.Errorf("sqlstore: sweep: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sqlstore: sweep: %w", err)
		}
		total += n
		if n < int64(s.batch) {
			return total, nil
		}
	}
}

func (s *Store) sweeper(ctx context.Context, every time.Duration) {
	defer s.sweeperWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Close cancels ctx, which interrupts a running statement.
			// Errors (database down) are retried at the next tick.
			_, _ = s.Sweep(ctx)
		}
	}
}

// Close stops the background sweeper (interrupting a sweep in progress)
// and, for a store made by Open, closes the database handle. A store made
// by New leaves its *sql.DB open. Close is idempotent; every other method
// returns ErrClosed afterwards.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.stopSweep()
		s.sweeperWG.Wait()
		if s.owned {
			s.closeErr = s.db.Close()
		}
	})
	return s.closeErr
}

// SetMany stores values[i] under keys[i], each with the time to live ttl
// (0: no expiry), as Set would; of keys given more than once the last
// value wins. It is all or nothing: the entries are upserted in key order
// (so that concurrent batches lock rows in the same order) by one
// multi-row statement per chunk of at most 512 rows (333 for SQLite) or
// 1 MiB, and several chunks run in one transaction. The sessions library
// flushes its write-behind queue with it.
func (s *Store) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(keys) != len(values) {
		return fmt.Errorf("sqlstore: SetMany with %d keys and %d values", len(keys), len(values))
	}
	exp, err := expiresAt(ttl)
	if err != nil {
		return err
	}
	order := make([]int, len(keys))
	for i, k := range keys {
		if _, err := keyOf(k); err != nil {
			return err
		}
		order[i] = i
	}
	if len(keys) == 0 {
		return nil
	}
	sort.SliceStable(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
	// Keep the last of equal keys (they are adjacent, in the order given):
	// PostgreSQL refuses a statement that upserts one row twice.
	uniq := order[:0]
	for j, i := range order {
		if j+1 < len(order) && keys[order[j+1]] == keys[i] {
			continue
		}
		uniq = append(uniq, i)
	}
	chunks := s.dialect.chunks(keys, values, uniq)
	if len(chunks) == 1 {
		// One statement is atomic on its own: no transaction needed.
		query, args := s.upsertMany(keys, values, chunks[0], exp)
		if _, err := s.exec(ctx, query, args...); err != nil {
			return manyErr(keys, chunks[0], err)
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := s.setManyTx(ctx, keys, values, chunks, exp)
		// A MySQL deadlock rolls back the whole transaction: run it again.
		if err == nil || s.dialect != MySQL || !isDeadlock(err) || attempt == 5 || ctx.Err() != nil {
			return err
		}
	}
}

func (s *Store) setManyTx(ctx context.Context, keys []string, values [][]byte, chunks [][]int, exp any) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: SetMany: %w", err)
	}
	defer tx.Rollback()
	for _, c := range chunks {
		query, args := s.upsertMany(keys, values, c, exp)
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return manyErr(keys, c, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: SetMany: %w", err)
	}
	return nil
}

// chunks cuts order (indexes into keys and values) into consecutive runs
// of at most d.manyRows() entries and maxManyBytes of keys and values; an
// entry larger than that is a run of its own.
func (d Dialect) chunks(keys []string, values [][]byte, order []int) [][]int {
	return chunksBy(order, d.manyRows(), func(i int) int { return len(keys[i]) + len(values[i]) })
}

// chunksBy cuts order into consecutive runs of at most rows entries and
// maxManyBytes in all by size; an entry larger than that is a run of its
// own.
func chunksBy(order []int, rows int, size func(i int) int) [][]int {
	var chunks [][]int
	start, total := 0, 0
	for j, i := range order {
		n := size(i)
		if j > start && (j-start == rows || total+n > maxManyBytes) {
			chunks = append(chunks, order[start:j])
			start, total = j, 0
		}
		total += n
	}
	return append(chunks, order[start:])
}

func manyErr(keys []string, chunk []int, err error) error {
	return fmt.Errorf("sqlstore: SetMany of %d entries (%q to %q): %w",
		len(chunk), keys[chunk[0]], keys[chunk[len(chunk)-1]], err)
}

// upsertMany returns the statement and arguments that upsert the entries
// chunk indexes (at most s.dialect.manyRows()).
func (s *Store) upsertMany(keys []string, values [][]byte, chunk []int, exp any) (string, []any) {
	rows := s.dialect.manySize(len(chunk))
	p := s.many[rows].Load()
	if p == nil {
		q := s.dialect.upsertMany(s.q.table, rows)
		p = &q
		s.many[rows].Store(p)
	}
	value := func(i int) []byte {
		if values[i] == nil {
			return []byte{} // NULL would violate NOT NULL
		}
		return values[i]
	}
	var args []any
	if s.dialect == Postgres {
		args = make([]any, 1+2*rows) // padding rows stay nil (NULL)
		args[0] = exp
		for j, i := range chunk {
			args[1+2*j], args[2+2*j] = keys[i], value(i)
		}
	} else {
		args = make([]any, 0, 3*rows)
		for _, i := range chunk {
			args = append(args, keys[i], value(i), exp)
		}
	}
	return *p, args
}
