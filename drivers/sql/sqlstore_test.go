package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"
	sessdriver "github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"go.uber.org/goleak"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	if code == 0 {
		// testservers forks servers from one goroutine locked to its
		// thread for the life of the process (for Pdeathsig): not a leak.
		if err := goleak.Find(testservers.LeakCheckOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// backend is one database to run the suite against.
type backend struct {
	dialect Dialect
	url     string // without query
	query   string // driver parameters to keep, "" or "k=v&..."
	schema  string // a schema the table may be qualified with
}

var tableSeq atomic.Int64

// open opens a store on b with a fresh table and the given extra query.
func (b backend) open(t *testing.T, extra string) (*Store, string) {
	t.Helper()
	table := fmt.Sprintf("t%d", tableSeq.Add(1))
	return b.openTable(t, table, extra), table
}

func (b backend) openTable(t *testing.T, table, extra string) *Store {
	t.Helper()
	q := "table=" + table
	if b.query != "" {
		q += "&" + b.query
	}
	if extra != "" {
		q += "&" + extra
	}
	u, err := url.Parse(b.url + "?" + q)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatalf("Open(%s): %v", u.Redacted(), err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSQLiteFile(t *testing.T) {
	t.Parallel()
	runSuite(t, backend{dialect: SQLite, url: "sqlite://" + filepath.Join(t.TempDir(), "s.db"), schema: "main"})
}

func TestSQLiteMemory(t *testing.T) {
	t.Parallel()
	runSuite(t, backend{dialect: SQLite, url: "sqlite://:memory:", schema: "main"})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	srv := testservers.SharedPostgres(t)
	u, _ := url.Parse(srv.URL())
	q := u.RawQuery
	u.RawQuery = ""
	runSuite(t, backend{dialect: Postgres, url: u.String(), query: q, schema: "public"})
}

func TestMariaDB(t *testing.T) {
	t.Parallel()
	srv := testservers.SharedMariaDB(t)
	runSuite(t, backend{dialect: MySQL, url: srv.URL(), schema: srv.DB()})
}

// TestMariaDBFoundRows runs the compare-and-swap and compare-and-delete
// tests on connections with CLIENT_FOUND_ROWS, which changes what MySQL
// reports as affected rows.
func TestMariaDBFoundRows(t *testing.T) {
	t.Parallel()
	srv := testservers.SharedMariaDB(t)
	b := backend{dialect: MySQL, url: srv.URL(), query: "clientFoundRows=true", schema: srv.DB()}
	t.Run("CompareAndSwap", func(t *testing.T) { t.Parallel(); testCompareAndSwap(t, b) })
	t.Run("CompareAndSwapRace", func(t *testing.T) { t.Parallel(); testCompareAndSwapRace(t, b) })
	t.Run("CASManyCrossCheck", func(t *testing.T) { t.Parallel(); testCASManyCrossCheck(t, b) })
	t.Run("CASManyRace", func(t *testing.T) { t.Parallel(); testCASManyRace(t, b) })
	t.Run("CompareAndDelete", func(t *testing.T) { t.Parallel(); testCompareAndDelete(t, b) })
	t.Run("CompareAndDeleteRace", func(t *testing.T) { t.Parallel(); testCompareAndDeleteRace(t, b) })
}

func TestSQLitePragmas(t *testing.T) {
	b := backend{dialect: SQLite, url: "sqlite://" + filepath.Join(t.TempDir(), "p.db")}
	s, _ := b.open(t, "busy_timeout=1500ms")
	var mode string
	var busy int
	if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	if err := s.DB().QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 1500 {
		t.Errorf("busy_timeout = %d, %v", busy, err)
	}
}

func runSuite(t *testing.T, b backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, backend)
	}{
		{"RoundTrip", testRoundTrip},
		{"TypeErrors", testTypeErrors},
		{"NotFoundOverwriteDelete", testNotFoundOverwriteDelete},
		{"NotAliased", testNotAliased},
		{"Expiry", testExpiry},
		{"SweepBatches", testSweepBatches},
		{"BackgroundSweeper", testBackgroundSweeper},
		{"CancelledContext", testCancelledContext},
		{"CompareAndSwap", testCompareAndSwap},
		{"CompareAndSwapRace", testCompareAndSwapRace},
		{"Concurrent", testConcurrent},
		{"ListKeys", testListKeys},
		{"TablesIsolated", testTablesIsolated},
		{"SchemaQualified", testSchemaQualified},
		{"NoCreate", testNoCreate},
		{"ConcurrentCreate", testConcurrentCreate},
		{"CloseStopsSweeper", testCloseStopsSweeper},
		{"SetMany", testSetMany},
		{"SetManyAtomic", testSetManyAtomic},
		{"CASManySemantics", testCASManySemantics},
		{"CASManyCrossCheck", testCASManyCrossCheck},
		{"CASManyPerEntry", testCASManyPerEntry},
		{"CASManyCancel", testCASManyCancel},
		{"CASManyRace", testCASManyRace},
		{"CompareAndDelete", testCompareAndDelete},
		{"CompareAndDeleteRace", testCompareAndDeleteRace},
		{"ListExpiring", testListExpiring},
		{"ListExpiringPatterns", testListExpiringPatterns},
		{"ListExpiringFollowsWrites", testListExpiringFollowsWrites},
		{"ListExpiringClaims", testListExpiringClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

func mustGet(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	b, ok := v.([]byte)
	if !ok {
		t.Fatalf("Get(%q) returned %T, want []byte", key, v)
	}
	return b
}

func mustSet(t *testing.T, s *Store, key string, v any, opts ...store.Option) {
	t.Helper()
	if err := s.Set(context.Background(), key, v, opts...); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantNotFound(t *testing.T, s *Store, key string) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("Get(%q) = %v, %v; want NotFound", key, v, err)
	}
}

// rows counts the rows physically in a store's table.
func rows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func testRoundTrip(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	cases := map[string][]byte{
		"sess:empty": {},
		"sess:all":   all,
		"sess:big":   big,
		"sess:ütf8":  []byte("x"),
		"sess:" + strings.Repeat("k", MaxKeyLen-5): []byte("long key"),
	}
	for k, v := range cases {
		mustSet(t, s, k, v)
	}
	for k, v := range cases {
		got := mustGet(t, s, k)
		if !bytes.Equal(got, v) || got == nil {
			t.Errorf("%.20s: got %d bytes (nil=%v), want %d", k, len(got), got == nil, len(v))
		}
	}
	mustSet(t, s, "sess:str", "a string")
	if got := mustGet(t, s, "sess:str"); string(got) != "a string" {
		t.Errorf("string value: got %q", got)
	}
	mustSet(t, s, "sess:nil", []byte(nil))
	if got := mustGet(t, s, "sess:nil"); got == nil || len(got) != 0 {
		t.Errorf("nil value: got %#v", got)
	}
	// Keys are compared byte for byte (no case folding, no collation).
	mustSet(t, s, "sess:AbC", []byte("upper"))
	mustSet(t, s, "sess:abc", []byte("lower"))
	if string(mustGet(t, s, "sess:AbC")) != "upper" || string(mustGet(t, s, "sess:abc")) != "lower" {
		t.Error("keys differing in case collide")
	}
	if s.GetType() != "sql" {
		t.Errorf("GetType = %q", s.GetType())
	}
}

func testTypeErrors(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx := context.Background()
	if err := s.Set(ctx, "k", 42); err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("Set int value: %v", err)
	}
	if err := s.Set(ctx, 7, []byte("v")); err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("Set int key: %v", err)
	}
	if _, err := s.Get(ctx, []byte("k")); err == nil || !strings.Contains(err.Error(), "[]uint8") {
		t.Errorf("Get []byte key: %v", err)
	}
	for _, k := range []string{"", strings.Repeat("k", MaxKeyLen+1), "bad\xff", "nul\x00"} {
		if err := s.Set(ctx, k, []byte("v")); err == nil {
			t.Errorf("Set with key %q accepted", k)
		}
	}
	if err := s.Set(ctx, "k", "v", store.WithExpiration(-time.Second)); err == nil {
		t.Error("negative expiration accepted")
	}
	if err := s.Set(ctx, "k", "v", store.WithTags([]string{"x"})); !errors.Is(err, store.ErrNotSupported) {
		t.Errorf("Set with tags: %v", err)
	}
	if err := s.Invalidate(ctx, store.WithInvalidateTags([]string{"x"})); !errors.Is(err, store.ErrNotSupported) {
		t.Errorf("Invalidate with tags: %v", err)
	}
	if err := s.Invalidate(ctx); err != nil {
		t.Errorf("Invalidate without tags: %v", err)
	}
}

func testNotFoundOverwriteDelete(t *testing.T, b backend) {
	s, table := b.open(t, "")
	ctx := context.Background()
	wantNotFound(t, s, "sess:none")
	if _, _, err := s.GetWithTTL(ctx, "sess:none"); !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("GetWithTTL missing: %v", err)
	}
	mustSet(t, s, "sess:a", []byte("one"))
	mustSet(t, s, "sess:a", []byte("two"), store.WithExpiration(time.Hour))
	if _, ttl, _ := s.GetWithTTL(ctx, "sess:a"); ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("ttl = %v", ttl)
	}
	mustSet(t, s, "sess:a", []byte("three")) // overwrite drops the expiry
	if got := mustGet(t, s, "sess:a"); string(got) != "three" {
		t.Fatalf("overwrite: %q", got)
	}
	if _, ttl, _ := s.GetWithTTL(ctx, "sess:a"); ttl != 0 {
		t.Fatalf("ttl after overwrite without expiry = %v", ttl)
	}
	if n := rows(t, s, table); n != 1 {
		t.Fatalf("%d rows after overwrites", n)
	}
	for range 2 {
		if err := s.Delete(ctx, "sess:a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	wantNotFound(t, s, "sess:a")
}

func testNotAliased(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	in := []byte("original")
	mustSet(t, s, "k", in)
	in[0] = 'X'
	a := mustGet(t, s, "k")
	if string(a) != "original" {
		t.Fatalf("stored value changed with the caller's slice: %q", a)
	}
	a[0] = 'Y'
	mustSet(t, s, "k2", bytes.Repeat([]byte{'z'}, 100))
	if c := mustGet(t, s, "k"); string(c) != "original" {
		t.Fatalf("stored value changed through a returned slice: %q", c)
	}
	if string(a) != "Yriginal" {
		t.Fatalf("returned slice changed under the caller: %q", a)
	}
}

func testExpiry(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()
	mustSet(t, s, "short", []byte("v"), store.WithExpiration(time.Second))
	mustSet(t, s, "long", []byte("v"), store.WithExpiration(time.Hour))
	mustSet(t, s, "forever", []byte("v"))
	v, ttl, err := s.GetWithTTL(ctx, "short")
	if err != nil || string(v.([]byte)) != "v" || ttl <= 0 || ttl > time.Second {
		t.Fatalf("GetWithTTL = %v, %v, %v", v, ttl, err)
	}
	time.Sleep(1100 * time.Millisecond)
	wantNotFound(t, s, "short")
	if _, _, err := s.GetWithTTL(ctx, "short"); !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("GetWithTTL expired: %v", err)
	}
	mustGet(t, s, "long")
	mustGet(t, s, "forever")
	if n := rows(t, s, table); n != 3 {
		t.Fatalf("expired row removed without a sweep? %d rows", n)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if n := rows(t, s, table); n != 2 {
		t.Fatalf("after sweep %d rows, want 2", n)
	}
}

func testSweepBatches(t *testing.T, b backend) {
	first, table := b.open(t, "sweep=off")
	s, err := New(first.DB(), b.dialect, Options{Table: table, SweepInterval: -1, SweepBatch: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 30 {
		mustSet(t, s, fmt.Sprintf("k%02d", i), []byte("v"), store.WithExpiration(time.Millisecond))
	}
	mustSet(t, s, "keep", []byte("v"), store.WithExpiration(time.Hour))
	time.Sleep(10 * time.Millisecond)
	n, err := s.Sweep(context.Background())
	if err != nil || n != 30 {
		t.Fatalf("Sweep = %d, %v; want 30", n, err)
	}
	if n := rows(t, s, table); n != 1 {
		t.Fatalf("%d rows left, want 1", n)
	}
}

func testBackgroundSweeper(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=50ms")
	for i := range 20 {
		mustSet(t, s, fmt.Sprintf("k%d", i), []byte("v"), store.WithExpiration(100*time.Millisecond))
	}
	mustSet(t, s, "keep", []byte("v"))
	deadline := time.Now().Add(5 * time.Second)
	for rows(t, s, table) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not remove expired rows: %d left", rows(t, s, table))
		}
		time.Sleep(25 * time.Millisecond)
	}
	mustGet(t, s, "keep")
}

func testCancelledContext(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Set(ctx, "k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set: %v", err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k", nil, []byte("v"), 0); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("CompareAndSwap: %v, %v", ok, err)
	}
	wantNotFound(t, s, "k")
	mustSet(t, s, "k", []byte("v"))
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Clear(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Clear: %v", err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), 0); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("CompareAndSwap: %v, %v", ok, err)
	}
	if got := mustGet(t, s, "k"); string(got) != "v" {
		t.Fatalf("value changed by a cancelled call: %q", got)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.ListKeys(ctx, "", func(string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListKeys: %v", err)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := s.Set(dctx, "k2", []byte("v")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set past deadline: %v", err)
	}
	wantNotFound(t, s, "k2")
	if _, err := Open(ctx, mustURL(t, b.url)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testCompareAndSwap(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx := context.Background()
	cas := func(key string, old, value []byte, ttl time.Duration, want bool) {
		t.Helper()
		ok, err := s.CompareAndSwap(ctx, key, old, value, ttl)
		if err != nil || ok != want {
			t.Fatalf("CompareAndSwap(%q, %q, %q, %v) = %v, %v; want %v", key, old, value, ttl, ok, err, want)
		}
	}
	cas("k", []byte("x"), []byte("v1"), 0, false) // absent, old given
	cas("k", []byte{}, []byte("v1"), 0, false)    // absent, empty old given
	cas("k", nil, []byte("v1"), 0, true)          // absent
	cas("k", nil, []byte("v2"), 0, false)         // present
	cas("k", []byte("v2"), []byte("v3"), 0, false)
	cas("k", []byte("v1"), []byte("v2"), time.Hour, true)
	if got := mustGet(t, s, "k"); string(got) != "v2" {
		t.Fatalf("after CAS: %q", got)
	}
	if _, ttl, _ := s.GetWithTTL(ctx, "k"); ttl <= 0 {
		t.Fatalf("CAS ttl not applied: %v", ttl)
	}
	cas("k", []byte("v2"), []byte("v2"), 0, true) // same value, new expiry
	cas("k", []byte("v2"), []byte("v2"), 0, true) // a write that changes nothing
	if _, ttl, _ := s.GetWithTTL(ctx, "k"); ttl != 0 {
		t.Fatalf("CAS ttl 0 left an expiry: %v", ttl)
	}
	cas("k", []byte("v2"), []byte{}, 0, true)
	cas("k", nil, []byte("x"), 0, false)     // an empty value is present
	cas("k", []byte{}, []byte("e"), 0, true) // empty old matches empty value
	if ok, err := s.SetIfNotExists(ctx, "sine", "v1", store.WithExpiration(time.Hour)); !ok || err != nil {
		t.Fatalf("SetIfNotExists first: %v, %v", ok, err)
	}
	if ok, err := s.SetIfNotExists(ctx, "sine", []byte("v2")); ok || err != nil {
		t.Fatalf("SetIfNotExists second: %v, %v", ok, err)
	}
	// An expired entry counts as absent.
	mustSet(t, s, "e", []byte("old"), store.WithExpiration(20*time.Millisecond))
	time.Sleep(40 * time.Millisecond)
	cas("e", []byte("old"), []byte("new"), 0, false)
	cas("e", nil, []byte("new"), time.Hour, true)
	if got := mustGet(t, s, "e"); string(got) != "new" {
		t.Fatalf("CAS over expired: %q", got)
	}
	// Binary values compare byte for byte.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cas("bin", nil, all, 0, true)
	cas("bin", all[:255], []byte("x"), 0, false)
	cas("bin", all, []byte("x"), 0, true)
}

func testCompareAndSwapRace(t *testing.T, b backend) {
	s, _ := b.open(t, "")
	ctx := context.Background()
	const workers, rounds = 8, 12
	var cur []byte // nil: absent
	for round := range rounds {
		switch round % 4 {
		case 1: // race for an absent key
			if err := s.Delete(ctx, "race"); err != nil {
				t.Fatal(err)
			}
			cur = nil
		case 2: // race for an expired key
			mustSet(t, s, "race", []byte("stale"), store.WithExpiration(time.Millisecond))
			time.Sleep(5 * time.Millisecond)
			cur = nil
		}
		var wins atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				v := fmt.Appendf(nil, "r%d-w%d", round, w)
				ok, err := s.CompareAndSwap(ctx, "race", cur, v, time.Hour)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
				if ok {
					wins.Add(1)
					winner.Store(v)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, n)
		}
		cur = winner.Load().([]byte)
		if got := mustGet(t, s, "race"); !bytes.Equal(got, cur) {
			t.Fatalf("round %d: stored %q, winner wrote %q", round, got, cur)
		}
	}
}

// testConcurrent mixes operations from many goroutines: no SQLITE_BUSY, no
// deadlock errors.
func testConcurrent(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=10ms")
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := fmt.Sprintf("k%d", (w*7+i)%10)
				var err error
				switch i % 4 {
				case 0:
					err = s.Set(ctx, k, []byte("v"), store.WithExpiration(5*time.Millisecond))
				case 1:
					_, err = s.Get(ctx, k)
					if errors.Is(err, &store.NotFound{}) {
						err = nil
					}
				case 2:
					_, err = s.CompareAndSwap(ctx, k, nil, []byte("c"), 0)
				case 3:
					err = s.Delete(ctx, k)
				}
				if err != nil {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testListKeys(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=off")
	ctx := context.Background()
	var want []string
	for i := range pageSize + 44 { // more than one page
		k := fmt.Sprintf("sess:%04d", i)
		want = append(want, k)
		mustSet(t, s, k, []byte("v"))
	}
	mustSet(t, s, "sess:9999", []byte("v"), store.WithExpiration(time.Millisecond))
	mustSet(t, s, "other:1", []byte("v"))
	mustSet(t, s, "sess", []byte("v"))
	mustSet(t, s, "sesz", []byte("v"))
	time.Sleep(5 * time.Millisecond)
	var got []string
	if err := s.ListKeys(ctx, "sess:", func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListKeys returned %d keys (first %v), want %d", len(got), got[:min(3, len(got))], len(want))
	}
	n := 0
	if err := s.ListKeys(ctx, "sess:", func(k string) error { n++; return s.Delete(ctx, k) }); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("deleting walk saw %d keys", n)
	}
	// Byte order, whatever the database's collation.
	order := []string{"p:A", "p:Z", "p:_", "p:a", "p:z", "p:~", "p:é", "p:€"}
	for _, k := range slices.Backward(order) {
		mustSet(t, s, k, []byte("v"))
	}
	got = nil
	_ = s.ListKeys(ctx, "p:", func(k string) error { got = append(got, k); return nil })
	if !slices.Equal(got, order) {
		t.Fatalf("order: %q, want %q", got, order)
	}
	got = nil
	_ = s.ListKeys(ctx, "", func(k string) error { got = append(got, k); return nil })
	if want := append([]string{"other:1"}, append(order, "sess", "sesz")...); !slices.Equal(got, want) {
		t.Fatalf("all keys: %q, want %q", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.ListKeys(ctx, "", func(string) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("ListKeys error: %v after %d calls", err, calls)
	}
}

func testTablesIsolated(t *testing.T, b backend) {
	a, ta := b.open(t, "")
	// A second store on the same database handle, another table.
	c, err := New(a.DB(), b.dialect, Options{Table: ta + "_other", SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustSet(t, a, "k", []byte("from a"))
	mustSet(t, c, "k", []byte("from c"))
	if string(mustGet(t, a, "k")) != "from a" || string(mustGet(t, c, "k")) != "from c" {
		t.Fatal("tables not isolated")
	}
	if err := a.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, a, "k")
	mustGet(t, c, "k")
	mustSet(t, a, "k2", []byte("after clear"))
	// Closing a store made by New leaves the handle open.
	_ = c.Close()
	if err := a.DB().Ping(); err != nil {
		t.Fatalf("New's Close closed the handle: %v", err)
	}
	if err := c.Set(context.Background(), "k", "v"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
}

func testSchemaQualified(t *testing.T, b backend) {
	table := fmt.Sprintf("%s.q%d", b.schema, tableSeq.Add(1))
	s := b.openTable(t, table, "")
	mustSet(t, s, "k", []byte("v"))
	if string(mustGet(t, s, "k")) != "v" || rows(t, s, table) != 1 {
		t.Fatal("schema-qualified table does not work")
	}
}

func testNoCreate(t *testing.T, b backend) {
	u := mustURL(t, b.url+"?table=never_created&create=false&"+b.query)
	if s, err := Open(context.Background(), u); err == nil {
		s.Close()
		t.Fatal("create=false on a missing table succeeded")
	} else if !strings.Contains(err.Error(), "never_created") {
		t.Fatalf("error does not name the table: %v", err)
	}
	if strings.Contains(b.url, ":memory:") {
		return // every Open is a new database
	}
	s, table := b.open(t, "")
	_ = s.Close()
	s2 := b.openTable(t, table, "create=false")
	mustSet(t, s2, "k", []byte("v"))
}

// testConcurrentCreate opens several stores on one new table at once, as
// several servers starting together do.
func testConcurrentCreate(t *testing.T, b backend) {
	table := fmt.Sprintf("cc%d", tableSeq.Add(1))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := mustURL(t, b.url+"?table="+table+"&sweep=off&"+b.query)
			s, err := Open(context.Background(), u)
			if err != nil {
				t.Error(err)
				return
			}
			_ = s.Close()
		}()
	}
	wg.Wait()
}

func testCloseStopsSweeper(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=1ms")
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.DB().Ping(); err == nil {
		t.Fatal("Close of a store made by Open left its handle open")
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

// manyEntries returns n keys (in no particular order) and values of
// varied sizes, the values tagged with round.
func manyEntries(prefix string, n, round int) ([]string, [][]byte) {
	keys := make([]string, n)
	values := make([][]byte, n)
	for i := range n {
		j := (i * 7919) % n // a permutation of 0..n-1: not in key order
		keys[i] = fmt.Sprintf("%s%05d", prefix, j)
		values[i] = fmt.Appendf(bytes.Repeat([]byte{byte(j)}, j%700), "r%d", round)
	}
	return keys, values
}

func wantEntries(t *testing.T, s *Store, keys []string, values [][]byte, ttl time.Duration) {
	t.Helper()
	for i, k := range keys {
		v, got, err := s.GetWithTTL(context.Background(), k)
		if err != nil || !bytes.Equal(v.([]byte), values[i]) {
			t.Fatalf("Get(%q) = %d bytes, %v; want %d bytes", k, len(v.([]byte)), err, len(values[i]))
		}
		if ttl == 0 && got != 0 || ttl != 0 && (got <= ttl-time.Minute || got > ttl) {
			t.Fatalf("Get(%q): ttl %v, want %v", k, got, ttl)
		}
	}
}

func testSetMany(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()
	// 1,000 entries take several statements (512 rows, 333 for SQLite)
	// in one transaction.
	keys, values := manyEntries("m:", 1000, 1)
	if err := s.SetMany(ctx, keys, values, time.Hour); err != nil {
		t.Fatalf("SetMany of %d: %v", len(keys), err)
	}
	wantEntries(t, s, keys, values, time.Hour)
	if n := rows(t, s, table); n != len(keys) {
		t.Fatalf("%d rows, want %d", n, len(keys))
	}
	// A second SetMany overwrites values and TTLs.
	keys, values = manyEntries("m:", 1000, 2)
	if err := s.SetMany(ctx, keys, values, 0); err != nil {
		t.Fatalf("second SetMany: %v", err)
	}
	wantEntries(t, s, keys, values, 0)
	if n := rows(t, s, table); n != len(keys) {
		t.Fatalf("%d rows after overwriting, want %d", n, len(keys))
	}
	// Sizes around the statement bounds (and PostgreSQL's padding), each
	// half new keys, half overwrites.
	for _, n := range []int{1, 2, 3, 255, 256, 257, 333, 334, 511, 512, 513} {
		keys, values := manyEntries("m:", 2*n, 3+n)
		keys, values = keys[n:], values[n:]
		if err := s.SetMany(ctx, keys, values, 2*time.Minute); err != nil {
			t.Fatalf("SetMany of %d: %v", n, err)
		}
		wantEntries(t, s, keys, values, 2*time.Minute)
	}
	// Statements are also cut by size: 6 entries of 300 KiB.
	big := make([][]byte, 6)
	bigKeys := make([]string, 6)
	for i := range big {
		big[i] = bytes.Repeat([]byte{byte('a' + i), 0, '\'', '\\'}, 75<<10)
		bigKeys[i] = fmt.Sprintf("big:%d", i)
	}
	if err := s.SetMany(ctx, bigKeys, big, 0); err != nil {
		t.Fatalf("SetMany of 1.8 MiB: %v", err)
	}
	wantEntries(t, s, bigKeys, big, 0)
	// A key given twice: the last value wins, as with two Sets. A nil
	// value is stored as empty.
	if err := s.SetMany(ctx, []string{"d:b", "d:a", "d:b", "d:nil"}, [][]byte{[]byte("1"), []byte("a"), []byte("2"), nil}, 0); err != nil {
		t.Fatalf("SetMany with a repeated key: %v", err)
	}
	wantEntries(t, s, []string{"d:a", "d:b", "d:nil"}, [][]byte{[]byte("a"), []byte("2"), {}}, 0)
	if err := s.SetMany(ctx, nil, nil, 0); err != nil {
		t.Fatalf("empty SetMany: %v", err)
	}
	// Errors, none of which stores anything.
	before := rows(t, s, table)
	for name, call := range map[string]func() error{
		"mismatched": func() error { return s.SetMany(ctx, []string{"e:1", "e:2"}, [][]byte{nil}, 0) },
		"bad key":    func() error { return s.SetMany(ctx, []string{"e:1", "bad\xff"}, [][]byte{nil, nil}, 0) },
		"negative":   func() error { return s.SetMany(ctx, []string{"e:1"}, [][]byte{nil}, -time.Second) },
	} {
		if err := call(); err == nil || !strings.HasPrefix(err.Error(), "sqlstore: ") {
			t.Errorf("SetMany %s: %v, want an error", name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SetMany(cctx, []string{"e:1"}, [][]byte{nil}, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("SetMany with a cancelled context: %v", err)
	}
	if n := rows(t, s, table); n != before {
		t.Fatalf("failed SetMany calls changed the row count: %d -> %d", before, n)
	}
}

// testSetManyAtomic makes the database refuse the last key of a batch of
// several statements: nothing of the batch is stored.
func testSetManyAtomic(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()
	var ddl string
	switch b.dialect {
	case SQLite:
		ddl = fmt.Sprintf(`CREATE TRIGGER %s_refuse BEFORE INSERT ON %s WHEN NEW."key" = 'z:refused' BEGIN SELECT RAISE(ABORT, 'refused'); END`, table, table)
	case MySQL:
		ddl = fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s_refuse CHECK (`key` <> 'z:refused')", table, table)
	default:
		ddl = fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s_refuse CHECK ("key" <> 'z:refused')`, table, table)
	}
	if _, err := s.DB().ExecContext(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 1000} { // one statement; several
		keys, values := manyEntries("m:", n, 1)
		keys[n/2] = "z:refused" // sorts last
		err := s.SetMany(ctx, keys, values, 0)
		if err == nil || !strings.Contains(err.Error(), "SetMany") {
			t.Fatalf("SetMany of %d including a refused key: %v, want an error", n, err)
		}
		if got := rows(t, s, table); got != 0 {
			t.Fatalf("SetMany of %d failed but stored %d rows", n, got)
		}
	}
}

// ---- without a database ----

func TestRegistered(t *testing.T) {
	for _, scheme := range []string{"postgres", "postgresql", "mysql", "sqlite"} {
		if !slices.Contains(driver.Schemes(), scheme) {
			t.Errorf("scheme %s not registered: %v", scheme, driver.Schemes())
		}
	}
}

func TestSQLiteMemorySingleDatabase(t *testing.T) {
	// Many goroutines on one :memory: store see one database.
	a := backend{dialect: SQLite, url: "sqlite://:memory:"}
	s, _ := a.open(t, "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Set(context.Background(), fmt.Sprint(i), "v"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 8 {
		mustGet(t, s, fmt.Sprint(i))
	}
	// Another :memory: store is another database.
	s2, _ := a.open(t, "")
	wantNotFound(t, s2, "0")
}

func TestMySQLConfig(t *testing.T) {
	for raw, want := range map[string]string{
		"mysql://u:p%40ss@db.example:3307/app?table=x&tls=false": "u:p@ss@tcp(db.example:3307)/app",
		"mysql://root@127.0.0.1/app":                             "root@tcp(127.0.0.1:3306)/app",
		"mysql://[::1]:3310/app":                                 "tcp([::1]:3310)/app",
		"mysql://u@/app?socket=/run/mysqld/mysqld.sock":          "u@unix(/run/mysqld/mysqld.sock)/app",
	} {
		u := mustURL(t, raw)
		_, rest, err := splitOptions(u.Query())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := mysqlConfig(u, rest)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := cfg.FormatDSN(); !strings.HasPrefix(got, want) || !cfg.InterpolateParams {
			t.Errorf("%s -> %s, want prefix %s and interpolateParams", raw, got, want)
		}
		if strings.Contains(cfg.FormatDSN(), "table=") {
			t.Errorf("%s: own option passed to the driver: %s", raw, cfg.FormatDSN())
		}
	}
	u := mustURL(t, "mysql://u@h/db?interpolateParams=false&readTimeout=2s")
	_, rest, _ := splitOptions(u.Query())
	cfg, err := mysqlConfig(u, rest)
	if err != nil || cfg.InterpolateParams || cfg.ReadTimeout != 2*time.Second {
		t.Errorf("driver parameters not applied: %+v, %v", cfg, err)
	}
	for _, raw := range []string{"mysql://h/db?parseTime=maybe", "mysql://h/a/b", "mysql://h/db?socket=/x"} {
		u := mustURL(t, raw)
		_, rest, _ := splitOptions(u.Query())
		if _, err := mysqlConfig(u, rest); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

func TestSQLiteDSN(t *testing.T) {
	for raw, want := range map[string]string{
		"sqlite:///abs/s.db":                 "/abs/s.db?",
		"sqlite://rel/s.db":                  "rel/s.db?",
		"sqlite://s.db":                      "s.db?",
		"sqlite:s.db":                        "s.db?",
		"sqlite://:memory:":                  ":memory:?",
		"sqlite::memory:":                    ":memory:?",
		"sqlite:///a%20b/s.db?_pragma=x(1)":  "/a b/s.db?",
		"sqlite:///s.db?busy_timeout=250ms":  "/s.db?",
		"sqlite:///s.db?_txlock=deferred&a=": "/s.db?",
	} {
		u := mustURL(t, raw)
		own, rest, err := splitOptions(u.Query())
		if err != nil {
			t.Fatal(err)
		}
		dsn, memory, err := sqliteDSN(u, rest, own.busyTimeout)
		if err != nil || !strings.HasPrefix(dsn, want) {
			t.Errorf("%s -> %q, %v; want prefix %q", raw, dsn, err, want)
			continue
		}
		q, _ := url.ParseQuery(dsn[len(want):])
		if memory != strings.Contains(raw, ":memory:") {
			t.Errorf("%s: memory = %v", raw, memory)
		}
		if wal := slices.Contains(q["_pragma"], "journal_mode(WAL)"); wal == memory {
			t.Errorf("%s: WAL = %v for memory = %v", raw, wal, memory)
		}
		busy := "busy_timeout(5000)"
		if strings.Contains(raw, "250ms") {
			busy = "busy_timeout(250)"
		}
		if !slices.Contains(q["_pragma"], busy) {
			t.Errorf("%s: no %s in %q", raw, busy, dsn)
		}
		if strings.Contains(raw, "_txlock=deferred") != (q.Get("_txlock") == "deferred") {
			t.Errorf("%s: _txlock %q", raw, q.Get("_txlock"))
		}
	}
	for _, raw := range []string{"sqlite://", "sqlite:///", "sqlite:///dir/", "sqlite:///a%3Fb.db", "sqlite:file:x.db"} {
		u := mustURL(t, raw)
		if _, _, err := sqliteDSN(u, url.Values{}, time.Second); err == nil {
			t.Errorf("%s accepted", raw)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, raw := range []string{
		"sqlite://:memory:?sweep=fast",
		"sqlite://:memory:?table=a-b",
		"sqlite://:memory:?table=a.b.c",
		"sqlite://:memory:?create=perhaps",
		"sqlite://:memory:?busy_timeout=-1s",
		"sqlite://:memory:?table=a&table=b",
		"oracle://db/x",
	} {
		if s, err := Open(context.Background(), mustURL(t, raw)); err == nil {
			s.Close()
			t.Errorf("%s accepted", raw)
		}
	}
	if _, err := New(nil, SQLite, Options{}); err == nil {
		t.Error("New(nil) accepted")
	}
}

func TestSetManyChunks(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		for _, sizes := range [][]int{
			{10},
			slices.Repeat([]int{400}, 1000),
			{maxManyBytes + 1, 5, maxManyBytes - 10, 10, 1},
			slices.Repeat([]int{300 << 10}, 7),
		} {
			keys := make([]string, len(sizes))
			values := make([][]byte, len(sizes))
			order := make([]int, len(sizes))
			for i, n := range sizes {
				keys[i], values[i], order[i] = "k", make([]byte, n-1), i
			}
			var got []int
			for _, c := range d.chunks(keys, values, order) {
				got = append(got, c...)
				bytes := 0
				for _, i := range c {
					bytes += sizes[i]
				}
				if len(c) == 0 || len(c) > d.manyRows() || len(c) > 1 && bytes > maxManyBytes {
					t.Errorf("%v: a chunk of %d entries, %d bytes", d, len(c), bytes)
				}
			}
			if !slices.Equal(got, order) {
				t.Errorf("%v: chunks do not cover the entries in order", d)
			}
		}
		// The largest statement stays within every limit on parameters.
		query := d.upsertMany(`"t"`, d.manySize(d.manyRows()))
		params := strings.Count(query, "?") + strings.Count(query, "$")
		if limit := map[Dialect]int{Postgres: 65535, MySQL: 65535, SQLite: 999}[d]; params > limit || params < 2*d.manyRows() {
			t.Errorf("%v: %d parameters in the largest statement", d, params)
		}
	}
	for n, want := range map[int]int{1: 1, 2: 2, 3: 4, 256: 256, 257: 512, 512: 512} {
		if got := Postgres.manySize(n); got != want {
			t.Errorf("Postgres.manySize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestDDL(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		stmts, err := DDL(d, "")
		if err != nil || len(stmts) == 0 || !strings.Contains(stmts[0], "CREATE TABLE IF NOT EXISTS") ||
			!strings.Contains(strings.Join(stmts, ";"), "sessions_expires_at_idx") {
			t.Errorf("%v: %q, %v", d, stmts, err)
		}
	}
	if _, err := DDL(Dialect(9), "x"); err == nil {
		t.Error("unknown dialect accepted")
	}
	if _, err := DDL(Postgres, "x; DROP TABLE y"); err == nil {
		t.Error("bad table name accepted")
	}
}

// TestUnknownOptions: a parameter that is neither this package's nor one
// the database driver understands fails Open with an error naming it and
// listing the known ones, before any connection is tried.
func TestUnknownOptions(t *testing.T) {
	for _, tc := range []struct{ raw, bad, known string }{
		{"sqlite://" + filepath.Join(t.TempDir(), "u.db") + "?tabel=web", `"tabel"`, "_pragma"},
		{"sqlite://:memory:?table=web&Table=x", `"Table"`, "busy_timeout"},
		{"postgres://u@127.0.0.1:1/db?sslmode=disable&tabel=web", `"tabel"`, "sslmode"},
		{"mysql://u@127.0.0.1:1/db?tabel=web&parseTime=true", `"tabel"`, "parseTime"},
		{"mysql://u@127.0.0.1:1/db?bogus=1&tabel=web", `"bogus", "tabel"`, "readTimeout"},
	} {
		s, err := Open(context.Background(), mustURL(t, tc.raw))
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", tc.raw)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "unknown option") || !strings.Contains(msg, tc.bad) ||
			!strings.Contains(msg, "table, sweep, create, busy_timeout") || !strings.Contains(msg, tc.known) {
			t.Errorf("%s: error %q does not name %s and list the known options", tc.raw, msg, tc.bad)
		}
		if errors.Is(err, sessdriver.ErrUnreachable) {
			t.Errorf("%s: an option error wraps ErrStorageUnreachable", tc.raw)
		}
	}
	// Known driver parameters still pass, PostgreSQL ones in any case.
	for _, tc := range []struct{ scheme, q string }{
		{"sqlite", "_pragma=foreign_keys(1)&_txlock=deferred"},
		{"postgres", "sslmode=disable&Application_Name=x&options=-c%20work_mem%3D8MB"},
		{"mysql", "socket=/x&tls=false&time_zone=%27%2B00%3A00%27"},
	} {
		if err := checkDriverParams(tc.scheme, mustURL(t, "x://h/?"+tc.q).Query()); err != nil {
			t.Errorf("%s %s: %v", tc.scheme, tc.q, err)
		}
	}
}

// TestUnreachable: a database server that is down makes Open fail with an
// error wrapping sessdriver.ErrUnreachable and keeping the driver's
// text; a server that answers but refuses the database does not.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	wantUnreachable := func(t *testing.T, raw, text string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := Open(ctx, mustURL(t, raw))
		if err == nil {
			s.Close()
			t.Fatalf("%s: opened", raw)
		}
		if !errors.Is(err, sessdriver.ErrUnreachable) {
			t.Errorf("%s: %v does not wrap ErrStorageUnreachable", raw, err)
		}
		if !strings.Contains(err.Error(), text) {
			t.Errorf("%s: %v lost the driver's text %q", raw, err, text)
		}
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		srv := testservers.Postgres(t)
		raw := srv.URL()
		srv.Stop(t)
		wantUnreachable(t, raw, "connection refused")
	})
	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		srv := testservers.MariaDB(t)
		raw := srv.URL()
		srv.Stop(t)
		wantUnreachable(t, raw, "connection refused")
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		// A listener that accepts and never answers: the server is hung.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		defer func() {
			ln.Close()
			<-done
			for _, c := range conns {
				c.Close()
			}
		}()
		wantUnreachable(t, "postgres://u@"+ln.Addr().String()+"/db?sslmode=disable&connect_timeout=1", "timeout")
		wantUnreachable(t, "mysql://u@"+ln.Addr().String()+"/db?timeout=1s&readTimeout=1s", "timeout")
	})
	t.Run("wrong database", func(t *testing.T) {
		t.Parallel()
		for _, srv := range []*testservers.Server{testservers.SharedPostgres(t), testservers.SharedMariaDB(t)} {
			u := mustURL(t, srv.URL())
			u.Path = "/no_such_db"
			s, err := Open(context.Background(), u)
			if err == nil {
				s.Close()
				t.Fatalf("%s: opened", u.Redacted())
			}
			if errors.Is(err, sessdriver.ErrUnreachable) {
				t.Errorf("%s: %v wraps ErrStorageUnreachable", u.Redacted(), err)
			}
		}
	})
}
