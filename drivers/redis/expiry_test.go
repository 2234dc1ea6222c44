package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/internal/testservers"
)

var (
	_ driver.CompareAndDeleter = (*Store)(nil)
	_ driver.ExpiryLister      = (*Store)(nil)
)

// TestExpiryIndex runs each expiry index test on a standalone server (a
// database of its own) and on a 3-node Cluster (an index key of its own,
// in whatever slot its name hashes to).
func TestExpiryIndex(t *testing.T) {
	t.Parallel()
	cl := testservers.RedisCluster(t)
	kinds := []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"Standalone", func(t *testing.T) *Store { return sharedStore(t) }},
		{"Cluster", func(t *testing.T) *Store {
			s := openURL(t, cl.URL())
			if _, ok := s.Client().(*goredis.ClusterClient); !ok {
				t.Fatalf("client is a %T", s.Client())
			}
			s.indexKey = "expiry-index:" + t.Name()
			return s
		}},
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *Store, key func(string) string)
	}{
		{"CompareAndDelete", testCompareAndDelete},
		{"CompareAndDeleteRace", testCompareAndDeleteRace},
		{"ListExpiringFollowsWrites", testListExpiringFollowsWrites},
		{"ListExpiringPrefixAndPaging", testListExpiringPrefixAndPaging},
		{"ListExpiringRepairsIndex", testListExpiringRepairsIndex},
		{"SetOptions", testSetOptions},
		{"NothingLeftBehindDeleted", testNothingLeftBehindDeleted},
		{"NothingLeftBehindExpired", testNothingLeftBehindExpired},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					s := k.open(t)
					// Keys of their own on the shared cluster.
					key := func(name string) string { return tc.name + ":" + name }
					tc.fn(t, s, key)
				})
			}
		})
	}
}

// indexed reports whether key has a record in s's expiry index, and its
// expiry time.
func indexed(t *testing.T, s *Store, key string) (time.Time, bool) {
	t.Helper()
	score, err := s.Client().ZScore(context.Background(), s.indexKey, key).Result()
	if errors.Is(err, goredis.Nil) {
		return time.Time{}, false
	}
	if err != nil {
		t.Fatalf("ZSCORE %s %s: %v", s.indexKey, key, err)
	}
	return time.UnixMilli(int64(score)), true
}

func indexExists(t *testing.T, s *Store) bool {
	t.Helper()
	n, err := s.Client().Exists(context.Background(), s.indexKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func listExpiring(t *testing.T, s *Store, prefix string, before time.Time, limit int) ([]string, [][]byte) {
	t.Helper()
	keys, values, err := s.ListExpiring(context.Background(), prefix, before, limit)
	if err != nil {
		t.Fatalf("ListExpiring(%q): %v", prefix, err)
	}
	if len(keys) != len(values) {
		t.Fatalf("ListExpiring(%q): %d keys, %d values", prefix, len(keys), len(values))
	}
	return keys, values
}

// wantListed checks ListExpiring's keys, in order, and that each value is
// the key's name followed by "=v".
func wantListed(t *testing.T, s *Store, prefix string, before time.Time, limit int, want ...string) {
	t.Helper()
	keys, values := listExpiring(t, s, prefix, before, limit)
	if !slices.Equal(keys, want) {
		t.Fatalf("ListExpiring(%q, +%v, %d) = %q, want %q", prefix, time.Until(before).Round(time.Second), limit, keys, want)
	}
	for i, k := range keys {
		if string(values[i]) != k+"=v" {
			t.Errorf("value of %s: %q", k, values[i])
		}
	}
}

func mustSet(t *testing.T, s *Store, key string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, []byte(key+"=v"), store.WithExpiration(ttl)); err != nil {
		t.Fatal(err)
	}
}

func testCompareAndDelete(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	k := key("a")
	cad := func(old []byte) bool {
		t.Helper()
		ok, err := s.CompareAndDelete(ctx, k, old)
		if err != nil {
			t.Fatalf("CompareAndDelete(%q): %v", old, err)
		}
		return ok
	}
	if cad([]byte("x")) || cad([]byte{}) || cad(nil) {
		t.Error("CompareAndDelete of an absent key succeeded")
	}
	mustSet(t, s, k, time.Minute)
	if _, ok := indexed(t, s, k); !ok {
		t.Fatal("Set with a TTL left no index record")
	}
	if cad([]byte(k+"=w")) || cad([]byte(k+"=")) || cad(nil) || cad([]byte{}) {
		t.Error("CompareAndDelete with a wrong old value succeeded")
	}
	if got, err := getBytes(t, s, k); err != nil || string(got) != k+"=v" {
		t.Fatalf("after failed deletes: %q, %v", got, err)
	}
	if _, ok := indexed(t, s, k); !ok {
		t.Error("a failed CompareAndDelete removed the index record")
	}
	if !cad([]byte(k + "=v")) {
		t.Fatal("CompareAndDelete with the right old value failed")
	}
	if _, err := s.Get(ctx, k); !errors.Is(err, &store.NotFound{}) {
		t.Errorf("after CompareAndDelete: %v, want NotFound", err)
	}
	if _, ok := indexed(t, s, k); ok {
		t.Error("CompareAndDelete left the index record")
	}
	if cad([]byte(k + "=v")) {
		t.Error("second CompareAndDelete succeeded")
	}

	// An empty value is matched by an empty or nil old (bytes.Equal).
	for _, old := range [][]byte{{}, nil} {
		if ok, err := s.CompareAndSwap(ctx, k, nil, []byte{}, time.Minute); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if cad([]byte("x")) {
			t.Error("CompareAndDelete(x) deleted an empty value")
		}
		if !cad(old) {
			t.Errorf("CompareAndDelete(%#v) of an empty value failed", old)
		}
	}

	// An expired entry is absent.
	if err := s.Set(ctx, k, []byte(k+"=v"), store.WithExpiration(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if cad([]byte(k + "=v")) {
		t.Error("CompareAndDelete of an expired entry succeeded")
	}
}

// testCompareAndDeleteRace: 32 goroutines delete one entry with the same
// old value, in each of several rounds; exactly one must win.
func testCompareAndDeleteRace(t *testing.T, s *Store, key func(string) string) {
	const workers, rounds = 32, 10
	ctx := context.Background()
	k := key("race")
	for r := range rounds {
		v := []byte(fmt.Sprintf("round %d", r))
		if err := s.Set(ctx, k, v, store.WithExpiration(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
			errs []error
		)
		start := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.CompareAndDelete(ctx, k, v)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins++
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %v", r, errs)
		}
		if wins != 1 {
			t.Fatalf("round %d: %d CompareAndDelete calls won, want exactly 1", r, wins)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, &store.NotFound{}) {
			t.Fatalf("round %d: entry still there: %v", r, err)
		}
	}
	if indexExists(t, s) {
		t.Error("the index outlived its only entry")
	}
}

func testListExpiringFollowsWrites(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	p := key("sess:")
	k := func(name string) string { return p + name }
	v := func(name string) []byte { return []byte(k(name) + "=v") }
	later := time.Now().Add(time.Hour)

	wantListed(t, s, p, later, 10) // nothing yet, no index
	mustSet(t, s, k("set1m"), time.Minute)
	mustSet(t, s, k("set2m"), 2*time.Minute)
	if err := s.SetMany(ctx, []string{k("many3m"), k("many4m")}, [][]byte{v("many3m"), v("many4m")}, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMany(ctx, []string{k("many4m")}, [][]byte{v("many4m")}, 4*time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, k("cas5m"), nil, v("cas5m"), 5*time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	swapped, err := s.CompareAndSwapMany(ctx, []string{k("casmany6m"), k("set1m")},
		[][]byte{nil, nil}, [][]byte{v("casmany6m"), []byte("not stored")}, 6*time.Minute)
	if err != nil || !slices.Equal(swapped, []bool{true, false}) {
		t.Fatal(swapped, err)
	}
	mustSet(t, s, k("forever"), 0)
	all := []string{k("set1m"), k("set2m"), k("many3m"), k("many4m"), k("cas5m"), k("casmany6m")}
	wantListed(t, s, p, later, 100, all...)
	wantListed(t, s, p, later, 3, all[:3]...)
	wantListed(t, s, p, time.Now().Add(150*time.Second), 100, all[:2]...)
	wantListed(t, s, p, time.Now(), 100)
	wantListed(t, s, p+"cas", later, 100, all[4:]...)
	wantListed(t, s, key("other:"), later, 100)
	if _, ok := indexed(t, s, k("forever")); ok {
		t.Error("an entry without TTL is indexed")
	}
	// The failed swap of set1m (in CompareAndSwapMany) left its record
	// alone: it still expires in about a minute.
	if at, ok := indexed(t, s, k("set1m")); !ok || time.Until(at) > 70*time.Second {
		t.Errorf("set1m's record: %v, %v; want about a minute from now", at, ok)
	}

	// Rewritten to live longer: out of the range.
	mustSet(t, s, k("set1m"), 2*time.Hour)
	// Deleted, claimed: gone.
	if err := s.Delete(ctx, k("set2m")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndDelete(ctx, k("many3m"), v("many3m")); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Rewritten without TTL: not indexed any more, whichever way.
	if ok, err := s.CompareAndSwap(ctx, k("many4m"), v("many4m"), v("many4m"), 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if swapped, err := s.CompareAndSwapMany(ctx, []string{k("cas5m")}, [][]byte{v("cas5m")}, [][]byte{v("cas5m")}, 0); err != nil || !swapped[0] {
		t.Fatal(swapped, err)
	}
	if err := s.SetMany(ctx, []string{k("casmany6m")}, [][]byte{v("casmany6m")}, 0); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, p, later, 100)
	wantListed(t, s, p, time.Now().Add(3*time.Hour), 100, k("set1m"))
	for _, name := range []string{"set2m", "many3m", "many4m", "cas5m", "casmany6m"} {
		if _, ok := indexed(t, s, k(name)); ok {
			t.Errorf("%s is still indexed", name)
		}
	}
	// Rewritten to expire sooner: back in the range, by CompareAndSwap.
	if ok, err := s.CompareAndSwap(ctx, k("set1m"), v("set1m"), v("set1m"), time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	wantListed(t, s, p, later, 100, k("set1m"))

	// Expired entries are not listed, and their records are gone.
	mustSet(t, s, k("short"), 200*time.Millisecond)
	wantListed(t, s, p, later, 100, k("short"), k("set1m"))
	time.Sleep(300 * time.Millisecond)
	wantListed(t, s, p, later, 100, k("set1m"))
	if _, ok := indexed(t, s, k("short")); ok {
		t.Error("an expired entry is still indexed after ListExpiring")
	}
}

// Members of other prefixes are skipped, however many come first.
func testListExpiringPrefixAndPaging(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	var others [][]string // batches of 300, earlier than ours
	for b := range 3 {
		var batch []string
		for i := range 300 {
			batch = append(batch, key(fmt.Sprintf("app%d:%d", b, i)))
		}
		others = append(others, batch)
		values := make([][]byte, len(batch))
		for i := range values {
			values[i] = []byte(batch[i] + "=v")
		}
		if err := s.SetMany(ctx, batch, values, time.Duration(10+b)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	p := key("sess:")
	var ours []string
	for i := range 5 {
		k := fmt.Sprintf("%s%d", p, i)
		ours = append(ours, k)
		mustSet(t, s, k, time.Duration(20+i)*time.Minute)
	}
	later := time.Now().Add(time.Hour)
	wantListed(t, s, p, later, 1, ours[0])
	wantListed(t, s, p, later, 100, ours...)
	// One SetMany gives its keys one score; the index orders them by name.
	keys, _ := listExpiring(t, s, key("app1:"), later, 1000)
	if want := slices.Sorted(slices.Values(others[1])); !slices.Equal(keys, want) {
		t.Fatalf("prefix app1: %d keys %q..., want %d", len(keys), keys[:min(len(keys), 3)], len(want))
	}
	keys, _ = listExpiring(t, s, key("app"), later, 1000)
	if len(keys) != 900 {
		t.Fatalf("prefix app: %d keys, want 900", len(keys))
	}
	keys, _ = listExpiring(t, s, "", later, 2000)
	if len(keys) != 905 {
		t.Fatalf("empty prefix: %d keys, want 905", len(keys))
	}
	if n, err := s.Client().ZCard(ctx, s.indexKey).Result(); err != nil || n != 905 {
		t.Fatalf("ZCARD: %d, %v", n, err)
	}
}

// ListExpiring corrects the records of entries changed behind the Store's
// back (or by a write whose index update another's overtook).
func testListExpiringRepairsIndex(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	p := key("sess:")
	gone, longer, noTTL, ok := p+"gone", p+"longer", p+"noTTL", p+"ok"
	for _, k := range []string{gone, longer, noTTL, ok} {
		mustSet(t, s, k, time.Minute)
	}
	c := s.Client()
	if err := c.Del(ctx, gone).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.PExpire(ctx, longer, 3*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Persist(ctx, noTTL).Err(); err != nil {
		t.Fatal(err)
	}
	wantListed(t, s, p, time.Now().Add(time.Hour), 100, ok)
	if _, found := indexed(t, s, gone); found {
		t.Error("the record of an absent entry stays")
	}
	if _, found := indexed(t, s, noTTL); found {
		t.Error("the record of an entry without TTL stays")
	}
	at, found := indexed(t, s, longer)
	if !found || time.Until(at) < 2*time.Hour {
		t.Errorf("the record of an entry that lives longer: %v, %v; want moved to about 3h from now", at, found)
	}
	wantListed(t, s, p, time.Now().Add(4*time.Hour), 100, ok, longer)
}

// Set keeps gocache's semantics.
func testSetOptions(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	k := key("a")
	if err := s.Set(ctx, k, "string value", store.WithExpiration(1500*time.Microsecond+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ttl := s.Client().PTTL(ctx, k).Val(); ttl <= 59*time.Second || ttl > time.Minute+time.Millisecond {
		t.Errorf("PTTL %v", ttl)
	}
	if got, err := getBytes(t, s, k); err != nil || string(got) != "string value" {
		t.Errorf("%q, %v", got, err)
	}
	at, ok := indexed(t, s, k)
	if !ok || time.Until(at) < 59*time.Second || time.Until(at) > 61*time.Second {
		t.Errorf("index record %v, %v; want in a minute", at, ok)
	}
	// KeepTTL keeps the TTL and the record.
	if err := s.Set(ctx, k, "b", store.WithExpiration(goredis.KeepTTL)); err != nil {
		t.Fatal(err)
	}
	if ttl := s.Client().PTTL(ctx, k).Val(); ttl <= 0 {
		t.Errorf("KeepTTL: PTTL %v", ttl)
	}
	if at2, ok := indexed(t, s, k); !ok || !at2.Equal(at) {
		t.Errorf("KeepTTL: index record %v, %v; want %v", at2, ok, at)
	}
	// No option: no TTL, no record.
	if err := s.Set(ctx, k, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if ttl := s.Client().PTTL(ctx, k).Val(); ttl != -1 {
		t.Errorf("no expiration: PTTL %v", ttl)
	}
	if _, ok := indexed(t, s, k); ok {
		t.Error("no expiration: still indexed")
	}
	// Tags are recorded as gocache records them.
	if err := s.Set(ctx, k, []byte("d"), store.WithTags([]string{key("tag")})); err != nil {
		t.Fatal(err)
	}
	tagKey := "gocache_tag_" + key("tag")
	if members := s.Client().SMembers(ctx, tagKey).Val(); !slices.Equal(members, []string{k}) {
		t.Errorf("tag set %v", members)
	}
	if ttl := s.Client().TTL(ctx, tagKey).Val(); ttl < 719*time.Hour {
		t.Errorf("tag set TTL %v", ttl)
	}
	s.Client().Del(ctx, tagKey, k)
}

// Entries deleted or claimed take their records with them; the last one
// takes the index.
func testNothingLeftBehindDeleted(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	k := func(name string) string { return key("sess:" + name) }
	v := func(name string) []byte { return []byte(k(name) + "=v") }
	mustSet(t, s, k("set"), time.Minute)
	if err := s.SetMany(ctx, []string{k("many1"), k("many2")}, [][]byte{v("many1"), v("many2")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, k("cas"), nil, v("cas"), time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := s.CompareAndSwapMany(ctx, []string{k("casmany")}, [][]byte{nil}, [][]byte{v("casmany")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := s.Client().ZCard(ctx, s.indexKey).Val(); n != 5 {
		t.Fatalf("%d index records, want 5", n)
	}
	for _, name := range []string{"set", "many1", "cas"} {
		if err := s.Delete(ctx, k(name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"many2", "casmany"} {
		if ok, err := s.CompareAndDelete(ctx, k(name), v(name)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if indexExists(t, s) {
		t.Errorf("the index outlived its entries: %v", s.Client().ZRange(ctx, s.indexKey, 0, -1).Val())
	}
}

// Entries that expire take the index with them, although nobody calls
// ListExpiring; while one lives, the index does.
func testNothingLeftBehindExpired(t *testing.T, s *Store, key func(string) string) {
	ctx := context.Background()
	const short = 200 * time.Millisecond
	k := func(name string) string { return key("sess:" + name) }
	v := func(name string) []byte { return []byte(k(name) + "=v") }
	mustSet(t, s, k("long"), time.Minute)
	mustSet(t, s, k("set"), short)
	if err := s.SetMany(ctx, []string{k("many")}, [][]byte{v("many")}, short); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, k("cas"), nil, v("cas"), short); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := s.CompareAndSwapMany(ctx, []string{k("casmany")}, [][]byte{nil}, [][]byte{v("casmany")}, short); err != nil {
		t.Fatal(err)
	}
	if ttl := s.Client().PTTL(ctx, s.indexKey).Val(); ttl < 50*time.Second {
		t.Fatalf("index PTTL %v with an entry living a minute", ttl)
	}
	time.Sleep(2 * short)
	// A write prunes the records of expired entries.
	mustSet(t, s, k("long"), time.Minute)
	if members := s.Client().ZRange(ctx, s.indexKey, 0, -1).Val(); !slices.Equal(members, []string{k("long")}) {
		t.Errorf("index records after the short entries expired: %q", members)
	}
	if err := s.Delete(ctx, k("long")); err != nil {
		t.Fatal(err)
	}

	// Only short entries: the index expires with the last of them.
	mustSet(t, s, k("set"), short)
	if err := s.SetMany(ctx, []string{k("many")}, [][]byte{v("many")}, short/2); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, k("cas"), nil, v("cas"), short); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if !indexExists(t, s) {
		t.Fatal("no index while entries live")
	}
	if ttl := s.Client().PTTL(ctx, s.indexKey).Val(); ttl <= 0 {
		t.Fatalf("index PTTL %v, want the last entry's", ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for indexExists(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("the index outlived its entries: PTTL %v, records %q",
				s.Client().PTTL(ctx, s.indexKey).Val(), s.Client().ZRange(ctx, s.indexKey, 0, -1).Val())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range []string{"set", "many", "cas"} {
		if _, err := s.Get(ctx, k(name)); !errors.Is(err, &store.NotFound{}) {
			t.Errorf("%s: %v, want expired", name, err)
		}
	}
}
