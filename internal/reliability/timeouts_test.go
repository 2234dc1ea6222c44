package reliability_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// With the storage server hung (SIGSTOP: it accepts connections and answers
// nothing), every wait of the library on it ends within StorageTimeout.
// The bounds below are that timeout (or Close's deadline) plus a generous
// slack for a loaded machine; before drivers passed the deadline on,
// go-redis waited its own 5 s read timeout.

const (
	hungTimeout = 300 * time.Millisecond
	hungSlack   = 1700 * time.Millisecond
)

// hungTarget is a storage URL whose servers can be paused.
type hungTarget struct {
	name    string
	url     func(t *testing.T) (url string, servers []*testservers.Server)
	timeout time.Duration // StorageTimeout for this target
}

func hungTargets() []hungTarget {
	one := func(start func(testing.TB) *testservers.Server, query string) func(t *testing.T) (string, []*testservers.Server) {
		return func(t *testing.T) (string, []*testservers.Server) {
			s := start(t)
			return s.URL() + query, []*testservers.Server{s}
		}
	}
	return []hungTarget{
		{name: "redis", url: one(testservers.Redis, ""), timeout: hungTimeout},
		{name: "redis-cluster", url: func(t *testing.T) (string, []*testservers.Server) {
			cl := testservers.RedisCluster(t)
			return cl.URL(), cl.Nodes()
		}, timeout: hungTimeout},
		// gomemcache takes no context: the driver's timeout option bounds
		// each round trip and must not exceed StorageTimeout.
		{name: "memcached", url: one(testservers.Memcached, "?timeout=250ms"), timeout: hungTimeout},
		// pgx and go-sql-driver honour the context's deadline.
		{name: "postgres", url: one(testservers.Postgres, ""), timeout: hungTimeout},
		{name: "mariadb", url: one(testservers.MariaDB, ""), timeout: hungTimeout},
	}
}

func pauseAll(t *testing.T, srvs []*testservers.Server) {
	for _, s := range srvs {
		s.Pause(t)
	}
}

func resumeAll(t *testing.T, srvs []*testservers.Server) {
	for _, s := range srvs {
		s.Resume(t)
	}
}

// A cluster-mode request reads the session from storage: with the storage
// hung it gets the ErrorHandler's 503 within StorageTimeout.
func TestClusterReadBoundedWhileStorageHangs(t *testing.T) {
	for _, tg := range hungTargets() {
		t.Run(tg.name, func(t *testing.T) {
			url, srvs := tg.url(t)
			m := newManager(t, sessions.Config{Storage: url, Cluster: true, StorageTimeout: tg.timeout})
			defer closeWithin(t, m, 5*time.Second)
			h := m.Handler(counterApp())
			b := &browser{}
			if code, body := b.get(h, "/incr"); code != 200 || body != "1" {
				t.Fatalf("before the pause: %d %q", code, body)
			}
			pauseAll(t, srvs)
			for i := range 3 { // the first on a pooled connection, the next after it was dropped
				start := time.Now()
				code, body := b.get(h, "/get")
				d := time.Since(start)
				t.Logf("request %d with the storage hung: %d after %v", i, code, d)
				if code != http.StatusServiceUnavailable || !strings.Contains(body, "Session storage unavailable") {
					t.Fatalf("request %d with the storage hung: %d %q, want 503", i, code, body)
				}
				if d > tg.timeout+hungSlack {
					t.Fatalf("request %d waited %v on the hung storage; StorageTimeout is %v", i, d, tg.timeout)
				}
			}
			resumeAll(t, srvs)
			poll.Eventually(t, 10*time.Second, "storage answers after resume", func() bool {
				code, body := b.get(h, "/get")
				return code == 200 && body == "1"
			})
		})
	}
}

// A sticky-mode request for a session not in memory reads the storage: with
// the storage hung it is answered within StorageTimeout.
func TestStickyMissBoundedWhileStorageHangs(t *testing.T) {
	for _, tg := range hungTargets() {
		t.Run(tg.name, func(t *testing.T) {
			url, srvs := tg.url(t)
			cfg := sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond, StorageTimeout: tg.timeout}
			m1 := newManager(t, cfg)
			b := &browser{}
			if code, body := b.get(m1.Handler(counterApp()), "/incr"); code != 200 || body != "1" {
				t.Fatalf("first server: %d %q", code, body)
			}
			if err := closeWithin(t, m1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			m2 := newManager(t, cfg) // its memory does not have the session
			defer closeWithin(t, m2, 5*time.Second)
			h := m2.Handler(counterApp())
			pauseAll(t, srvs)
			start := time.Now()
			code, body := b.get(h, "/get")
			d := time.Since(start)
			t.Logf("memory miss with the storage hung: %d %q after %v", code, body, d)
			if d > tg.timeout+hungSlack {
				t.Fatalf("a memory miss waited %v on the hung storage; StorageTimeout is %v", d, tg.timeout)
			}
			resumeAll(t, srvs)
		})
	}
}

// Close with writes pending and the storage hung returns by its deadline.
func TestCloseBoundedWhileStorageHangs(t *testing.T) {
	for _, tg := range hungTargets() {
		t.Run(tg.name, func(t *testing.T) {
			url, srvs := tg.url(t)
			m := newManager(t, sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond, StorageTimeout: tg.timeout})
			h := m.Handler(counterApp())
			b := &browser{}
			b.get(h, "/incr")
			poll.Eventually(t, 5*time.Second, "first flush", func() bool { return m.Stats().StorageWrites > 0 && m.Stats().PendingWrites == 0 })
			pauseAll(t, srvs)
			if code, body := b.get(h, "/incr"); code != 200 || body != "2" {
				t.Fatalf("sticky request with the storage hung: %d %q", code, body)
			}
			const deadline = 500 * time.Millisecond
			start := time.Now()
			err := closeWithin(t, m, deadline)
			d := time.Since(start)
			t.Logf("Close(%v) with the storage hung: %v after %v", deadline, err, d)
			if err == nil {
				t.Error("Close with the storage hung and a write pending reported success")
			}
			if d > deadline+hungSlack {
				t.Fatalf("Close with a %v deadline took %v with the storage hung", deadline, d)
			}
			resumeAll(t, srvs)
		})
	}
}
