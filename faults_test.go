package sessions_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
)

func TestStickyServesFromMemoryWhileStorageFailsAndFlushesAfter(t *testing.T) {
	for _, tc := range []struct {
		mode  faultstore.Mode
		plain bool // without SetMany: one write per session
	}{{faultstore.Fail, false}, {faultstore.Hang, false}, {faultstore.Fail, true}, {faultstore.Hang, true}} {
		mode := tc.mode
		b := newBackend(t)
		var st store.StoreInterface = b.fault
		if tc.plain {
			st = b.fault.Plain()
		}
		n := newNode(t, b, sessions.Config{Store: st, WriteBehind: 10 * time.Millisecond, StorageTimeout: 30 * time.Millisecond})
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		poll.Eventually(t, time.Second, "stored", func() bool { return b.has(c.cookie) })

		b.fault.SetMode(mode)
		for i := 0; i < 20; i++ {
			poll.Returns(t, 5*time.Second, "a request while storage is down", func() {
				c.must(n.h, "/incr?k=n", 200)
				c.must(n.h, "/set?k=a&v=2", 200)
			})
		}
		poll.Eventually(t, 2*time.Second, "failed flushes counted", func() bool { return n.m.Stats().StorageErrors > 0 })
		if p := n.m.Stats().PendingWrites; p != 1 {
			t.Fatalf("mode %d: %d pending writes, want 1 (coalesced)", mode, p)
		}
		if got := n.logs.count("storage failing"); got != 1 {
			t.Fatalf("mode %d: storage failure logged %d times, want once:\n%s", mode, got, n.logs)
		}

		b.fault.SetMode(faultstore.Pass)
		poll.Eventually(t, 10*time.Second, "flushed after recovery", func() bool { return n.m.Stats().PendingWrites == 0 })
		if v, _ := b.storedValue(t, c.cookie, "a"); v != "2" {
			t.Fatalf("mode %d: stored a=%q after recovery, want 2", mode, v)
		}
		if v, _ := b.storedValue(t, c.cookie, "n"); v != "20" {
			t.Fatalf("mode %d: stored n=%q after recovery, want 20", mode, v)
		}
		if !strings.Contains(n.logs.String(), "storage recovered") {
			t.Fatal("recovery not logged")
		}
	}
}

func TestStickyMemoryMissWhileStorageDownUsesErrorHandler(t *testing.T) {
	b := newBackend(t)
	n1 := newNode(t, b, sessions.Config{})
	c := newClient(t)
	c.must(n1.h, "/set?k=a&v=1", 200)
	n1.close(t)
	var handled atomic.Value
	n2 := newNode(t, b, sessions.Config{StorageTimeout: 30 * time.Millisecond,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			handled.Store(err)
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}})
	b.fault.SetMode(faultstore.Fail)
	c.must(n2.h, "/get?k=a", http.StatusServiceUnavailable)
	if err, _ := handled.Load().(error); !errors.Is(err, faultstore.ErrInjected) {
		t.Fatalf("ErrorHandler got %v", err)
	}
	if c.cookie == "" {
		t.Fatal("the failed request replaced the client's cookie")
	}
	b.fault.SetMode(faultstore.Pass)
	if got := c.must(n2.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("after recovery: %q", got)
	}
}

func TestClusterStorageDownAnswersThroughErrorHandler(t *testing.T) {
	for _, mode := range []faultstore.Mode{faultstore.Fail, faultstore.Hang} {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: true, StorageTimeout: 30 * time.Millisecond})
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		b.fault.SetMode(mode)
		// Read at request start fails.
		poll.Returns(t, 5*time.Second, "request with storage down", func() {
			r := httptest.NewRequest("GET", "/get?k=a", nil)
			r.AddCookie(&http.Cookie{Name: "session", Value: c.cookie})
			w := httptest.NewRecorder()
			n.h.ServeHTTP(w, r)
			if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Session storage unavailable") ||
				w.Header().Get("Retry-After") != "1" {
				t.Fatalf("mode %d: %d %q %v, want 503 with Retry-After and the default message", mode, w.Code, w.Body, w.Header())
			}
		})
		// A brand-new session fails at commit, before the response.
		fresh := newClient(t)
		poll.Returns(t, 5*time.Second, "commit with storage down", func() {
			code, _ := fresh.do(n.h, "/set?k=a&v=1")
			if code != http.StatusServiceUnavailable || fresh.cookie != "" {
				t.Fatalf("mode %d: commit failure gave %d and cookie %q, want 503 and no cookie", mode, code, fresh.cookie)
			}
		})
		b.fault.SetMode(faultstore.Pass)
		if got := c.must(n.h, "/get?k=a", 200); got != "1" {
			t.Fatalf("after recovery: %q", got)
		}
	}
}

func TestClusterFailedCommitIsNotVisibleLater(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{Cluster: true, StorageTimeout: 30 * time.Millisecond})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	// Reads work but writes fail: hide the write by failing only CAS.
	loaded, release, done := make(chan struct{}), make(chan struct{}), make(chan int)
	h := n.m.Handler(holdApp(loaded, release))
	go func() {
		code, _ := (&client{t: t, name: "session", cookie: c.cookie}).do(h, "/?k=a&v=lost")
		done <- code
	}()
	<-loaded
	b.fault.SetMode(faultstore.Fail)
	close(release)
	if code := <-done; code != http.StatusServiceUnavailable {
		t.Fatalf("failed commit answered %d, want 503", code)
	}
	b.fault.SetMode(faultstore.Pass)
	if got := c.must(n.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("a change whose commit failed became visible: %q", got)
	}
}

func TestCloseWithStorageDownReportsUnflushed(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{StorageTimeout: 10 * time.Millisecond})
	c := newClient(t)
	b.fault.SetMode(faultstore.Fail)
	c.must(n.h, "/set?k=a&v=1", 200)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := n.m.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 pending writes not flushed") {
		t.Fatalf("Close = %v, want a report of the unflushed write", err)
	}
	if code, _ := c.do(n.h, "/get?k=a"); code != http.StatusServiceUnavailable {
		t.Fatalf("request after Close: %d, want 503", code)
	}
}

func TestRequestsAfterCloseGetErrManagerClosed(t *testing.T) {
	var got error
	m := mustNew(t, sessions.Config{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		w.WriteHeader(503)
	}})
	h := m.Handler(testApp())
	must(t, m.Close(context.Background()))
	newClient(t).do(h, "/get?k=a")
	if !errors.Is(got, sessions.ErrManagerClosed) {
		t.Fatalf("ErrorHandler got %v, want ErrManagerClosed", got)
	}
	if err := m.Close(context.Background()); !errors.Is(err, sessions.ErrManagerClosed) {
		t.Fatalf("second Close = %v", err)
	}
}

func mustNew(t *testing.T, cfg sessions.Config) *sessions.Manager {
	t.Helper()
	m, err := sessions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Stats.WriteBehindLag is the age of the oldest change storage has not
// acknowledged: it grows while storage hangs and drops to zero once the
// queue is written.
func TestWriteBehindLagReportsTheLossWindow(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: 5 * time.Millisecond, StorageTimeout: 10 * time.Second})
	if lag := n.m.Stats().WriteBehindLag; lag != 0 {
		t.Fatalf("lag %v with nothing queued", lag)
	}
	b.fault.SetMode(faultstore.Hang)
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	start := time.Now()
	poll.Eventually(t, 2*time.Second, "the write in flight", func() bool { return b.fault.Writes() > 0 })
	// The lag is the age of the change by the wall clock (not the
	// Manager's clock): it grows as real time passes.
	const grown = 50 * time.Millisecond
	poll.Eventually(t, 5*time.Second, "the lag grows while storage hangs", func() bool { return n.m.Stats().WriteBehindLag >= grown })
	c.must(n.h, "/set?k=b&v=2", 200) // a newer change does not hide the older one
	if lag := n.m.Stats().WriteBehindLag; lag < grown || lag > time.Since(start)+time.Second {
		t.Fatalf("lag %v while the first change has waited %v", lag, time.Since(start))
	}
	b.fault.SetMode(faultstore.Pass)
	poll.Eventually(t, 5*time.Second, "queue written", func() bool { return n.m.Stats().PendingWrites == 0 })
	if lag := n.m.Stats().WriteBehindLag; lag != 0 {
		t.Fatalf("lag %v after the queue was written", lag)
	}
}

// After a storage failure, a session is not idle-evicted until it has been
// written again: the storage may have come back empty, and memory then
// holds the only copy.
func TestNoEvictionOfSessionsStorageMayHaveLost(t *testing.T) {
	b := newBackend(t)
	clk := newClock()
	n := newClockNode(t, b, sessions.Config{IdleEvict: time.Minute, Timeout: time.Hour, WriteBehind: time.Hour, StorageTimeout: 50 * time.Millisecond}, clk)
	kept := newClient(t)
	kept.must(n.h, "/set?k=a&v=1", 200)
	if sessions.Flush(n.m) != 0 || !b.has(kept.cookie) {
		t.Fatal("not stored")
	}
	b.fault.SetMode(faultstore.Fail)
	newClient(t).must(n.h, "/set?k=b&v=2", 200)
	if sessions.Flush(n.m) == 0 { // its write fails: an outage
		t.Fatal("a write succeeded while storage fails")
	}
	clk.advance(2 * time.Minute)
	clk.tick(3, n) // several sweeps past IdleEvict
	if ev := n.m.Stats().Evicted; ev != 0 {
		t.Fatalf("%d sessions evicted while storage was failing", ev)
	}
	// The storage comes back empty.
	if err := b.mem.Delete(context.Background(), adapter.Key("sess:", kept.cookie)); err != nil {
		t.Fatal(err)
	}
	b.fault.SetMode(faultstore.Pass)
	// The first flush lands the failed write: storage answers again, and
	// every resident session is queued to be written again.
	for i := 0; !b.has(kept.cookie); i++ {
		if i == 3 {
			t.Fatal("not written again after the outage")
		}
		if failed := sessions.Flush(n.m); failed != 0 {
			t.Fatalf("%d writes failed after recovery", failed)
		}
	}
	clk.tick(1, n)
	if ev := n.m.Stats().Evicted; ev == 0 {
		t.Fatal("not evicted once written again")
	}
	if got := kept.must(n.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("after the outage: %q", got)
	}
}
