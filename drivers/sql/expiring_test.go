package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

func mustCompareAndDelete(t *testing.T, s *Store, key string, old []byte, want bool) {
	t.Helper()
	ok, err := s.CompareAndDelete(context.Background(), key, old)
	if err != nil || ok != want {
		t.Fatalf("CompareAndDelete(%q, %q) = %v, %v; want %v", key, old, ok, err, want)
	}
}

// testCompareAndDelete: match, mismatch, absent, expired, empty and binary
// values.
func testCompareAndDelete(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()

	mustSet(t, s, "k", []byte("v1"), store.WithExpiration(time.Hour))
	mustCompareAndDelete(t, s, "k", []byte("v2"), false)
	mustCompareAndDelete(t, s, "k", []byte("v"), false)   // a prefix of the value
	mustCompareAndDelete(t, s, "k", []byte("v1x"), false) // the value is a prefix
	mustCompareAndDelete(t, s, "k", []byte{}, false)
	mustCompareAndDelete(t, s, "k", nil, false)
	if got := mustGet(t, s, "k"); string(got) != "v1" {
		t.Fatalf("after failed CompareAndDelete: %q", got)
	}
	mustCompareAndDelete(t, s, "k", []byte("v1"), true)
	wantNotFound(t, s, "k")
	mustCompareAndDelete(t, s, "k", []byte("v1"), false) // gone
	mustCompareAndDelete(t, s, "never", []byte("v1"), false)
	mustCompareAndDelete(t, s, "never", nil, false)

	mustSet(t, s, "forever", []byte("v"))
	mustCompareAndDelete(t, s, "forever", []byte("v"), true)
	wantNotFound(t, s, "forever")

	// Empty values: nil and empty old both match one.
	mustSet(t, s, "empty", []byte{})
	mustCompareAndDelete(t, s, "empty", []byte("x"), false)
	mustCompareAndDelete(t, s, "empty", []byte{}, true)
	mustSet(t, s, "empty", []byte{})
	mustCompareAndDelete(t, s, "empty", nil, true)
	wantNotFound(t, s, "empty")

	// Binary values compare byte for byte.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	mustSet(t, s, "bin", all)
	mustCompareAndDelete(t, s, "bin", all[:255], false)
	other := bytes.Clone(all)
	other[128] = 0
	mustCompareAndDelete(t, s, "bin", other, false)
	mustCompareAndDelete(t, s, "bin", all, true)

	// An expired entry counts as absent, before any sweep removes it.
	mustSet(t, s, "expired", []byte("v"), store.WithExpiration(20*time.Millisecond))
	time.Sleep(40 * time.Millisecond)
	mustCompareAndDelete(t, s, "expired", []byte("v"), false)
	if n := rows(t, s, table); n != 1 {
		t.Fatalf("%d rows after the failed CompareAndDelete of an expired entry, want 1 (the unswept row)", n)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}

	// Other writers see the deletion at once.
	mustSet(t, s, "k", []byte("v1"))
	mustCompareAndDelete(t, s, "k", []byte("v1"), true)
	if ok, err := s.CompareAndSwap(ctx, "k", nil, []byte("v2"), 0); !ok || err != nil {
		t.Fatalf("CompareAndSwap(absent) after CompareAndDelete = %v, %v", ok, err)
	}

	if _, err := s.CompareAndDelete(ctx, "", []byte("v")); err == nil {
		t.Fatal("CompareAndDelete with an empty key: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.CompareAndDelete(cancelled, "k", []byte("v2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("CompareAndDelete with a cancelled context: %v", err)
	}
	if got := mustGet(t, s, "k"); string(got) != "v2" {
		t.Fatalf("after a cancelled CompareAndDelete: %q", got)
	}
}

// testCompareAndDeleteRace: of 32 concurrent CompareAndDelete calls with
// the same key and old, exactly one deletes; racing CompareAndSwap calls
// with that old, exactly one of all the calls wins.
func testCompareAndDeleteRace(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx := context.Background()
	const workers, rounds = 32, 8
	for round := range rounds {
		old := fmt.Appendf(nil, "round %d", round)
		mustSet(t, s, "race", old, store.WithExpiration(time.Hour))
		withSwaps := round%2 == 1 // half the workers CompareAndSwap instead
		var deletes, swaps atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if withSwaps && w%2 == 1 {
					ok, err := s.CompareAndSwap(ctx, "race", old, fmt.Appendf(nil, "swapped by %d", w), time.Hour)
					if err != nil {
						errs <- err
					} else if ok {
						swaps.Add(1)
					}
					return
				}
				ok, err := s.CompareAndDelete(ctx, "race", old)
				if err != nil {
					errs <- err
				} else if ok {
					deletes.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		d, sw := deletes.Load(), swaps.Load()
		if d+sw != 1 {
			t.Fatalf("round %d: %d deletes and %d swaps succeeded, want exactly one in all", round, d, sw)
		}
		v, err := s.Get(ctx, "race")
		switch {
		case d == 1 && !errors.Is(err, &store.NotFound{}):
			t.Fatalf("round %d: the delete won but Get = %q, %v", round, v, err)
		case sw == 1 && (err != nil || !bytes.HasPrefix(v.([]byte), []byte("swapped by "))):
			t.Fatalf("round %d: a swap won but Get = %q, %v", round, v, err)
		}
	}
}

func mustListExpiring(t *testing.T, s *Store, prefix string, before time.Time, limit int) ([]string, [][]byte) {
	t.Helper()
	keys, values, err := s.ListExpiring(context.Background(), prefix, before, limit)
	if err != nil {
		t.Fatalf("ListExpiring(%q, %v, %d): %v", prefix, before, limit, err)
	}
	if len(keys) != len(values) {
		t.Fatalf("ListExpiring(%q): %d keys and %d values", prefix, len(keys), len(values))
	}
	if len(keys) > max(limit, 0) {
		t.Fatalf("ListExpiring(%q, limit %d) returned %d entries", prefix, limit, len(keys))
	}
	return keys, values
}

// wantListed checks that ListExpiring lists exactly want, in that order,
// each with the value Get returns.
func wantListed(t *testing.T, s *Store, prefix string, before time.Time, limit int, want ...string) {
	t.Helper()
	keys, values := mustListExpiring(t, s, prefix, before, limit)
	if !slices.Equal(keys, want) {
		t.Fatalf("ListExpiring(%q, in %v, limit %d) = %q, want %q", prefix, time.Until(before).Round(time.Minute), limit, keys, want)
	}
	for i, k := range keys {
		if values[i] == nil {
			t.Fatalf("ListExpiring: value of %q is nil", k)
		}
		if got := mustGet(t, s, k); !bytes.Equal(values[i], got) {
			t.Fatalf("ListExpiring: value of %q is %q, Get says %q", k, values[i], got)
		}
	}
}

// testListExpiring: the prefix, before and limit filters, the order,
// expired and non-expiring rows, values.
func testListExpiring(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()
	ttl := func(d time.Duration) store.Option { return store.WithExpiration(d) }
	mustSet(t, s, "p:3h", []byte("three"), ttl(3*time.Hour))
	mustSet(t, s, "p:1h", []byte("one"), ttl(time.Hour))
	mustSet(t, s, "p:2h", []byte{}, ttl(2*time.Hour))
	mustSet(t, s, "q:90m", []byte("other prefix"), ttl(90*time.Minute))
	mustSet(t, s, "p:10h", []byte("far"), ttl(10*time.Hour))
	mustSet(t, s, "p:never", []byte("no expiry"))
	mustSet(t, s, "p:expired", []byte("gone"), ttl(time.Millisecond))
	mustSet(t, s, "p", []byte("shorter than the prefix"), ttl(time.Hour))
	mustSet(t, s, "P:1h", []byte("other case"), ttl(time.Hour))
	time.Sleep(5 * time.Millisecond)
	now := time.Now()

	wantListed(t, s, "p:", now.Add(5*time.Hour), 100, "p:1h", "p:2h", "p:3h")
	wantListed(t, s, "p:", now.Add(5*time.Hour), 2, "p:1h", "p:2h")
	wantListed(t, s, "p:", now.Add(5*time.Hour), 1, "p:1h")
	wantListed(t, s, "p:", now.Add(5*time.Hour), 0)
	wantListed(t, s, "p:", now.Add(5*time.Hour), -1)
	wantListed(t, s, "p:", now.Add(90*time.Minute), 100, "p:1h")
	wantListed(t, s, "p:", now.Add(30*time.Minute), 100)
	wantListed(t, s, "p:", now.Add(-time.Hour), 100)
	wantListed(t, s, "p:", now.Add(24*time.Hour), 100, "p:1h", "p:2h", "p:3h", "p:10h")
	wantListed(t, s, "q:", now.Add(5*time.Hour), 100, "q:90m")
	wantListed(t, s, "r:", now.Add(5*time.Hour), 100)
	wantListed(t, s, "p:3h", now.Add(5*time.Hour), 100, "p:3h")
	wantListed(t, s, "P:", now.Add(5*time.Hour), 100, "P:1h")
	// "" is every key; equal deadlines come in either order.
	keys, _ := mustListExpiring(t, s, "", now.Add(5*time.Hour), 100)
	if len(keys) != 6 || !slices.Equal(keys[3:], []string{"q:90m", "p:2h", "p:3h"}) ||
		!slices.Contains(keys[:3], "p:1h") || !slices.Contains(keys[:3], "P:1h") || !slices.Contains(keys[:3], "p") {
		t.Fatalf("ListExpiring(\"\") = %q", keys)
	}
	if n := rows(t, s, table); n != 9 {
		t.Fatalf("%d rows, want 9 (the expired one unswept)", n)
	}

	// The deadline bound is exclusive, to the millisecond.
	var deadline int64
	if err := s.DB().QueryRow("SELECT expires_at FROM " + table + " WHERE " + s.dialect.quote("key") + " = 'p:1h'").Scan(&deadline); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, "p:1h", time.UnixMilli(deadline), 100)
	wantListed(t, s, "p:1h", time.UnixMilli(deadline).Add(time.Microsecond), 100, "p:1h")

	// Returned values are copies.
	_, values := mustListExpiring(t, s, "p:3h", now.Add(5*time.Hour), 1)
	values[0][0] = 'X'
	if got := mustGet(t, s, "p:3h"); string(got) != "three" {
		t.Fatalf("value changed through a listed slice: %q", got)
	}
	_, again := mustListExpiring(t, s, "p:3h", now.Add(5*time.Hour), 1)
	if string(again[0]) != "three" {
		t.Fatalf("listed value aliased: %q", again[0])
	}

	if _, _, err := s.ListExpiring(ctx, "bad\x00", now.Add(time.Hour), 10); err == nil {
		t.Fatal("ListExpiring with a NUL in the prefix: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.ListExpiring(cancelled, "p:", now.Add(time.Hour), 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListExpiring with a cancelled context: %v", err)
	}
}

// testListExpiringPatterns: prefixes holding LIKE and GLOB wildcards, the
// escape character, a backslash and non-ASCII text match themselves only.
func testListExpiringPatterns(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=off")
	keys := []string{
		"a%b:1", "aXb:1", "aXXb:1",
		"a_b:2", "aYb:2",
		"a!b:3", "a!!b:3", "a!:3",
		`a\b:4`, `a\\b:4`, "a:4",
		"a*b:5", "aZZb:5",
		"a?b:6", "aWb:6",
		"a[b]:7", "a[c]:7", "ab]:7",
		"é:8", "e:8", "É:8",
		"%:9", "_:9",
	}
	for i, k := range keys {
		mustSet(t, s, k, []byte(k), store.WithExpiration(time.Hour+time.Duration(i)*time.Second))
	}
	before := time.Now().Add(2 * time.Hour)
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a%", []string{"a%b:1"}},
		{"a%b", []string{"a%b:1"}},
		{"a_b", []string{"a_b:2"}},
		{"a!", []string{"a!b:3", "a!!b:3", "a!:3"}},
		{"a!b", []string{"a!b:3"}},
		{"a!!", []string{"a!!b:3"}},
		{`a\`, []string{`a\b:4`, `a\\b:4`}},
		{`a\\`, []string{`a\\b:4`}},
		{"a*", []string{"a*b:5"}},
		{"a?", []string{"a?b:6"}},
		{"a[", []string{"a[b]:7", "a[c]:7"}},
		{"a[b", []string{"a[b]:7"}},
		{"a[b]", []string{"a[b]:7"}},
		{"ab]", []string{"ab]:7"}},
		{"é", []string{"é:8"}},
		{"É", []string{"É:8"}},
		{"e", []string{"e:8"}},
		{"%", []string{"%:9"}},
		{"_", []string{"_:9"}},
		{"A", nil},
	} {
		wantListed(t, s, tc.prefix, before, 100, tc.want...)
	}
}

// testListExpiringFollowsWrites: every kind of write moves an entry into
// or out of the listing, with its new value.
func testListExpiringFollowsWrites(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=off")
	ctx := context.Background()
	soon := func() time.Time { return time.Now().Add(2 * time.Hour) }
	hour := store.WithExpiration(time.Hour)
	value := func(key string) []byte {
		t.Helper()
		keys, values := mustListExpiring(t, s, key, soon(), 10)
		if len(keys) != 1 {
			t.Fatalf("ListExpiring(%q) = %q, want the key alone", key, keys)
		}
		return values[0]
	}

	// Set: in, rewritten, out with a longer TTL, in again, out without one.
	mustSet(t, s, "set", []byte("v1"), hour)
	if v := value("set"); string(v) != "v1" {
		t.Fatalf("after Set: %q", v)
	}
	mustSet(t, s, "set", []byte("v2"), hour)
	if v := value("set"); string(v) != "v2" {
		t.Fatalf("after a second Set: %q", v)
	}
	mustSet(t, s, "set", []byte("v3"), store.WithExpiration(10*time.Hour))
	wantListed(t, s, "set", soon(), 10)
	mustSet(t, s, "set", []byte("v4"), hour)
	wantListed(t, s, "set", soon(), 10, "set")
	mustSet(t, s, "set", []byte("v5"))
	wantListed(t, s, "set", soon(), 10)
	wantListed(t, s, "set", time.Now().Add(1000*time.Hour), 10)

	// SetMany.
	keys := []string{"many:2", "many:1"}
	if err := s.SetMany(ctx, keys, [][]byte{[]byte("m2"), []byte("m1")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, values := mustListExpiring(t, s, "many:", soon(), 10)
	slices.Sort(got) // one deadline for both
	if !slices.Equal(got, []string{"many:1", "many:2"}) || len(values) != 2 {
		t.Fatalf("after SetMany: %q", got)
	}
	if err := s.SetMany(ctx, keys[:1], [][]byte{[]byte("m2b")}, 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, "many:", soon(), 10, "many:1")
	if err := s.SetMany(ctx, keys, [][]byte{[]byte("m2c"), []byte("m1c")}, 0); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, "many:", soon(), 10)

	// CompareAndSwap: insert, swap, a failed swap, a longer TTL.
	cas := func(key string, old, v []byte, ttl time.Duration, want bool) {
		t.Helper()
		if ok, err := s.CompareAndSwap(ctx, key, old, v, ttl); ok != want || err != nil {
			t.Fatalf("CompareAndSwap(%q, %q, %q) = %v, %v; want %v", key, old, v, ok, err, want)
		}
	}
	cas("single-cas", nil, []byte("c1"), time.Hour, true)
	if v := value("single-cas"); string(v) != "c1" {
		t.Fatalf("after CompareAndSwap(absent): %q", v)
	}
	cas("single-cas", []byte("c1"), []byte("c2"), time.Hour, true)
	cas("single-cas", []byte("c1"), []byte("c3"), time.Hour, false)
	if v := value("single-cas"); string(v) != "c2" {
		t.Fatalf("after CompareAndSwap: %q", v)
	}
	cas("single-cas", []byte("c2"), []byte("c4"), 10*time.Hour, true)
	wantListed(t, s, "single-cas", soon(), 10)
	cas("single-cas", []byte("c4"), []byte("c5"), time.Hour, true)
	wantListed(t, s, "single-cas", soon(), 10, "single-cas")
	cas("single-cas", []byte("c5"), []byte("c6"), 0, true)
	wantListed(t, s, "single-cas", soon(), 10)

	// CompareAndSwapMany.
	swapped := casMany(t, s, []string{"casmany:1", "casmany:2"}, [][]byte{nil, nil}, [][]byte{[]byte("x1"), []byte("x2")}, time.Hour)
	if !swapped[0] || !swapped[1] {
		t.Fatalf("CompareAndSwapMany(absent) = %v", swapped)
	}
	if v := value("casmany:1"); string(v) != "x1" {
		t.Fatalf("after CompareAndSwapMany: %q", v)
	}
	swapped = casMany(t, s, []string{"casmany:1", "casmany:2"}, [][]byte{[]byte("x1"), []byte("wrong")}, [][]byte{[]byte("y1"), []byte("y2")}, 10*time.Hour)
	if !swapped[0] || swapped[1] {
		t.Fatalf("CompareAndSwapMany = %v", swapped)
	}
	wantListed(t, s, "casmany:", soon(), 10, "casmany:2")
	if v := value("casmany:2"); string(v) != "x2" {
		t.Fatalf("after a failed CompareAndSwapMany: %q", v)
	}

	// Delete and CompareAndDelete.
	mustSet(t, s, "del", []byte("d"), hour)
	mustSet(t, s, "cad", []byte("d"), hour)
	wantListed(t, s, "del", soon(), 10, "del")
	if err := s.Delete(ctx, "del"); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, "del", soon(), 10)
	mustCompareAndDelete(t, s, "cad", []byte("other"), false)
	wantListed(t, s, "cad", soon(), 10, "cad")
	mustCompareAndDelete(t, s, "cad", value("cad"), true)
	wantListed(t, s, "cad", soon(), 10)

	// Expiry takes an entry out before any sweep, and Sweep removes its row.
	mustSet(t, s, "exp", []byte("e"), store.WithExpiration(50*time.Millisecond))
	wantListed(t, s, "exp", soon(), 10, "exp")
	time.Sleep(80 * time.Millisecond)
	wantListed(t, s, "exp", soon(), 10)
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
}

// testListExpiringClaims: servers sharing a store list the same expiring
// entries and claim each with CompareAndDelete of the value listed; every
// entry is claimed exactly once, and none is listed afterwards.
func testListExpiringClaims(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx := context.Background()
	const entries, servers = 60, 8
	for i := range entries {
		mustSet(t, s, fmt.Sprintf("claim:%02d", i), fmt.Appendf(nil, "v%d", i), store.WithExpiration(time.Hour+time.Duration(i)*time.Millisecond))
	}
	mustSet(t, s, "claim:later", []byte("v"), store.WithExpiration(5*time.Hour))
	claims := make([]atomic.Int32, entries)
	var wg sync.WaitGroup
	errs := make(chan error, servers)
	for range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				keys, values, err := s.ListExpiring(ctx, "claim:", time.Now().Add(2*time.Hour), 16)
				if err != nil {
					errs <- err
					return
				}
				if len(keys) == 0 {
					return
				}
				for i, k := range keys {
					ok, err := s.CompareAndDelete(ctx, k, values[i])
					if err != nil {
						errs <- err
						return
					}
					if ok {
						var n int
						if _, err := fmt.Sscanf(k, "claim:%d", &n); err != nil {
							errs <- fmt.Errorf("claimed %q: %w", k, err)
							return
						}
						claims[n].Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range claims {
		if n := claims[i].Load(); n != 1 {
			t.Errorf("claim:%02d claimed %d times", i, n)
		}
	}
	wantListed(t, s, "claim:", time.Now().Add(10*time.Hour), 100, "claim:later")
}

func TestKeyPattern(t *testing.T) {
	for _, tc := range []struct {
		d            Dialect
		prefix, want string
	}{
		{Postgres, "", "%"},
		{Postgres, "sess:", "sess:%"},
		{Postgres, `a%b_c!d\e*f?g[h]`, `a!%b!_c!!d\e*f?g[h]%`},
		{MySQL, `a%b_c!d\e*f?g[h]`, `a!%b!_c!!d\e*f?g[h]%`},
		{SQLite, "", "*"},
		{SQLite, `a%b_c!d\e*f?g[h]`, `a%b_c!d\e[*]f[?]g[[]h]*`},
		{SQLite, "é€", "é€*"},
	} {
		if got := tc.d.keyPattern(tc.prefix); got != tc.want {
			t.Errorf("%v.keyPattern(%q) = %q, want %q", tc.d, tc.prefix, got, tc.want)
		}
	}
}

func TestDeadlineMS(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{at, 1_700_000_000_123},
		{at.Add(time.Nanosecond), 1_700_000_000_124},
		{at.Add(time.Millisecond - time.Nanosecond), 1_700_000_000_124},
		{at.Add(-time.Nanosecond), 1_700_000_000_123},
	} {
		if got := deadlineMS(tc.t); got != tc.want {
			t.Errorf("deadlineMS(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
