package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// CompareAndDelete deletes key only if its current value is byte-for-byte
// equal to old (nil and empty both match an empty value), and reports
// whether it deleted. A missing or expired key is (false, nil). It is one
// DELETE statement whose WHERE clause does the comparison, so of several
// concurrent calls with the same key and old exactly one reports true.
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if err := checkKey(key); err != nil {
		return false, err
	}
	if old == nil {
		old = []byte{} // NULL would match nothing
	}
	// A DELETE's affected rows are the rows deleted in every dialect,
	// whatever MySQL's CLIENT_FOUND_ROWS says.
	ok, err := s.affected(s.exec(ctx, s.q.casDelete, key, old, nowMS()))
	if err != nil {
		return false, fmt.Errorf("sqlstore: compare-and-delete %q: %w", key, err)
	}
	return ok, nil
}

// ListExpiring returns up to limit live entries whose key starts with
// prefix and whose deadline is before the instant before, earliest
// deadline first (entries with equal deadlines in no particular order),
// with fresh copies of their values. Entries without expiry are never
// listed. It is one query over the expires_at index; the rows themselves
// are the index, so there is nothing to keep in step with writes, and the
// sweeper removes expired rows. A limit of 0 or less returns nothing. The
// prefix must be valid UTF-8 without NUL bytes, as keys are.
func (s *Store) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) (keys []string, values [][]byte, err error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	if !utf8.ValidString(prefix) || strings.IndexByte(prefix, 0) >= 0 {
		return nil, nil, fmt.Errorf("sqlstore: list expiring: prefix %q is not valid UTF-8 without NUL bytes", prefix)
	}
	if limit <= 0 {
		return nil, nil, nil
	}
	keys, values, err = s.listExpiring(ctx, prefix, deadlineMS(before), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlstore: list expiring: %w", err)
	}
	return keys, values, nil
}

func (s *Store) listExpiring(ctx context.Context, prefix string, before int64, limit int) ([]string, [][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.q.listExpiring, nowMS(), before, s.dialect.keyPattern(prefix), limit)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var (
		keys   []string
		values [][]byte
	)
	for rows.Next() {
		var (
			k string
			v []byte // Scan into a []byte copies
		)
		if err := rows.Scan(&k, &v); err != nil {
			return nil, nil, err
		}
		if v == nil {
			v = []byte{}
		}
		keys, values = append(keys, k), append(values, v)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return keys, values, nil
}

// deadlineMS is the exclusive bound on expires_at (Unix milliseconds) of
// the deadlines before t: t in milliseconds, rounded up.
func deadlineMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return ms
}
