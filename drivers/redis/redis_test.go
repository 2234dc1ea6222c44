package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// ignoreTestservers ignores the goroutine testservers keeps for the whole
// process (servers are forked from one locked thread).
var ignoreTestservers = testservers.LeakCheckOptions()

// quietLogger drops go-redis's log lines (failed dials and the like, which
// several tests provoke on purpose).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	if os.Getenv("REDIS_DRIVER_LOG") == "" {
		goredis.SetLogger(quietLogger{})
	}
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

// openURL opens a Store from a URL and closes it at the end of the test.
func openURL(t testing.TB, raw string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, mustParse(t, raw))
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

// sharedStore is a Store on the caller's own database of the shared server.
func sharedStore(t testing.TB) *Store {
	t.Helper()
	return openURL(t, testservers.SharedRedis(t).URL())
}

func getBytes(t testing.TB, s *Store, key string) ([]byte, error) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	str, ok := v.(string)
	if !ok {
		t.Fatalf("Get(%s) returned a %T, want string (gocache's redis store)", key, v)
	}
	return []byte(str), nil
}

func TestRegistered(t *testing.T) {
	d := driver.Schemes()
	for _, want := range []string{"redis", "rediss"} {
		if !slices.Contains(d, want) {
			t.Errorf("scheme %q not registered; have %v", want, d)
		}
	}
}

func TestOpenURL(t *testing.T) {
	srv := testservers.SharedRedis(t)
	s := openURL(t, srv.URL()+"?dial_timeout=2s&read_timeout=2s&pool_size=4&client_name=sessions-test&cluster=false")
	if s.GetType() != "redis" {
		t.Errorf("GetType = %q", s.GetType())
	}
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// The URL's database number is honoured: the key is in that DB only.
	db, _ := strconv.Atoi(srv.DB())
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), DB: db})
	defer c.Close()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("key in DB %d: %q, %v", db, got, err)
	}

	// The same through db=N.
	s2 := openURL(t, "redis://"+srv.Addr()+"?db="+srv.DB())
	if got, err := getBytes(t, s2, "k"); err != nil || string(got) != "v" {
		t.Errorf("via db=: %q, %v", got, err)
	}
}

func TestOpenBadURLs(t *testing.T) {
	srv := testservers.SharedRedis(t)
	addr := srv.Addr()
	cases := []struct {
		url  string
		want []string // substrings of the error
	}{
		{"redis://" + addr + "?foo=1", []string{"unknown option foo; known in standalone mode: ", "dial_timeout", "pool_size"}},
		{"redis://" + addr + "?foo=1&bar=2", []string{"unknown option bar, foo;"}},
		{"redis://" + addr + "?addr=127.0.0.1:1", []string{"unknown option addr", "master_name"}},
		{"redis://" + addr + "?skip_verify=true", []string{"unknown option skip_verify"}},
		{"redis://" + addr + "?cluster=true&master_name=x", []string{"exclude each other"}},
		{"redis://" + addr + "?cluster=maybe", []string{`cluster="maybe"`}},
		{"redis://" + addr + "/3?cluster=true", []string{"only database 0"}},
		{"redis://" + addr + "?master_name=m&route_randomly=true", []string{"route_randomly is not supported"}},
		{"redis://" + addr + "?master_name=", []string{"master_name is empty"}},
		{"redis://" + addr + "/abc", []string{"invalid database number"}},
		{"redis://" + addr + "/1/2", []string{"invalid URL path"}},
		{"redis://" + addr + "?dial_timeout=soon", []string{"invalid dial_timeout duration"}},
		{"redis://" + addr + "?cluster=true&addr=nocolon", []string{"unable to parse addr"}},
		{"memcached://" + addr, []string{`scheme "memcached"`}},
		{"redis:opaque", []string{"not of the form"}},
		// Nothing listens on port 1: refused at once.
		{"redis://user:s3cret@127.0.0.1:1/0", []string{"cannot reach", "user:xxxxx@127.0.0.1:1"}},
		// No such user: AUTH fails.
		{"redis://nobody:s3cret@" + addr + "/" + srv.DB(), []string{"cannot reach", "nobody:xxxxx@", "WRONGPASS"}},
		// A plain server is no Sentinel.
		{"redis://" + addr + "/0?master_name=mymaster&password=s3cret", []string{"cannot reach", "Sentinel", "password=xxxxx"}},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			s, err := Open(ctx, mustParse(t, c.url))
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, mustParse(t, testservers.SharedRedis(t).URL())); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestKnownOptionsAccepted checks the driver's option lists against
// go-redis: each listed option must be one go-redis accepts in that mode.
func TestKnownOptionsAccepted(t *testing.T) {
	value := func(opt string) string {
		switch opt {
		case "addr":
			return "127.0.0.1:7001"
		case "cluster":
			return "false"
		case "protocol":
			return "3"
		case "min_idle_conns":
			return "0" // 1 would dial in the background
		case "db":
			return "1"
		}
		return "1"
	}
	for _, c := range []struct {
		m      mode
		scheme string
		base   string
	}{
		{standalone, "redis", ""},
		{standalone, "rediss", ""},
		{sentinel, "redis", "master_name=m"},
		{sentinel, "rediss", "master_name=m"},
		{cluster, "redis", "cluster=true"},
		{cluster, "rediss", "cluster=true"},
	} {
		for _, opt := range knownOptions(c.m, c.scheme) {
			q := url.Values{}
			if c.base != "" {
				k, v, _ := strings.Cut(c.base, "=")
				q.Set(k, v)
			}
			if opt == "cluster" && c.m == cluster {
				continue
			}
			if !q.Has(opt) {
				q.Set(opt, value(opt))
			}
			raw := c.scheme + "://127.0.0.1:7000?" + q.Encode()
			client, m, err := clientFromURL(mustParse(t, raw))
			if err != nil {
				t.Errorf("%s: %v", raw, err)
				continue
			}
			if m != c.m {
				t.Errorf("%s: mode %v, want %v", raw, m, c.m)
			}
			client.Close()
		}
	}
}

func TestClientKinds(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://h:1/2":                              "*redis.Client",
		"rediss://h:1/2":                             "*redis.Client",
		"redis://h:1?master_name=m&addr=h2:2":        "*redis.Client",
		"redis://h:1?cluster=true&addr=h2:2":         "*redis.ClusterClient",
		"redis://h:1/0?cluster=1&addr=h2:2&addr=h:3": "*redis.ClusterClient",
	} {
		c, _, err := clientFromURL(mustParse(t, raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != want {
			t.Errorf("%s: %s, want %s", raw, got, want)
		}
		c.Close()
	}
	c, _, err := clientFromURL(mustParse(t, "rediss://u:p@h:1/2?skip_verify=true"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*goredis.Client).Options()
	if o.TLSConfig == nil || !o.TLSConfig.InsecureSkipVerify || o.DB != 2 || o.Username != "u" || o.Password != "p" {
		t.Errorf("rediss options: TLS %+v, DB %d, user %q", o.TLSConfig, o.DB, o.Username)
	}
}

func testValues() map[string][]byte {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	return map[string][]byte{"empty": {}, "all-bytes": all, "64KiB": big, "text": []byte("hello")}
}

func TestRoundTrip(t *testing.T) {
	s := sharedStore(t)
	ctx := context.Background()
	for name, v := range testValues() {
		key := "sess:" + name
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
	if _, err := s.Get(ctx, "sess:never"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("missing key: %v, want NotFound", err)
	}
	if err := s.Delete(ctx, "sess:never"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
}

func TestTTL(t *testing.T) {
	t.Parallel()
	s := sharedStore(t)
	ctx := context.Background()
	if err := s.Set(ctx, "sess:1s", []byte("a"), store.WithExpiration(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "sess:500ms", []byte("b"), store.WithExpiration(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, "sess:cas500ms", nil, []byte("c"), 500*time.Millisecond); !ok || err != nil {
		t.Fatalf("CompareAndSwap: %v, %v", ok, err)
	}
	if err := s.Set(ctx, "sess:forever", []byte("d")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sess:1s", "sess:500ms", "sess:cas500ms", "sess:forever"} {
		if _, err := s.Get(ctx, k); err != nil {
			t.Errorf("%s right after Set: %v", k, err)
		}
	}
	if ttl, err := s.Client().PTTL(ctx, "sess:cas500ms").Result(); err != nil || ttl <= 0 || ttl > 500*time.Millisecond {
		t.Errorf("PTTL of the CompareAndSwap key: %v, %v", ttl, err)
	}
	time.Sleep(700 * time.Millisecond)
	for _, k := range []string{"sess:500ms", "sess:cas500ms"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, &store.NotFound{}) {
			t.Errorf("%s after 700ms: %v, want NotFound", k, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := s.Get(ctx, "sess:1s"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("1s key after 1.2s: %v, want NotFound", err)
	}
	if _, err := s.Get(ctx, "sess:forever"); err != nil {
		t.Errorf("key without TTL: %v", err)
	}
}

func TestCompareAndSwap(t *testing.T) {
	s := sharedStore(t)
	testCompareAndSwap(t, s, "sess:cas")
}

func testCompareAndSwap(t *testing.T, s *Store, key string) {
	ctx := context.Background()
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
	if cas([]byte("x"), []byte("y")) {
		t.Error("swap of an absent key with old != nil succeeded")
	}
	if cas([]byte{}, []byte("y")) {
		t.Error("swap of an absent key with old = empty succeeded")
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
	all := testValues()["all-bytes"]
	if !cas([]byte{}, all) {
		t.Fatal("swap empty -> all bytes failed")
	}
	if !cas(all, []byte("v3")) {
		t.Fatal("swap all bytes -> v3 failed")
	}
	want("v3")
	// A TTL applies; an expired key counts as absent.
	ok, err := s.CompareAndSwap(ctx, key, []byte("v3"), []byte("v4"), 300*time.Millisecond)
	if !ok || err != nil {
		t.Fatalf("swap with TTL: %v, %v", ok, err)
	}
	time.Sleep(400 * time.Millisecond)
	if cas([]byte("v4"), []byte("v5")) {
		t.Error("swap of an expired key succeeded")
	}
	if !cas(nil, []byte("v5")) {
		t.Error("create on an expired key failed")
	}
	if _, err := s.CompareAndSwap(ctx, key, nil, []byte("x"), -time.Second); err == nil {
		t.Error("negative TTL accepted")
	}
}

func TestCompareAndSwapRace(t *testing.T) {
	s := sharedStore(t)
	testCompareAndSwapRace(t, s, "sess:race")
}

// testCompareAndSwapRace: 16 goroutines swap one key from the same old
// value in each round; exactly one must win.
func testCompareAndSwapRace(t *testing.T, s interface {
	CompareAndSwap(context.Context, string, []byte, []byte, time.Duration) (bool, error)
}, key string) {
	const workers, rounds = 16, 25
	ctx := context.Background()
	old := []byte(nil) // round 0: create
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

func TestListKeys(t *testing.T) {
	s := sharedStore(t)
	testListKeys(t, s)
}

func testListKeys(t *testing.T, s *Store) {
	ctx := context.Background()
	before := 0
	if err := s.ListKeys(ctx, "", func(string) error { before++; return nil }); err != nil {
		t.Fatal(err)
	}
	prefix := `se*s[s]?\:`
	var want []string
	for i := 0; i < 2500; i++ { // several SCAN pages
		k := prefix + strconv.Itoa(i)
		want = append(want, k)
	}
	// Keys the prefix would match if its glob characters were not escaped.
	decoys := []string{"sexs[s]?\\:1", "se*ss?\\:1", "se*s[s]x\\:1", "se*s[s]?:1", "other", "se*s[s]"}
	pipe := s.Client().Pipeline()
	for _, k := range append(slices.Clone(want), decoys...) {
		pipe.Set(ctx, k, "v", 0)
	}
	pipe.Set(ctx, prefix+"expiring", "v", 100*time.Millisecond)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	var got []string
	if err := s.ListKeys(ctx, prefix, func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("ListKeys returned %d keys, want %d; extra: %v", len(got), len(want), diff(got, want))
	}

	// fn's error stops the listing and is returned.
	stop := errors.New("stop")
	n := 0
	err := s.ListKeys(ctx, prefix, func(string) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if err != stop || n != 10 {
		t.Errorf("ListKeys with a stopping fn: err %v after %d calls", err, n)
	}

	// fn may use the store: delete every key as it is listed.
	if err := s.ListKeys(ctx, prefix, func(k string) error { return s.Delete(ctx, k) }); err != nil {
		t.Fatal(err)
	}
	n = 0
	if err := s.ListKeys(ctx, prefix, func(string) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("after deleting: %d keys, %v", n, err)
	}
	for _, k := range decoys {
		if _, err := s.Get(ctx, k); err != nil {
			t.Errorf("decoy %q: %v", k, err)
		}
	}
	// The empty prefix lists everything.
	n = 0
	if err := s.ListKeys(ctx, "", func(string) error { n++; return nil }); err != nil || n != before+len(decoys) {
		t.Errorf("empty prefix: %d keys (%v), want %d", n, err, before+len(decoys))
	}
}

func diff(got, want []string) []string {
	var d []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			d = append(d, g)
		}
	}
	if len(d) > 5 {
		d = d[:5]
	}
	return d
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"":           "",
		"sess:":      "sess:",
		`a*b?c[d]e\`: `a\*b\?c\[d\]e\\`,
	} {
		if got := escapeGlob(in); got != want {
			t.Errorf("escapeGlob(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	s := sharedStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if err := s.Set(ctx, "k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: %v", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v", err)
	}
	if _, err := s.CompareAndSwap(ctx, "k", nil, []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndSwap: %v", err)
	}
	if err := s.ListKeys(ctx, "", func(string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ListKeys: %v", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), store.WithExpiration(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Errorf("Set with a TTL: %v", err)
	}
	if err := s.SetMany(ctx, []string{"k"}, [][]byte{[]byte("v")}, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("SetMany: %v", err)
	}
	if _, err := s.CompareAndDelete(ctx, "k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Errorf("CompareAndDelete: %v", err)
	}
	if _, _, err := s.ListExpiring(ctx, "", time.Now().Add(time.Hour), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("ListExpiring: %v", err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("the cancelled Set stored: %v", err)
	}
}

func TestClose(t *testing.T) {
	srv := testservers.SharedRedis(t)
	ignore := goleak.IgnoreCurrent()

	// Opened from a URL: Close closes the client and leaks no goroutine.
	ctx := context.Background()
	s, err := Open(ctx, mustParse(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, "k"); err == nil {
		t.Error("Get after Close succeeded")
	}
	goleak.VerifyNone(t, append(ignoreTestservers, ignore)...)

	// Made by New: Close leaves the caller's client alone.
	db, _ := strconv.Atoi(srv.DB())
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), DB: db})
	s = New(client)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Errorf("the caller's client was closed: %v", err)
	}
	client.Close()
	goleak.VerifyNone(t, append(ignoreTestservers, ignore)...)
}

func TestServerKilled(t *testing.T) {
	t.Parallel()
	srv := testservers.Redis(t)
	s := openURL(t, srv.URL()+"?max_retries=1&dial_timeout=1s&read_timeout=1s")
	ctx := context.Background()
	if err := s.Set(ctx, "sess:a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)

	calls := map[string]func(ctx context.Context) error{
		"Get": func(ctx context.Context) error { _, err := s.Get(ctx, "sess:a"); return err },
		"Set": func(ctx context.Context) error { return s.Set(ctx, "sess:a", []byte("2")) },
		"CompareAndSwap": func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, "sess:a", []byte("1"), []byte("2"), 0)
			return err
		},
		"ListKeys": func(ctx context.Context) error { return s.ListKeys(ctx, "sess:", func(string) error { return nil }) },
		"Delete":   func(ctx context.Context) error { return s.Delete(ctx, "sess:a") },
		"CompareAndDelete": func(ctx context.Context) error {
			_, err := s.CompareAndDelete(ctx, "sess:a", []byte("1"))
			return err
		},
		"ListExpiring": func(ctx context.Context) error {
			_, _, err := s.ListExpiring(ctx, "sess:", time.Now().Add(time.Hour), 10)
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		start := time.Now()
		err := call(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s with the server down succeeded", name)
		}
		if errors.Is(err, &store.NotFound{}) {
			t.Errorf("%s with the server down: %v (a miss, not a failure)", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v with the server down", name, d)
		}
	}

	srv.Restart(t) // comes back empty
	if _, err := s.Get(ctx, "sess:a"); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("Get after restart: %v, want NotFound", err)
	}
	if err := s.Set(ctx, "sess:b", []byte("x")); err != nil {
		t.Errorf("Set after restart: %v", err)
	}
	// The server's script cache is empty: EVALSHA falls back to EVAL.
	if ok, err := s.CompareAndSwap(ctx, "sess:b", []byte("x"), []byte("y"), 0); !ok || err != nil {
		t.Errorf("CompareAndSwap after restart: %v, %v", ok, err)
	}
	if got, err := getBytes(t, s, "sess:b"); err != nil || string(got) != "y" {
		t.Errorf("after restart: %q, %v", got, err)
	}
	// So do the expiry index's scripts, in and out of pipelines.
	srv.Restart(t)
	if err := s.Set(ctx, "sess:c", []byte("c"), store.WithExpiration(time.Minute)); err != nil {
		t.Errorf("Set after restart: %v", err)
	}
	srv.Restart(t)
	if err := s.SetMany(ctx, []string{"sess:d"}, [][]byte{[]byte("d")}, time.Minute); err != nil {
		t.Errorf("SetMany after restart: %v", err)
	}
	srv.Restart(t)
	if err := s.Set(ctx, "sess:e", []byte("e"), store.WithExpiration(2*time.Minute)); err != nil {
		t.Errorf("Set after restart: %v", err)
	}
	if ok, err := s.CompareAndDelete(ctx, "sess:e", []byte("e")); !ok || err != nil {
		t.Errorf("CompareAndDelete after restart: %v, %v", ok, err)
	}
	srv.Restart(t)
	if err := s.SetMany(ctx, []string{"sess:f"}, [][]byte{[]byte("f")}, time.Minute); err != nil {
		t.Errorf("SetMany after restart: %v", err)
	}
	if keys, _, err := s.ListExpiring(ctx, "sess:", time.Now().Add(time.Hour), 10); err != nil || !slices.Equal(keys, []string{"sess:f"}) {
		t.Errorf("ListExpiring after restarts: %q, %v", keys, err)
	}
}
