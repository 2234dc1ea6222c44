package sessions_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// A storage that fails some calls and not others (a dead shard) is
// reported once as failing, then summarized at most once per 30 s, and
// once as recovered at its first success 10 s after the last failure:
// not one failing/recovered pair per request (cluster mode, on a clock the
// test drives).
func TestStorageHealthLogsDoNotFlap(t *testing.T) {
	b := newBackend(t)
	clock := newFakeClock()
	logs := &logBuffer{}
	m, err := sessions.NewWithClock(sessions.Config{Store: b.fault, Cluster: true, Logger: slogTo(logs)}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(t.Context())
	h := m.Handler(testApp())
	healthy, broken := newClient(t), newClient(t)
	healthy.must(h, "/set?k=a&v=0", 200)
	broken.must(h, "/set?k=a&v=0", 200)
	id, _ := sessions.CookieID(broken.cookie)
	brokenKey := adapter.Key("sess:", id)
	b.fault.FailKeys(func(k string) bool { return k == brokenKey })
	for i := range 100 {
		clock.advance(10 * time.Millisecond)
		healthy.must(h, "/set?k=a&v="+strings.Repeat("x", 1+i%5), 200)
		broken.must(h, "/set?k=a&v="+strings.Repeat("y", 1+i%5), http.StatusServiceUnavailable)
	}
	if n := logs.count("storage failing"); n != 1 {
		t.Errorf("%d 'storage failing' lines over 100 rounds of a half-failing storage, want 1:\n%s", n, logs)
	}
	if n := logs.count("storage recovered"); n != 0 {
		t.Errorf("%d 'storage recovered' lines while it kept failing, want 0", n)
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines, want the one 'storage failing' (a failed request is not an error line of its own):\n%s", n, logs)
	}
	// 40 more seconds of it, a round a second: one summary.
	for range 40 {
		clock.advance(time.Second)
		broken.must(h, "/set?k=a&v=late", http.StatusServiceUnavailable)
		healthy.must(h, "/set?k=a&v=on", 200)
	}
	if n := logs.count("storage still failing"); n != 1 {
		t.Errorf("%d summaries over 41 s of failures, want 1 (at most one per 30 s)", n)
	}
	b.fault.FailKeys(nil)
	clock.advance(11 * time.Second)
	healthy.must(h, "/set?k=a&v=1", 200)
	broken.must(h, "/set?k=a&v=1", 200)
	if n := logs.count("storage recovered"); n != 1 {
		t.Errorf("%d 'storage recovered' lines after it answered 10 s with no failure, want 1:\n%s", n, logs)
	}
	if n := logs.count("storage failing"); n != 1 {
		t.Errorf("%d 'storage failing' lines in all, want 1", n)
	}
}

// Sticky mode over a half-failing storage: one failure line, and the
// resident sessions are rewritten once for the episode, not after every
// write that lands between two that fail.
func TestStickyFlappingStorageRewritesOnce(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: time.Millisecond})
	healthy, broken := newClient(t), newClient(t)
	healthy.must(n.h, "/set?k=a&v=0", 200)
	broken.must(n.h, "/set?k=a&v=0", 200)
	poll.Eventually(t, time.Second, "both stored", func() bool { return b.has(healthy.cookie) && b.has(broken.cookie) })
	id, _ := sessions.CookieID(broken.cookie)
	brokenKey := adapter.Key("sess:", id)
	b.fault.FailKeys(func(k string) bool { return k == brokenKey })
	for i := range 200 {
		healthy.must(n.h, "/set?k=a&v="+strings.Repeat("x", 1+i%5), 200)
		broken.must(n.h, "/set?k=a&v="+strings.Repeat("y", 1+i%5), 200)
		time.Sleep(time.Millisecond) // real flushes between the requests
	}
	poll.Eventually(t, time.Second, "failures seen", func() bool { return n.m.Stats().StorageErrors > 2 })
	if c := n.logs.count("storage failing"); c != 1 {
		t.Errorf("%d 'storage failing' lines, want 1", c)
	}
	if c := n.logs.count("writing the sessions held in memory again"); c > 1 {
		t.Errorf("the resident sessions were rewritten %d times while the storage flapped, want at most once per episode", c)
	}
	b.fault.FailKeys(nil)
}
