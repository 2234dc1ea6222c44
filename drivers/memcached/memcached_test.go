package memcached

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/eko/gocache/lib/v4/store"
	"go.uber.org/goleak"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// ignoreTestservers ignores the goroutine testservers keeps for the whole
// process (servers are forked from one locked thread).
var ignoreTestservers = testservers.LeakCheckOptions()

func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	if code == 0 {
		if err := goleak.Find(ignoreTestservers...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func mustParse(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func openURL(t testing.TB, raw string) *Store {
	t.Helper()
	s, err := Open(context.Background(), mustParse(t, raw))
	if err != nil {
		t.Fatalf("Open(%s): %v", raw, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// sharedStore returns a store on the shared server and a key prefix unique
// to the test (memcached has no namespaces).
func sharedStore(t testing.TB) (*Store, string) {
	t.Helper()
	s := openURL(t, testservers.SharedMemcached(t).URL())
	return s, fmt.Sprintf("%s:%d:", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
}

func getBytes(t testing.TB, s *Store, key string) ([]byte, error) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	b, ok := v.([]byte)
	if !ok {
		t.Fatalf("Get(%s) returned a %T, want []byte", key, v)
	}
	return b, nil
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(driver.Schemes(), "memcached") {
		t.Errorf("scheme memcached not registered; have %v", driver.Schemes())
	}
}

func TestParseURL(t *testing.T) {
	// url.Parse accepts a comma-separated server list in the host part.
	for raw, want := range map[string][]string{
		"memcached://h1:11211,h2:11212?timeout=500ms":  {"h1:11211", "h2:11212"},
		"memcached://h1,h2":                            {"h1:11211", "h2:11211"},
		"memcached://10.0.0.1,10.0.0.2:2/":             {"10.0.0.1:11211", "10.0.0.2:2"},
		"memcached://[::1]:5?addr=[::1]:6&addr=h3":     {"[::1]:5", "[::1]:6", "h3:11211"},
		"memcached://[::1]":                            {"[::1]:11211"},
		"MEMCACHED://h1:1?max_idle=9&max_item=2000000": {"h1:1"},
	} {
		c, err := parseURL(mustParse(t, raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if !slices.Equal(c.servers, want) {
			t.Errorf("%s: servers %v, want %v", raw, c.servers, want)
		}
	}
	// Go's URL parser limits the host part: a bracketed IPv6 address only
	// first, and the text after the last colon must be a port (the
	// documented reasons for addr=).
	for _, raw := range []string{"memcached://h2:1,[::1]:2", "memcached://h1:11211,", "memcached://h1:x,h2", "memcached://h1:1,h2"} {
		if _, err := url.Parse(raw); err == nil {
			t.Errorf("url.Parse(%q) now succeeds; update the package documentation", raw)
		}
	}
	c, err := parseURL(mustParse(t, "memcached://h?timeout=2s&max_idle=9&max_item=2000000"))
	if err != nil || c.timeout != 2*time.Second || c.maxIdle != 9 || c.maxItem != 2000000 {
		t.Errorf("options: %+v, %v", c, err)
	}
	c, err = parseURL(mustParse(t, "memcached://h"))
	if err != nil || c.timeout != memcache.DefaultTimeout || c.maxIdle != memcache.DefaultMaxIdleConns || c.maxItem != DefaultMaxItem {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

func TestOpenBadURLs(t *testing.T) {
	addr := testservers.SharedMemcached(t).Addr()
	for raw, want := range map[string]string{
		"memcached://" + addr + "?foo=1":           "unknown option foo; known: addr, max_idle, max_item, timeout",
		"memcached://" + addr + "?foo=1&Timeout=1": "unknown option Timeout, foo;",
		"memcached://" + addr + "?timeout=fast":    `timeout="fast"`,
		"memcached://" + addr + "?timeout=0s":      `timeout="0s"`,
		"memcached://" + addr + "?max_idle=0":      `max_idle="0"`,
		"memcached://" + addr + "?max_item=10":     `max_item="10"`,
		"memcached://user:pw@" + addr:              "no authentication",
		"memcached://" + addr + "/db":              "has a path",
		"memcached://":                             "names no server",
		"memcached://," + addr:                     "empty server",
		"memcached://h1:x,h2:1":                    "bad port",
		"memcached://h:70000":                      "bad port",
		"memcached:opaque":                         "not of the form",
		"redis://" + addr:                          `scheme "redis"`,
		"memcached://127.0.0.1:1":                  "cannot reach servers 127.0.0.1:1",
		"memcached://" + addr + ",127.0.0.1:1":     "cannot reach servers " + addr + ",127.0.0.1:1",
	} {
		t.Run(raw, func(t *testing.T) {
			start := time.Now()
			s, err := Open(context.Background(), mustParse(t, raw))
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("error %q reveals the password", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, mustParse(t, "memcached://"+addr)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestOpenTwoServers(t *testing.T) {
	a, b := testservers.SharedMemcached(t), testservers.Memcached(t)
	s := openURL(t, "memcached://"+a.Addr()+","+b.Addr()+"?timeout=1s&max_idle=4")
	if s.GetType() != "memcached" {
		t.Errorf("GetType = %q", s.GetType())
	}
	ctx := context.Background()
	onB := 0
	direct := memcache.New(b.Addr())
	defer direct.Close()
	prefix := fmt.Sprintf("two:%d:", time.Now().UnixNano())
	for i := range 50 {
		k := fmt.Sprintf("%s%d", prefix, i)
		if err := s.Set(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
		if got, err := getBytes(t, s, k); err != nil || string(got) != k {
			t.Fatalf("%s: %q, %v", k, got, err)
		}
		if _, err := direct.Get(k); err == nil {
			onB++
		}
	}
	if onB == 0 || onB == 50 {
		t.Errorf("%d of 50 keys on the second server; want them spread", onB)
	}
}

func TestRoundTrip(t *testing.T) {
	s, p := sharedStore(t)
	ctx := context.Background()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values := map[string][]byte{
		"empty": {}, "all-bytes": all, "64KiB": bytes.Repeat([]byte("0123456789abcdef"), 4096), "text": []byte("hi"),
	}
	for name, v := range values {
		key := p + name
		if err := s.Set(ctx, key, v); err != nil {
			t.Fatalf("Set %s: %v", name, err)
		}
		got, err := getBytes(t, s, key)
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("%s: got %d bytes (%v), want %d", name, len(got), err, len(v))
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete %s: %v", name, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, &store.NotFound{}) {
			t.Errorf("after Delete %s: %v, want NotFound", name, err)
		}
	}
	if _, err := s.Get(ctx, p+"never"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("missing key: %v, want NotFound", err)
	}
	if _, _, err := s.GetWithTTL(ctx, p+"never"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("GetWithTTL of a missing key: %v, want NotFound", err)
	}
	if err := s.Delete(ctx, p+"never"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	// A string value is accepted (gocache's Set would panic); Get gives []byte.
	if err := s.Set(ctx, p+"str", "text"); err != nil {
		t.Fatal(err)
	}
	if got, err := getBytes(t, s, p+"str"); err != nil || string(got) != "text" {
		t.Errorf("string value: %q, %v", got, err)
	}
	// Other types and non-string keys are errors, not panics.
	if err := s.Set(ctx, p+"int", 42); err == nil || !strings.Contains(err.Error(), "int") {
		t.Errorf("int value: %v", err)
	}
	if err := s.Set(ctx, 42, []byte("x")); err == nil {
		t.Error("int key accepted by Set")
	}
	if _, err := s.Get(ctx, 42); err == nil {
		t.Error("int key accepted by Get")
	}
	if err := s.Delete(ctx, 42); err == nil {
		t.Error("int key accepted by Delete")
	}
}

func TestExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 250_000_000)
	for _, c := range []struct {
		ttl  time.Duration
		want int32
	}{
		{0, 0},
		{time.Nanosecond, 1},
		{500 * time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{30 * 24 * time.Hour, 30 * 24 * 3600}, // still relative
		{30*24*time.Hour + time.Second, 1_800_000_000 + 30*24*3600 + 2}, // absolute, rounded up from .25
		{400 * 24 * time.Hour, 1_800_000_000 + 400*24*3600 + 1},
	} {
		got, err := expiration(c.ttl, now)
		if err != nil || got != c.want {
			t.Errorf("expiration(%v) = %d, %v; want %d", c.ttl, got, err, c.want)
		}
	}
	if _, err := expiration(-time.Second, now); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, err := expiration(20*365*24*time.Hour, now); err == nil || !strings.Contains(err.Error(), "2038") {
		t.Errorf("TTL past 2038: %v", err)
	}
	if _, err := expiration(time.Duration(1<<63-1), now); err == nil {
		t.Error("huge TTL accepted")
	}
}

// TestTTL: memcached counts in whole seconds, so an item with a 1 s TTL is
// gone after at most 2 s.
func TestTTL(t *testing.T) {
	t.Parallel()
	s, p := sharedStore(t)
	ctx := context.Background()
	if err := s.Set(ctx, p+"1s", []byte("a"), store.WithExpiration(time.Second)); err != nil {
		t.Fatal(err)
	}
	// gocache truncates 500ms to 0, "never expire"; the driver rounds up.
	if err := s.Set(ctx, p+"500ms", []byte("b"), store.WithExpiration(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, p+"cas500ms", nil, []byte("c"), 500*time.Millisecond); !ok || err != nil {
		t.Fatalf("CompareAndSwap add: %v, %v", ok, err)
	}
	if err := s.Set(ctx, p+"swap", []byte("d")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, p+"swap", []byte("d"), []byte("e"), 500*time.Millisecond); !ok || err != nil {
		t.Fatalf("CompareAndSwap cas: %v, %v", ok, err)
	}
	// Over 30 days: sent as an absolute time (gocache's relative number
	// would be a date in 1970, expiring the item at once).
	if err := s.Set(ctx, p+"31d", []byte("f"), store.WithExpiration(31*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, p+"forever", []byte("g")); err != nil {
		t.Fatal(err)
	}
	keys := []string{"1s", "500ms", "cas500ms", "swap", "31d", "forever"}
	for _, k := range keys {
		if _, err := s.Get(ctx, p+k); err != nil {
			t.Errorf("%s right after Set: %v", k, err)
		}
	}
	time.Sleep(2100 * time.Millisecond)
	for _, k := range keys[:4] {
		if _, err := s.Get(ctx, p+k); !errors.Is(err, &store.NotFound{}) {
			t.Errorf("%s after 2.1s: %v, want NotFound", k, err)
		}
	}
	for _, k := range keys[4:] {
		if _, err := s.Get(ctx, p+k); err != nil {
			t.Errorf("%s after 2.1s: %v", k, err)
		}
	}
}

func TestTooLarge(t *testing.T) {
	s, p := sharedStore(t)
	ctx := context.Background()
	key := p + "big"
	fits := make([]byte, DefaultMaxItem-len(key)-ItemOverhead)
	fits[len(fits)-1] = 7
	if err := s.Set(ctx, key, fits); err != nil {
		t.Fatalf("largest value that fits (%d bytes): %v", len(fits), err)
	}
	if got, err := getBytes(t, s, key); err != nil || !bytes.Equal(got, fits) {
		t.Fatalf("largest value: got %d bytes, %v", len(got), err)
	}
	over := append(fits, 0)
	err := s.Set(ctx, key, over)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte more: %v, want ErrTooLarge", err)
	}
	for _, w := range []string{fmt.Sprint(len(over)), fmt.Sprint(DefaultMaxItem), "max_item"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	if _, err := s.CompareAndSwap(ctx, key, fits, over, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("CompareAndSwap: %v, want ErrTooLarge", err)
	}
	if _, err := s.CompareAndSwap(ctx, key+"2", nil, over, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("CompareAndSwap add: %v, want ErrTooLarge", err)
	}
	if got, err := getBytes(t, s, key); err != nil || !bytes.Equal(got, fits) {
		t.Errorf("the refused writes changed the value: %d bytes, %v", len(got), err)
	}
	s.Delete(ctx, key)

	// max_item from the URL.
	small := openURL(t, testservers.SharedMemcached(t).URL()+"?max_item=1000")
	if small.MaxItem() != 1000 {
		t.Errorf("MaxItem = %d", small.MaxItem())
	}
	if err := small.Set(ctx, key, make([]byte, 1000-len(key)-ItemOverhead)); err != nil {
		t.Errorf("fits in 1000: %v", err)
	}
	if err := small.Set(ctx, key, make([]byte, 1001-len(key)-ItemOverhead)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over 1000: %v", err)
	}
	small.Delete(ctx, key)
}

func TestCompareAndSwap(t *testing.T) {
	s, p := sharedStore(t)
	ctx := context.Background()
	key := p + "cas"
	cas := func(old, value []byte) bool {
		t.Helper()
		ok, err := s.CompareAndSwap(ctx, key, old, value, 0)
		if err != nil {
			t.Fatalf("CompareAndSwap(%q, %q): %v", old, value, err)
		}
		return ok
	}
	want := func(v string) {
		t.Helper()
		got, err := getBytes(t, s, key)
		if err != nil || string(got) != v {
			t.Fatalf("value %q (%v), want %q", got, err, v)
		}
	}
	if cas([]byte("x"), []byte("y")) || cas([]byte{}, []byte("y")) {
		t.Error("swap of an absent key with old != nil succeeded")
	}
	if !cas(nil, []byte("v1")) {
		t.Fatal("create if absent failed")
	}
	want("v1")
	if cas(nil, []byte("v2")) {
		t.Error("create if absent succeeded on a present key")
	}
	if cas([]byte("v0"), []byte("v2")) || cas([]byte("v"), []byte("v2")) || cas([]byte("v1 "), []byte("v2")) {
		t.Error("swap with a wrong old value succeeded")
	}
	want("v1")
	if !cas([]byte("v1"), []byte{}) {
		t.Fatal("swap v1 -> empty failed")
	}
	want("")
	if cas(nil, []byte("x")) {
		t.Error("create if absent succeeded on a key holding an empty value")
	}
	if !cas([]byte{}, nil) { // a nil value is stored as empty
		t.Fatal("swap empty -> nil failed")
	}
	if !cas([]byte{}, []byte("v3")) {
		t.Fatal("swap empty -> v3 failed")
	}
	want("v3")
	if _, err := s.CompareAndSwap(ctx, key, nil, []byte("x"), -time.Second); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, err := s.CompareAndSwap(ctx, "bad key", nil, []byte("x"), 0); !errors.Is(err, memcache.ErrMalformedKey) {
		t.Errorf("malformed key: %v", err)
	}
}

func TestCompareAndSwapRace(t *testing.T) {
	s, p := sharedStore(t)
	const workers, rounds = 16, 25
	ctx := context.Background()
	key := p + "race"
	var old []byte // round 0: create
	for r := 0; r < rounds; r++ {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []int
			errs    []error
		)
		start := make(chan struct{})
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.CompareAndSwap(ctx, key, old, []byte(fmt.Sprintf("round %d by %d", r, w)), time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					winners = append(winners, w)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: errors %v", r, errs)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", r, len(winners), winners)
		}
		old = []byte(fmt.Sprintf("round %d by %d", r, winners[0]))
	}
}

func TestNoListKeys(t *testing.T) {
	var st any = New(memcache.New("127.0.0.1:1"))
	if _, ok := st.(interface {
		ListKeys(context.Context, string, func(string) error) error
	}); ok {
		t.Error("Store has ListKeys; memcached cannot list keys reliably")
	}
	if _, ok := st.(driver.CompareAndSwapper); !ok {
		t.Error("Store does not implement driver.CompareAndSwapper")
	}
	if _, ok := st.(driver.CompareAndDeleter); !ok {
		t.Error("Store does not implement driver.CompareAndDeleter")
	}
	if _, ok := st.(driver.ExpiryLister); ok {
		t.Error("Store has ListExpiring; memcached cannot list")
	}
}

func TestCancelledContext(t *testing.T) {
	s, p := sharedStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, p+"k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if _, _, err := s.GetWithTTL(ctx, p+"k"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetWithTTL: %v", err)
	}
	if err := s.Set(ctx, p+"k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: %v", err)
	}
	if err := s.Delete(ctx, p+"k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v", err)
	}
	if _, err := s.CompareAndSwap(ctx, p+"k", nil, []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndSwap: %v", err)
	}
	if _, err := s.CompareAndDelete(ctx, p+"k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndDelete: %v", err)
	}
	if err := s.Clear(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Clear: %v", err)
	}
	if err := s.Invalidate(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Invalidate: %v", err)
	}
	if _, err := s.Get(context.Background(), p+"k"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("a cancelled call stored: %v", err)
	}
}

func TestClose(t *testing.T) {
	srv := testservers.SharedMemcached(t)
	ignore := goleak.IgnoreCurrent()
	ctx := context.Background()
	s, err := Open(ctx, mustParse(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("close:%d", time.Now().UnixNano())
	if err := s.Set(ctx, key, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	goleak.VerifyNone(t, append(ignoreTestservers, ignore)...)

	// Made by New: Close leaves the caller's client's connections alone.
	client := memcache.New(srv.Addr())
	s = New(client)
	if err := s.Set(ctx, key, []byte("w")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if it, err := client.Get(key); err != nil || string(it.Value) != "w" {
		t.Errorf("the caller's client: %v", err)
	}
	client.Delete(key)
	client.Close()
	goleak.VerifyNone(t, append(ignoreTestservers, ignore)...)
}

func TestServerKilled(t *testing.T) {
	t.Parallel()
	srv := testservers.Memcached(t)
	s := openURL(t, srv.URL()+"?timeout=300ms")
	ctx := context.Background()
	if err := s.Set(ctx, "sess:a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	calls := map[string]func() error{
		"Get": func() error { _, err := s.Get(ctx, "sess:a"); return err },
		"Set": func() error { return s.Set(ctx, "sess:a", []byte("2")) },
		"CompareAndSwap": func() error {
			_, err := s.CompareAndSwap(ctx, "sess:a", []byte("1"), []byte("2"), 0)
			return err
		},
		"CompareAndSwap add": func() error {
			_, err := s.CompareAndSwap(ctx, "sess:b", nil, []byte("2"), 0)
			return err
		},
		"Delete": func() error { return s.Delete(ctx, "sess:a") },
		"CompareAndDelete": func() error {
			_, err := s.CompareAndDelete(ctx, "sess:a", []byte("1"))
			return err
		},
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if err == nil {
			t.Errorf("%s with the server down succeeded", name)
		}
		if errors.Is(err, &store.NotFound{}) {
			t.Errorf("%s with the server down: %v (a miss, not a failure)", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v with the server down", name, d)
		}
	}
	srv.Restart(t) // comes back empty
	if _, err := s.Get(ctx, "sess:a"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("Get after restart: %v, want NotFound", err)
	}
	if ok, err := s.CompareAndSwap(ctx, "sess:a", nil, []byte("x"), 0); !ok || err != nil {
		t.Errorf("CompareAndSwap after restart: %v, %v", ok, err)
	}
	if ok, err := s.CompareAndSwap(ctx, "sess:a", []byte("x"), []byte("y"), 0); !ok || err != nil {
		t.Errorf("CompareAndSwap after restart: %v, %v", ok, err)
	}
	if got, err := getBytes(t, s, "sess:a"); err != nil || string(got) != "y" {
		t.Errorf("after restart: %q, %v", got, err)
	}
}
