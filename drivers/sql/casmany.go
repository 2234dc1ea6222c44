package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// CompareAndSwapMany performs CompareAndSwap(keys[i], olds[i], values[i],
// ttl) for every i and reports in swapped[i] whether entry i was stored:
// only if its current live value equals olds[i] byte for byte, or, with
// olds[i] == nil, only if the key is absent or expired. Each entry compares
// and swaps atomically on its own; the batch as a whole is not atomic. On
// error it returns nil and no outcome is known: any subset may have been
// stored. Mismatched slice lengths are an error.
//
// Entries are processed in key order (so that concurrent batches tend to
// lock rows in the same order), in chunks of at most 512 entries (332 for
// SQLite) or 1 MiB of keys, olds and values:
//
//   - PostgreSQL: one statement per chunk, in a transaction of its own:
//     an UPDATE ... FROM of the rows whose key and live value match, and an
//     INSERT ... ON CONFLICT DO UPDATE that only replaces expired rows for
//     the entries expecting absence, both in one data-modifying WITH,
//     returning the keys written. The entries are passed as three arrays,
//     so that every batch size shares one statement text (pgx prepares
//     and caches each text on each connection).
//   - SQLite 3.35 or later: the same two statements (UPDATE ... FROM and
//     INSERT ... ON CONFLICT, each with RETURNING), in one transaction
//     when both are needed. Older versions make one CompareAndSwap call
//     per entry.
//   - MySQL/MariaDB, which cannot return the rows an UPDATE changed: one
//     READ COMMITTED transaction per chunk that locks the chunk's rows
//     (SELECT ... FOR UPDATE), compares in Go, writes the winners among
//     them with one multi-row upsert and inserts the entries expecting
//     absence whose key was absent with one multi-row INSERT; should one
//     of those keys have been inserted meanwhile, they are inserted one by
//     one as CompareAndSwap does.
//
// A deadlock, which rolls the chunk back, runs it again (up to 5 times).
// A key given more than once is compared and swapped with the batch at its
// first occurrence and with single CompareAndSwap calls, in order, at its
// later ones: the outcome of running the entries one by one in order.
// The sessions library flushes sticky mode's write-behind queue with it.
func (s *Store) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if len(keys) != len(olds) || len(keys) != len(values) {
		return nil, fmt.Errorf("sqlstore: CompareAndSwapMany with %d keys, %d olds and %d values", len(keys), len(olds), len(values))
	}
	exp, err := expiresAt(ttl)
	if err != nil {
		return nil, err
	}
	order := make([]int, len(keys))
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
		order[i] = i
	}
	swapped := make([]bool, len(keys))
	if len(keys) == 0 {
		return swapped, nil
	}
	var later []int // entries to run as single calls after the batch, in index order
	if s.dialect == SQLite && !s.sqliteReturning {
		later, order = order, nil
	} else {
		sort.SliceStable(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
		// Equal keys are adjacent, in index order: the first goes with
		// the batch, the others after it.
		uniq := order[:0]
		for j, i := range order {
			if j > 0 && keys[order[j-1]] == keys[i] {
				later = append(later, i)
				continue
			}
			uniq = append(uniq, i)
		}
		order = uniq
		sort.Ints(later)
	}
	if len(order) > 0 {
		size := func(i int) int { return len(keys[i]) + len(olds[i]) + len(values[i]) }
		for _, chunk := range chunksBy(order, s.dialect.casManyRows(), size) {
			if err := s.casManyChunk(ctx, keys, olds, values, chunk, exp, swapped); err != nil {
				return nil, fmt.Errorf("sqlstore: CompareAndSwapMany of %d entries (%q to %q): %w",
					len(chunk), keys[chunk[0]], keys[chunk[len(chunk)-1]], err)
			}
		}
	}
	for _, i := range later {
		if swapped[i], err = s.CompareAndSwap(ctx, keys[i], olds[i], values[i], ttl); err != nil {
			return nil, err
		}
	}
	return swapped, nil
}

// casManyRows is the most entries one CompareAndSwapMany chunk holds:
// three parameters a row, so that SQLite's statements stay within 999.
func (d Dialect) casManyRows() int {
	if d == SQLite {
		return maxCASManyRowsSQLite
	}
	return maxManyRows
}

const maxCASManyRowsSQLite = 332 // 3 parameters a row plus 2: 998

// casManyChunk compares and swaps the distinct keys of chunk, setting
// swapped[i] for each entry written; a deadlock (which rolled the
// statement or transaction back) runs the chunk again.
func (s *Store) casManyChunk(ctx context.Context, keys []string, olds, values [][]byte, chunk []int, exp any, swapped []bool) error {
	for attempt := 1; ; attempt++ {
		for _, i := range chunk {
			swapped[i] = false
		}
		var err error
		switch s.dialect {
		case Postgres:
			err = s.casManyPostgres(ctx, keys, olds, values, chunk, exp, swapped)
		case MySQL:
			err = s.casManyMySQL(ctx, keys, olds, values, chunk, exp, swapped)
		default:
			err = s.casManySQLite(ctx, keys, olds, values, chunk, exp, swapped)
		}
		if err == nil || !s.retryable(err) || attempt == 5 || ctx.Err() != nil {
			return err
		}
	}
}

// retryable reports a deadlock, after which the database has rolled the
// statement (PostgreSQL) or transaction (MySQL) back.
func (s *Store) retryable(err error) bool {
	var pe *pgconn.PgError
	return isDeadlock(err) || errors.As(err, &pe) && pe.Code == "40P01"
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// nonNil stores a nil value as empty: NULL would violate NOT NULL.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// casStatement returns the cached statement of kind for rows rows.
func (s *Store) casStatement(kind casKind, rows int) string {
	p := s.casStmts[kind][rows].Load()
	if p == nil {
		q := s.dialect.casManyStatement(s.q.table, kind, rows)
		p = &q
		s.casStmts[kind][rows].Store(p)
	}
	return *p
}

// returned reads the keys a statement returns and marks their entries
// (index maps each key to its entry) as swapped.
func returned(ctx context.Context, q querier, query string, args []any, index map[string]int, swapped []bool) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return err
		}
		i, ok := index[k]
		if !ok {
			return fmt.Errorf("the statement returned the key %q, which is not in the batch (is the key column compared byte for byte?)", k)
		}
		swapped[i] = true
	}
	return rows.Err()
}

func keyIndex(keys []string, chunk []int) map[string]int {
	index := make(map[string]int, len(chunk))
	for _, i := range chunk {
		index[keys[i]] = i
	}
	return index
}

// casManyPostgres runs a chunk as one statement (see casManyStatement)
// in a transaction of its own: should ctx end while the statement waits
// for a row lock, pgx drops the connection and the transaction is rolled
// back, never committed behind the caller's back.
func (s *Store) casManyPostgres(ctx context.Context, keys []string, olds, values [][]byte, chunk []int, exp any, swapped []bool) error {
	ks := make([]string, len(chunk))
	os, vs := make([][]byte, len(chunk)), make([][]byte, len(chunk))
	for j, i := range chunk {
		ks[j], os[j], vs[j] = keys[i], olds[i], nonNil(values[i]) // a nil old is NULL: only if absent
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := returned(ctx, tx, s.casStatement(casPostgres, 0), []any{exp, nowMS(), ks, os, vs}, keyIndex(keys, chunk), swapped); err != nil {
		return err
	}
	return tx.Commit()
}

// casManySQLite runs the entries of a chunk that expect a value as one
// UPDATE ... FROM ... RETURNING and those that expect absence as one
// INSERT ... ON CONFLICT ... RETURNING, in one transaction when there are
// both.
func (s *Store) casManySQLite(ctx context.Context, keys []string, olds, values [][]byte, chunk []int, exp any, swapped []bool) error {
	var upd, ins []any
	for _, i := range chunk {
		if olds[i] != nil {
			upd = append(upd, keys[i], olds[i], nonNil(values[i]))
		} else {
			ins = append(ins, keys[i], nonNil(values[i]), exp)
		}
	}
	now := nowMS()
	index := keyIndex(keys, chunk)
	run := func(q querier) error {
		if len(upd) > 0 {
			if err := returned(ctx, q, s.casStatement(casUpdateFrom, len(upd)/3), append(upd, exp, now), index, swapped); err != nil {
				return err
			}
		}
		if len(ins) > 0 {
			return returned(ctx, q, s.casStatement(casInsertReturning, len(ins)/3), append(ins, now), index, swapped)
		}
		return nil
	}
	if len(upd) == 0 || len(ins) == 0 {
		return run(s.db) // one statement is atomic on its own
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := run(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// casManyMySQL locks the chunk's rows, compares in Go and writes the
// winners, in one READ COMMITTED transaction (no gap locks: absent keys
// are not locked, and their INSERT fails if another writer was first).
func (s *Store) casManyMySQL(ctx context.Context, keys []string, olds, values [][]byte, chunk []int, exp any, swapped []bool) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	args := make([]any, len(chunk))
	for j, i := range chunk {
		args[j] = keys[i]
	}
	type row struct {
		value []byte
		exp   sql.NullInt64
	}
	cur := make(map[string]row, len(chunk))
	rows, err := tx.QueryContext(ctx, s.casStatement(casLockRows, len(chunk)), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			k []byte
			r row
		)
		if err := rows.Scan(&k, &r.value, &r.exp); err != nil {
			rows.Close()
			return err
		}
		cur[string(k)] = r
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if testHookMySQLLocked != nil {
		testHookMySQLLocked()
	}
	now := nowMS()
	var write, insert []int // locked rows to overwrite; absent keys to insert
	for _, i := range chunk {
		r, found := cur[keys[i]]
		live := found && (!r.exp.Valid || r.exp.Int64 > now)
		switch {
		case olds[i] == nil && !found:
			insert = append(insert, i)
		case olds[i] == nil && !live, olds[i] != nil && live && bytes.Equal(r.value, olds[i]):
			write = append(write, i)
		}
	}
	if len(write) > 0 {
		query, args := s.upsertMany(keys, values, write, exp)
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		for _, i := range write {
			swapped[i] = true
		}
	}
	if len(insert) > 0 {
		args := make([]any, 0, 3*len(insert))
		for _, i := range insert {
			args = append(args, keys[i], nonNil(values[i]), exp)
		}
		_, err := tx.ExecContext(ctx, s.casStatement(casInsertPlain, len(insert)), args...)
		switch {
		case err == nil:
			for _, i := range insert {
				swapped[i] = true
			}
		case isDuplicate(err):
			// Another writer inserted one of these keys since the rows
			// were read (the statement was rolled back): one by one.
			for _, i := range insert {
				ok, err := s.casInsertMySQL(ctx, tx.ExecContext, keys[i], nonNil(values[i]), exp)
				if err != nil {
					return err
				}
				swapped[i] = ok
			}
		default:
			return err
		}
	}
	return tx.Commit()
}

// testHookMySQLLocked, if set, runs in casManyMySQL after the rows are
// locked: tests insert keys there that were absent.
var testHookMySQLLocked func()

// casKind names the statements of CompareAndSwapMany.
type casKind int

const (
	casPostgres        casKind = iota // PostgreSQL: the whole chunk
	casUpdateFrom                     // SQLite: entries expecting a value
	casInsertReturning                // SQLite: entries expecting absence
	casLockRows                       // MySQL: SELECT ... FOR UPDATE
	casInsertPlain                    // MySQL: INSERT of absent keys
	casKinds
)

// casManyStatement builds the statement of kind for rows rows into T.
//
// casPostgres takes $1 expires_at, $2 now (Unix ms), then key, old and
// value of each row; a NULL old means "only if absent", a NULL key marks
// a padding row. casUpdateFrom takes key, old and value of each row, then
// expires_at and now; casInsertReturning key, value and expires_at of
// each row, then now. Both return the keys written. casLockRows takes
// the keys and returns key, value and expires_at of those present,
// locked; casInsertPlain takes key, value and expires_at of each row.
func (d Dialect) casManyStatement(T string, kind casKind, rows int) string {
	k, v, e := d.quote("key"), d.quote("value"), d.quote("expires_at")
	var b strings.Builder
	b.Grow(400 + rows*40)
	list := func(row func(i int)) {
		for i := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			row(i)
		}
	}
	switch kind {
	case casPostgres:
		// The entries come as three arrays (one statement text for every
		// batch size). The key = ANY(...) lets the planner read just the
		// batch's rows by the primary key, in key order, whatever the size
		// of the table.
		fmt.Fprintf(&b, "WITH b AS (SELECT * FROM unnest($3::text[], $4::bytea[], $5::bytea[]) AS b (k, o, v))"+
			", u AS (UPDATE %s AS cur SET %s = b.v, %s = $1::bigint FROM b"+
			" WHERE cur.%s = ANY ($3::text[]) AND cur.%s = b.k AND b.o IS NOT NULL AND cur.%s = b.o AND coalesce(cur.%s > $2::bigint, true) RETURNING cur.%s)",
			T, v, e, k, k, v, e, k)
		fmt.Fprintf(&b, ", i AS (INSERT INTO %s AS cur (%s, %s, %s) SELECT b.k, b.v, $1::bigint FROM b WHERE b.o IS NULL"+
			" ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s"+
			" WHERE cur.%s IS NOT NULL AND cur.%s <= $2::bigint RETURNING cur.%s)",
			T, k, v, e, k, v, v, e, e, e, e, k)
		fmt.Fprintf(&b, " SELECT %s FROM u UNION ALL SELECT %s FROM i", k, k)
	case casUpdateFrom:
		b.WriteString("WITH b (k, o, v) AS (VALUES ")
		list(func(int) { b.WriteString("(?, ?, ?)") })
		fmt.Fprintf(&b, ") UPDATE %s AS cur SET %s = b.v, %s = ? FROM b"+
			" WHERE cur.%s = b.k AND cur.%s = b.o AND (cur.%s IS NULL OR cur.%s > ?) RETURNING %s",
			T, v, e, k, v, e, e, k)
	case casInsertReturning:
		fmt.Fprintf(&b, "INSERT INTO %s AS cur (%s, %s, %s) VALUES ", T, k, v, e)
		list(func(int) { b.WriteString("(?, ?, ?)") })
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s"+
			" WHERE cur.%s IS NOT NULL AND cur.%s <= ? RETURNING %s",
			k, v, v, e, e, e, e, k)
	case casLockRows:
		fmt.Fprintf(&b, "SELECT %s, %s, %s FROM %s WHERE %s IN (", k, v, e, T, k)
		list(func(int) { b.WriteByte('?') })
		fmt.Fprintf(&b, ") ORDER BY %s FOR UPDATE", k)
	case casInsertPlain:
		fmt.Fprintf(&b, "INSERT INTO %s (%s, %s, %s) VALUES ", T, k, v, e)
		list(func(int) { b.WriteString("(?, ?, ?)") })
	}
	return b.String()
}

// sqliteHasReturning reports whether the SQLite library behind db is 3.35
// or later (RETURNING; UPDATE ... FROM came in 3.33).
func sqliteHasReturning(ctx context.Context, db *sql.DB) (bool, error) {
	var version string
	if err := db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&version); err != nil {
		return false, fmt.Errorf("sqlstore: reading the SQLite version: %w", err)
	}
	var parts [3]int
	for i, p := range strings.SplitN(version, ".", 3) {
		parts[i], _ = strconv.Atoi(p)
	}
	return parts[0] > 3 || parts[0] == 3 && parts[1] >= 35, nil
}
