package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/eko/gocache/lib/v4/store"
	"go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openURL(t *testing.T, raw string) *Store {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), u)
	if err != nil {
		t.Fatalf("Open(%s): %v", raw, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTemp(t *testing.T, query string) *Store {
	t.Helper()
	return openURL(t, "bolt://"+filepath.ToSlash(filepath.Join(t.TempDir(), "s.db"))+query)
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

// rawCount counts the entries physically present in the store's buckets.
func rawCount(t *testing.T, s *Store) (data, index int) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		d, x, _ := s.buckets(tx)
		data, index = d.Stats().KeyN, x.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return data, index
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(driver.Schemes(), "bolt") {
		t.Fatalf("scheme bolt not registered: %v", driver.Schemes())
	}
	if got := newTemp(t, "").GetType(); got != "bolt" {
		t.Fatalf("GetType = %q", got)
	}
}

func TestRoundTrip(t *testing.T) {
	s := newTemp(t, "")
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
	}
	for k, v := range cases {
		mustSet(t, s, k, v)
	}
	for k, v := range cases {
		got := mustGet(t, s, k)
		if !bytes.Equal(got, v) || got == nil {
			t.Errorf("%s: got %d bytes (nil=%v), want %d", k, len(got), got == nil, len(v))
		}
	}
	mustSet(t, s, "sess:str", "a string")
	if got := mustGet(t, s, "sess:str"); string(got) != "a string" {
		t.Errorf("string value: got %q", got)
	}
	// nil []byte stores an empty value.
	mustSet(t, s, "sess:nil", []byte(nil))
	if got := mustGet(t, s, "sess:nil"); got == nil || len(got) != 0 {
		t.Errorf("nil value: got %#v", got)
	}
}

func TestTypeErrors(t *testing.T) {
	s := newTemp(t, "")
	ctx := context.Background()
	err := s.Set(ctx, "k", 42)
	if err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("Set int value: %v", err)
	}
	err = s.Set(ctx, 7, []byte("v"))
	if err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("Set int key: %v", err)
	}
	if _, err := s.Get(ctx, []byte("k")); err == nil || !strings.Contains(err.Error(), "[]uint8") {
		t.Errorf("Get []byte key: %v", err)
	}
	if err := s.Set(ctx, "", []byte("v")); err == nil {
		t.Error("Set with an empty key succeeded")
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

func TestNotFoundOverwriteDelete(t *testing.T) {
	s := newTemp(t, "")
	ctx := context.Background()
	wantNotFound(t, s, "sess:none")
	if _, _, err := s.GetWithTTL(ctx, "sess:none"); !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("GetWithTTL missing: %v", err)
	}
	mustSet(t, s, "sess:a", []byte("one"))
	mustSet(t, s, "sess:a", []byte("two"), store.WithExpiration(time.Hour))
	mustSet(t, s, "sess:a", []byte("three")) // overwrite drops the expiry
	if got := mustGet(t, s, "sess:a"); string(got) != "three" {
		t.Fatalf("overwrite: %q", got)
	}
	if _, ttl, _ := s.GetWithTTL(ctx, "sess:a"); ttl != 0 {
		t.Fatalf("ttl after overwrite without expiry = %v", ttl)
	}
	if d, x := rawCount(t, s); d != 1 || x != 0 {
		t.Fatalf("raw counts after overwrite = %d, %d; want 1, 0", d, x)
	}
	for range 2 {
		if err := s.Delete(ctx, "sess:a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	wantNotFound(t, s, "sess:a")
}

func TestNotAliased(t *testing.T) {
	s := newTemp(t, "")
	in := []byte("original")
	mustSet(t, s, "k", in)
	in[0] = 'X'
	a := mustGet(t, s, "k")
	if string(a) != "original" {
		t.Fatalf("stored value changed with the caller's slice: %q", a)
	}
	a[0] = 'Y'
	// Writes that may reuse pages must not show through either.
	for i := range 50 {
		mustSet(t, s, fmt.Sprintf("other%d", i), bytes.Repeat([]byte{'z'}, 1000))
	}
	if b := mustGet(t, s, "k"); string(b) != "original" {
		t.Fatalf("stored value changed through a returned slice: %q", b)
	}
	if string(a) != "Yriginal" {
		t.Fatalf("returned slice changed under the caller: %q", a)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	s := newTemp(t, "?sweep=off")
	ctx := context.Background()
	mustSet(t, s, "short", []byte("v"), store.WithExpiration(time.Second))
	mustSet(t, s, "long", []byte("v"), store.WithExpiration(time.Hour))
	mustSet(t, s, "forever", []byte("v"))
	v, ttl, err := s.GetWithTTL(ctx, "short")
	if err != nil || string(v.([]byte)) != "v" || ttl <= 0 || ttl > time.Second {
		t.Fatalf("GetWithTTL = %v, %v, %v", v, ttl, err)
	}
	if _, ttl, _ := s.GetWithTTL(ctx, "long"); ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("long ttl = %v", ttl)
	}
	time.Sleep(1100 * time.Millisecond)
	wantNotFound(t, s, "short")
	mustGet(t, s, "long")
	mustGet(t, s, "forever")
	if d, _ := rawCount(t, s); d != 3 {
		t.Fatalf("expired entry removed without a sweep? %d entries", d)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if d, x := rawCount(t, s); d != 2 || x != 1 {
		t.Fatalf("after sweep raw = %d, %d; want 2, 1", d, x)
	}
}

func TestSweepBatches(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "b.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := NewFromDB(db, Options{SweepInterval: -1, SweepBatch: 7})
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
	if d, x := rawCount(t, s); d != 1 || x != 1 {
		t.Fatalf("raw = %d, %d", d, x)
	}
}

func TestBackgroundSweeper(t *testing.T) {
	t.Parallel()
	s := newTemp(t, "?sweep=50ms")
	for i := range 20 {
		mustSet(t, s, fmt.Sprintf("k%d", i), []byte("v"), store.WithExpiration(100*time.Millisecond))
	}
	mustSet(t, s, "keep", []byte("v"))
	deadline := time.Now().Add(3 * time.Second)
	for {
		d, x := rawCount(t, s)
		if d == 1 && x == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper did not remove expired entries: %d left", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustGet(t, s, "keep")
}

func TestCancelledContext(t *testing.T) {
	s := newTemp(t, "")
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
	mustGet(t, s, "k")
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
}

func TestCompareAndSwap(t *testing.T) {
	s := newTemp(t, "")
	ctx := context.Background()
	cas := func(key string, old, value []byte, ttl time.Duration, want bool) {
		t.Helper()
		ok, err := s.CompareAndSwap(ctx, key, old, value, ttl)
		if err != nil || ok != want {
			t.Fatalf("CompareAndSwap(%q, %q, %q) = %v, %v; want %v", key, old, value, ok, err, want)
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
	cas("k", []byte("v2"), []byte("v2"), 0, true) // same value is still a success
	cas("k", []byte("v2"), []byte{}, 0, true)
	cas("k", nil, []byte("x"), 0, false)     // empty value is present
	cas("k", []byte{}, []byte("e"), 0, true) // empty old matches empty value
	if _, ttl, _ := s.GetWithTTL(ctx, "k"); ttl != 0 {
		t.Fatalf("CAS ttl 0 left an expiry: %v", ttl)
	}
	// An expired entry counts as absent.
	mustSet(t, s, "e", []byte("old"), store.WithExpiration(20*time.Millisecond))
	time.Sleep(40 * time.Millisecond)
	cas("e", []byte("old"), []byte("new"), 0, false)
	cas("e", nil, []byte("new"), 0, true)
	if got := mustGet(t, s, "e"); string(got) != "new" {
		t.Fatalf("CAS over expired: %q", got)
	}
	if _, x := rawCount(t, s); x != 0 {
		t.Fatalf("index keeps %d stale records", x)
	}
}

func TestSetIfNotExists(t *testing.T) {
	s := newTemp(t, "")
	ctx := context.Background()
	if ok, err := s.SetIfNotExists(ctx, "k", "v1", store.WithExpiration(time.Hour)); !ok || err != nil {
		t.Fatalf("first: %v, %v", ok, err)
	}
	if ok, err := s.SetIfNotExists(ctx, "k", []byte("v2")); ok || err != nil {
		t.Fatalf("second: %v, %v", ok, err)
	}
	if _, err := s.SetIfNotExists(ctx, "k", 3); err == nil {
		t.Fatal("int value accepted")
	}
	if got := mustGet(t, s, "k"); string(got) != "v1" {
		t.Fatalf("got %q", got)
	}
}

func TestCompareAndSwapRace(t *testing.T) {
	s := newTemp(t, "")
	raceCAS(t, s)
}

func raceCAS(t *testing.T, s *Store) {
	ctx := context.Background()
	const workers, rounds = 8, 25
	var cur []byte // nil: absent
	for round := range rounds {
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

func TestListKeys(t *testing.T) {
	t.Parallel()
	s := newTemp(t, "?sweep=off")
	ctx := context.Background()
	var want []string
	for i := range 600 { // more than one page
		k := fmt.Sprintf("sess:%04d", i)
		want = append(want, k)
		mustSet(t, s, k, []byte("v"))
	}
	mustSet(t, s, "sess:9999", []byte("v"), store.WithExpiration(time.Millisecond))
	mustSet(t, s, "other:1", []byte("v"))
	mustSet(t, s, "sess", []byte("v")) // shorter than the prefix
	mustSet(t, s, "sesz", []byte("v"))
	time.Sleep(5 * time.Millisecond)
	var got []string
	if err := s.ListKeys(ctx, "sess:", func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListKeys returned %d keys (first %v), want %d", len(got), got[:min(3, len(got))], len(want))
	}
	// The callback may use the store: delete every key as it is listed.
	n := 0
	if err := s.ListKeys(ctx, "sess:", func(k string) error { n++; return s.Delete(ctx, k) }); err != nil {
		t.Fatal(err)
	}
	if n != 600 {
		t.Fatalf("deleting walk saw %d keys", n)
	}
	got = nil
	_ = s.ListKeys(ctx, "", func(k string) error { got = append(got, k); return nil })
	if !slices.Equal(got, []string{"other:1", "sess", "sesz"}) {
		t.Fatalf("after deletes: %v", got)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.ListKeys(ctx, "", func(string) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("ListKeys error: %v after %d calls", err, calls)
	}
}

func TestBucketsIsolated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openURL(t, "bolt://"+path+"?bucket=a")
	b := openURL(t, "bolt://"+path+"?bucket=b")
	if a.db != b.db {
		t.Fatal("two stores on one file got two handles")
	}
	// The application's own bucket in the same file.
	if err := a.db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("app"))
		if err != nil {
			return err
		}
		return bk.Put([]byte("k"), []byte("app data"))
	}); err != nil {
		t.Fatal(err)
	}
	mustSet(t, a, "k", []byte("from a"))
	mustSet(t, b, "k", []byte("from b"))
	if string(mustGet(t, a, "k")) != "from a" || string(mustGet(t, b, "k")) != "from b" {
		t.Fatal("buckets not isolated")
	}
	if err := a.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, a, "k")
	mustGet(t, b, "k")
	_ = a.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket([]byte("app")).Get([]byte("k")); string(v) != "app data" {
			t.Errorf("Clear touched another bucket: %q", v)
		}
		return nil
	})
	mustSet(t, a, "k2", []byte("after clear"))
}

func TestSharedFileRefcount(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rc.db")
	link := filepath.Join(dir, "link.db")
	canon := canonical(path)

	a := openURL(t, "bolt://"+path)
	mustSet(t, a, "k", []byte("v"))
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	// A relative spelling, through a symbolic link, with a different bucket.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, link)
	if err != nil {
		t.Fatal(err)
	}
	b := openURL(t, "bolt:"+filepath.ToSlash(rel))
	c := openURL(t, "bolt://"+path+"?bucket=other")
	if OpenFiles()[canon] != 3 {
		t.Fatalf("refcount = %v, want 3 for %s", OpenFiles(), canon)
	}
	if string(mustGet(t, b, "k")) != "v" {
		t.Fatal("second store does not see the first one's data")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil { // idempotent, no double release
		t.Fatal(err)
	}
	if _, err := a.Get(context.Background(), "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if OpenFiles()[canon] != 2 {
		t.Fatalf("refcount after one close = %v", OpenFiles())
	}
	mustSet(t, b, "k2", []byte("still open"))
	_ = b.Close()
	_ = c.Close()
	if _, open := OpenFiles()[canon]; open {
		t.Fatalf("file still registered after last close: %v", OpenFiles())
	}
	// The file lock is released: a plain bbolt open succeeds at once.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("file still locked after last close: %v", err)
	}
	_ = db.Close()
	d := openURL(t, "bolt://"+path)
	if string(mustGet(t, d, "k2")) != "still open" {
		t.Fatal("data lost across reopen")
	}
}

func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	// A handle the registry does not know about stands in for another process.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, _ := url.Parse("bolt://" + path + "?timeout=100ms")
	start := time.Now()
	_, err = Open(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !errors.Is(err, bbolt.ErrTimeout) {
		t.Fatalf("Open of a locked file: %v", err)
	}
	// A lock held by another process is what a restart overlap looks
	// like: the storage is valid but unreachable for now.
	if !errors.Is(err, driver.ErrUnreachable) {
		t.Errorf("%v does not wrap driver.ErrUnreachable", err)
	}
	// The message names the ways out: stop the app, work from inside it,
	// or wait longer for the lock at a restart.
	for _, want := range []string{"stop the application", "admin page", "timeout option", "?timeout=", "waited 100ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("Open took %v", time.Since(start))
	}
	if len(OpenFiles()) != 0 {
		t.Fatalf("failed open left %v registered", OpenFiles())
	}
}

func TestURLs(t *testing.T) {
	wd, _ := os.Getwd()
	for raw, want := range map[string]string{
		"bolt:///abs/dir/f.db":    "/abs/dir/f.db",
		"bolt://rel/dir/f.db":     filepath.Join(wd, "rel/dir/f.db"),
		"bolt://f.db":             filepath.Join(wd, "f.db"),
		"bolt:rel/f.db":           filepath.Join(wd, "rel/f.db"),
		"bolt:///a/b/../c%20d.db": "/a/c d.db",
	} {
		u, _ := url.Parse(raw)
		got, err := pathOf(u)
		if err != nil || got != want {
			t.Errorf("pathOf(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"bolt://", "bolt:///", "bolt:///dir/", "bolt://u:p@host/x.db"} {
		u, _ := url.Parse(raw)
		if _, err := pathOf(u); err == nil {
			t.Errorf("pathOf(%s) accepted", raw)
		}
	}
	dir := t.TempDir()
	for _, q := range []string{"?bogus=1", "?sweep=fast", "?timeout=0", "?mode=999", "?bucket=", "?bucket=a&bucket=b"} {
		u, _ := url.Parse("bolt://" + dir + "/x.db" + q)
		if s, err := Open(context.Background(), u); err == nil {
			s.Close()
			t.Errorf("Open with %s accepted", q)
		}
	}
	// An unknown option is named, with the known ones listed.
	u, _ := url.Parse("bolt://" + dir + "/x.db?buckett=web")
	if _, err := Open(context.Background(), u); err == nil ||
		!strings.Contains(err.Error(), `unknown option "buckett"`) ||
		!strings.Contains(err.Error(), "bucket, mode, sweep, timeout") ||
		errors.Is(err, driver.ErrUnreachable) {
		t.Errorf("Open with an unknown option: %v", err)
	}
	u, _ = url.Parse("bolt://" + dir + "/nodir/x.db")
	if _, err := Open(context.Background(), u); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open in a missing directory: %v", err)
	}
	s := openURL(t, "bolt://"+dir+"/m.db?mode=0640&sweep=off&timeout=2s&bucket=x")
	if fi, err := os.Stat(dir + "/m.db"); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode: %v %v", fi.Mode(), err)
	}
	_ = s
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, u); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context: %v", err)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := NewFromDB(db, Options{SweepInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// NewFromDB leaves the caller's handle open.
	if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		t.Fatalf("caller's DB closed by Store.Close: %v", err)
	}
	if err := s.Set(context.Background(), "k", "v"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
}
