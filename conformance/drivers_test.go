package conformance_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/coocood/freecache"
	"github.com/dgraph-io/ristretto"
	"github.com/eko/gocache/lib/v4/store"
	bigcachestore "github.com/eko/gocache/store/bigcache/v4"
	freecachestore "github.com/eko/gocache/store/freecache/v4"
	gocachestore "github.com/eko/gocache/store/go_cache/v4"
	ristrettostore "github.com/eko/gocache/store/ristretto/v4"
	gocache "github.com/patrickmn/go-cache"

	gomemcache "github.com/bradfitz/gomemcache/memcache"
	memcachestore "github.com/eko/gocache/store/memcache/v4"
	redisstore "github.com/eko/gocache/store/redis/v4"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/drivers/bolt"
	"github.com/sessionstorage/sessions/drivers/memcached"
	"github.com/sessionstorage/sessions/drivers/memory"
	redisdriver "github.com/sessionstorage/sessions/drivers/redis"
	sqlstore "github.com/sessionstorage/sessions/drivers/sql"
	"github.com/sessionstorage/sessions/internal/testservers"
)

var update = flag.Bool("update", false, "rewrite docs/drivers.md from this run")

// target is one store the suite runs over, as a row of docs/drivers.md.
type target struct {
	name, kind string
	harness    func(t *testing.T) conformance.Harness
}

func randomName() string {
	var b [5]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

func openURL[S store.StoreInterface](t conformance.TB, open func(context.Context, *url.URL) (S, error), raw string) S {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	st, err := open(context.Background(), u)
	if err != nil {
		t.Fatalf("open %s: %v", raw, err)
	}
	t.Cleanup(func() {
		if c, ok := any(st).(interface{ Close() error }); ok {
			c.Close()
		}
	})
	return st
}

// Known failures of stores that are not built for sessions, with why.
const (
	whyNoContext = "ignores the context; harmless to the library, whose adapter checks the context before every call"
	whyAliasing  = "returns the very slice that was stored; harmless to the library, which never modifies either"
	whyOwnMiss   = "reports a miss with bigcache's ErrEntryNotFound instead of gocache's NotFound (also from Delete); the library's adapter recognises it"
	whyNoTTL     = "has no per-entry TTL (one LifeWindow for the whole cache); the library still ends sessions by the deadline in its envelope, but storage is not freed on time"
)

var targets = []target{
	{"memory", "driver", func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				st := memory.New(memory.Options{SweepInterval: 10 * time.Millisecond})
				t.Cleanup(func() { st.Close() })
				return st
			},
			TTLResolution: 50 * time.Millisecond,
		}
	}},
	{"bolt", "driver", func(t *testing.T) conformance.Harness {
		dir := t.TempDir()
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, bolt.Open, "bolt://"+filepath.Join(dir, "sessions.db")+"?bucket="+randomName())
		}}
	}},
	{"sql (SQLite)", "driver", func(t *testing.T) conformance.Harness {
		dir := t.TempDir()
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, sqlstore.Open, "sqlite://"+filepath.Join(dir, "sessions.db")+"?table="+randomName())
		}}
	}},
	{"sql (PostgreSQL)", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedPostgres(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, sqlstore.Open, srv.URL()+"&table="+randomName())
		}}
	}},
	{"sql (MariaDB)", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedMariaDB(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, sqlstore.Open, srv.URL()+"?table="+randomName())
		}}
	}},
	{"redis", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedRedis(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, redisdriver.Open, srv.URL())
		}}
	}},
	{"redis (Cluster)", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.RedisCluster(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, redisdriver.Open, srv.URL())
		}}
	}},
	{"redis (Sentinel)", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.RedisSentinel(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			return openURL(t, redisdriver.Open, srv.URL())
		}}
	}},
	{"memcached", "driver", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedMemcached(t)
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				return openURL(t, memcached.Open, srv.URL())
			},
			TTLResolution: time.Second,
			MaxValueSize:  1000 << 10,
		}
	}},
	{"gocache redis", "gocache store", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedRedis(t)
		return conformance.Harness{NewStore: func(t conformance.TB) store.StoreInterface {
			opts, err := goredis.ParseURL(srv.URL())
			if err != nil {
				t.Fatalf("%v", err)
			}
			client := goredis.NewClient(opts)
			t.Cleanup(func() { client.Close() })
			return redisstore.NewRedis(client)
		}}
	}},
	{"gocache memcache", "gocache store", func(t *testing.T) conformance.Harness {
		srv := testservers.SharedMemcached(t)
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				return memcachestore.NewMemcache(gomemcache.New(srv.Addr()))
			},
			TTLResolution: time.Second,
			MaxValueSize:  1000 << 10,
			ExpectFail: map[string]string{
				"context": whyNoContext,
			},
		}
	}},
	{"ristretto", "gocache store", func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				c, err := ristretto.NewCache(&ristretto.Config{NumCounters: 1e5, MaxCost: 1 << 30, BufferItems: 64,
					Cost: func(v any) int64 { return int64(len(v.([]byte))) + 1 }})
				if err != nil {
					t.Fatalf("ristretto: %v", err)
				}
				t.Cleanup(c.Close)
				return ristrettostore.NewRistretto(c)
			},
			ExpectFail: map[string]string{
				"context":     whyNoContext,
				"no-aliasing": whyAliasing,
			},
		}
	}},
	{"bigcache", "gocache store", func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				c, err := bigcache.New(context.Background(), bigcache.DefaultConfig(time.Hour))
				if err != nil {
					t.Fatalf("bigcache: %v", err)
				}
				t.Cleanup(func() { c.Close() })
				return bigcachestore.NewBigcache(c)
			},
			ExpectFail: map[string]string{
				"context":   whyNoContext,
				"expiry":    whyNoTTL,
				"not-found": whyOwnMiss,
				"delete":    whyOwnMiss,
			},
		}
	}},
	{"freecache", "gocache store", func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				return freecachestore.NewFreecache(freecache.NewCache(128 << 20))
			},
			TTLResolution: time.Second,
			MaxValueSize:  100 << 10, // freecache caps an entry at 1/1024 of the cache
			ExpectFail: map[string]string{
				"context": whyNoContext,
				"delete":  "deleting a missing key fails with an error of its own; the library's adapter treats a failed delete of an absent key as done",
			},
		}
	}},
	{"go_cache", "gocache store", func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				return gocachestore.NewGoCache(gocache.New(gocache.NoExpiration, 0))
			},
			ExpectFail: map[string]string{
				"context":     whyNoContext,
				"no-aliasing": whyAliasing,
			},
		}
	}},
}

type results struct {
	mu  sync.Mutex
	out map[string]map[string]conformance.Result // target → check → result
}

func (r *results) add(target string, res conformance.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.out[target] == nil {
		r.out[target] = map[string]conformance.Result{}
	}
	r.out[target][res.Check] = res
}

// TestDrivers runs the suite over every driver and over gocache's own store
// modules, and checks docs/drivers.md against the outcome (-update rewrites
// it).
func TestDrivers(t *testing.T) {
	res := &results{out: map[string]map[string]conformance.Result{}}
	t.Run("targets", func(t *testing.T) { runTargets(t, res) })
	compareTable(t, res)
}

func runTargets(t *testing.T, res *results) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel() // mostly waiting on TTLs: overlap them
			h := tg.harness(t)
			h.OnResult = func(r conformance.Result) { res.add(tg.name, r) }
			conformance.Run(t, h)
		})
	}
}

// compareTable checks docs/drivers.md against the outcome (-update rewrites
// it).
func compareTable(t *testing.T, res *results) {
	if t.Failed() || len(res.out) < len(targets) {
		return // a failure, or a partial run (-run): no table to compare
	}
	table := renderTable(res)
	path := filepath.Join("..", "docs", "drivers.md")
	doc, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatalf("%v (run: go test ./conformance -run TestDrivers -update)", err)
	}
	const begin, end = "<!-- table: generated by go test ./conformance -run TestDrivers -update -->\n", "<!-- end of table -->\n"
	before, after := string(doc), ""
	if i := strings.Index(before, begin); i >= 0 {
		rest := before[i+len(begin):]
		before = before[:i]
		if j := strings.Index(rest, end); j >= 0 {
			after = rest[j+len(end):]
		}
	}
	want := before + begin + table + end + after
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("docs/drivers.md does not match this run's outcome; run: go test ./conformance -run TestDrivers -update\n\nthis run:\n%s", table)
	}
}

func renderTable(r *results) string {
	var b strings.Builder
	b.WriteString("| check |")
	for _, tg := range targets {
		fmt.Fprintf(&b, " %s |", tg.name)
	}
	b.WriteString("\n|---|")
	for range targets {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var notes []string
	for _, chk := range conformance.Checks() {
		fmt.Fprintf(&b, "| `%s` |", chk.Name)
		for _, tg := range targets {
			res := r.out[tg.name][chk.Name]
			cell := map[conformance.Outcome]string{conformance.Pass: "pass", conformance.Skip: "n/a",
				conformance.ExpectedFail: "**fails**", conformance.Fail: "FAIL"}[res.Outcome]
			if res.Outcome == conformance.ExpectedFail {
				notes = append(notes, fmt.Sprintf("- **%s**, `%s`: %s", tg.name, chk.Name, res.Reason))
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nKinds: ")
	var kinds []string
	for _, tg := range targets {
		kinds = append(kinds, fmt.Sprintf("%s (%s)", tg.name, tg.kind))
	}
	b.WriteString(strings.Join(kinds, ", ") + ".\n")
	if len(notes) > 0 {
		sort.Strings(notes)
		b.WriteString("\nWhy the failures fail:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	b.WriteString("\nChecks:\n\n")
	for _, chk := range conformance.Checks() {
		fmt.Fprintf(&b, "- `%s`: %s.\n", chk.Name, chk.Doc)
	}
	return b.String()
}
