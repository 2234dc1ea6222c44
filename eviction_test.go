package sessions_test

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
	"github.com/sessionstorage/sessions/internal/poll"
)

// A mass sweep (several batches per shard, requests and a second sweep
// running alongside) evicts exactly the idle sessions that no request uses
// and that storage holds entirely: never one pinned by a request, with
// unsaved changes, queued for a write, being written under a key it was
// never stored under, or never stored. Evicted sessions reload from
// storage with their data; idle eviction neither deletes from storage nor
// fires OnSessionEnd.
func TestBatchedEvictionSparesSessionsInUseOrUnsaved(t *testing.T) {
	const (
		clean   = 12000 // ~190 per shard: two batches each
		touched = 200   // clean, read during the sweep: may or may not go
		pinned  = 20    // a request is using them
		renewed = 30    // renewed: being written under the new key
		writing = 30    // stored, then changed: being written
		dirty   = 100   // stored, then changed: queued
		fresh   = 50    // never stored
		queued  = 30    // clean, but a refresh of the stored access time is queued
	)
	b := newBackend(t)
	clk := newClock()
	var ends atomic.Int32
	// Timeout 1h: a request refreshes the stored access time (a write
	// with no changed key) when it is 6 min old. WriteBehind is long
	// enough for the renewals and writes below to go in one flush.
	n := newClockNode(t, b, sessions.Config{IdleEvict: time.Minute, Timeout: time.Hour, WriteBehind: 100 * time.Millisecond,
		StorageTimeout: time.Minute, OnSessionEnd: func(*sessions.Session, sessions.EndReason) { ends.Add(1) }}, clk)

	newSessions := func(k int, key string) []*client {
		cs := make([]*client, k)
		for i := range cs {
			cs[i] = newClient(t)
			cs[i].must(n.h, fmt.Sprintf("/set?k=%s&v=%d", key, i), 200)
		}
		return cs
	}
	cleanCs := newSessions(clean, "v")
	pinnedCs := newSessions(pinned, "v")
	renewedCs := newSessions(renewed, "v")
	writingCs := newSessions(writing, "v")
	dirtyCs := newSessions(dirty, "v")
	queuedCs := newSessions(queued, "v")
	poll.Eventually(t, 10*time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 })

	held := make([]*heldRequest, pinned)
	for i, c := range pinnedCs {
		held[i] = hold(t, n.m, c.cookie, setKey("held", "yes"))
	}
	// From here on, writes hang until the test lets them through.
	b.fault.SetOpMode(faultstore.OpSet, faultstore.Hang)
	b.fault.SetOpMode(faultstore.OpSetMany, faultstore.Hang)
	b.fault.SetOpMode(faultstore.OpCAS, faultstore.Hang)
	cas := b.fault.CASes.Load() + b.fault.Sets.Load()
	for i := range renewed {
		renewedCs[i].must(n.h, "/renew", 200)
		if i < writing {
			writingCs[i].must(n.h, "/set?k=d&v=changed", 200)
		}
	}
	// Their writes are taken by the flusher (no longer queued; the renewed
	// ones have no changed key) and hang; what follows stays queued.
	poll.Eventually(t, 5*time.Second, "renewed and changed sessions being written", func() bool {
		return b.fault.CASes.Load()+b.fault.Sets.Load()-cas >= renewed+writing
	})
	for _, c := range dirtyCs {
		c.must(n.h, "/set?k=d&v=changed", 200)
	}
	freshCs := newSessions(fresh, "f")
	clk.advance(7 * time.Minute)
	for _, c := range queuedCs {
		c.must(n.h, "/get?k=v", 200)
	}

	clk.advance(2 * time.Minute)
	// Requests for some clean sessions, and a second sweep, race the sweep.
	var wg sync.WaitGroup
	errs := make(chan error, touched)
	for _, part := range [][]*client{cleanCs[:touched/2], cleanCs[touched/2 : touched]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range part {
				i := indexOf(cleanCs, c)
				if code, body := c.do(n.h, "/get?k=v"); code != 200 || body != strconv.Itoa(i) {
					errs <- fmt.Errorf("session %d read during the sweep: %d %q, want %d", i, code, body, i)
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); sessions.Sweep(n.m, clk.now()) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Every untouched clean session went; a touched one was either used
	// before the sweep reached it or reloaded by its read.
	st := n.m.Stats()
	if lo, hi := uint64(clean-touched), uint64(clean); st.Evicted < lo || st.Evicted > hi {
		t.Fatalf("evicted %d, want %d..%d (only idle, clean, unused sessions)", st.Evicted, lo, hi)
	}
	if want := touched + pinned + renewed + writing + dirty + fresh + queued; st.Resident != want {
		t.Fatalf("%d resident after the sweep, want %d", st.Resident, want)
	}
	// The spared sessions still have what storage does not hold yet: a
	// reload would have lost it.
	check := func(what string, cs []*client, key string, want func(i int) string) {
		t.Helper()
		for i, c := range cs {
			if code, got := c.do(n.h, "/get?k="+key); code != 200 || got != want(i) {
				t.Fatalf("%s session %d: %s=%q (%d), want %q", what, i, key, got, code, want(i))
			}
		}
	}
	check("renewed", renewedCs, "v", strconv.Itoa)
	check("being written", writingCs, "d", func(int) string { return "changed" })
	check("dirty", dirtyCs, "d", func(int) string { return "changed" })
	check("never stored", freshCs, "f", strconv.Itoa)
	for i, h := range held {
		if res := h.finish(t); res.code != 200 {
			t.Fatalf("pinned session %d: held request answered %d %q", i, res.code, res.body)
		}
	}
	check("pinned", pinnedCs, "held", func(int) string { return "yes" })
	check("queued", queuedCs, "v", strconv.Itoa)

	b.fault.SetMode(faultstore.Pass)
	poll.Eventually(t, 10*time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 })
	// Everything is saved now: the next sweep evicts every session, and
	// each reloads with its data, with one storage read.
	clk.advance(2 * time.Minute)
	sessions.Sweep(n.m, clk.now())
	if st := n.m.Stats(); st.Resident != 0 {
		t.Fatalf("%d resident after everything was saved and idle", st.Resident)
	}
	gets := b.fault.Gets.Load()
	check("evicted", cleanCs[:1000], "v", strconv.Itoa)
	check("evicted renewed", renewedCs, "v", strconv.Itoa)
	check("evicted written", writingCs, "d", func(int) string { return "changed" })
	check("evicted dirty", dirtyCs, "d", func(int) string { return "changed" })
	check("evicted never stored", freshCs, "f", strconv.Itoa)
	check("evicted pinned", pinnedCs, "held", func(int) string { return "yes" })
	check("evicted queued", queuedCs, "v", strconv.Itoa)
	if got, want := b.fault.Gets.Load()-gets, int64(1000+renewed+writing+dirty+fresh+pinned+queued); got != want {
		t.Fatalf("%d storage reads to reload %d evicted sessions, want one each", got, want)
	}
	if b.fault.Deletes.Load() != renewed || ends.Load() != 0 {
		t.Fatalf("storage deletes %d (want %d, the renewed sessions' old keys), OnSessionEnd fired %d times (want 0)",
			b.fault.Deletes.Load(), renewed, ends.Load())
	}
}

func indexOf(cs []*client, c *client) int {
	for i := range cs {
		if cs[i] == c {
			return i
		}
	}
	return -1
}

// A mass timeout sweep (sticky mode) ends each idle session unused by any
// request exactly once, firing OnSessionEnd with no lock held (the
// callback reads Stats, which takes every shard's read lock), and queues
// the storage deletes; a session a request uses past its deadline is not
// ended.
func TestBatchedTimeoutEndsIdleSessionsOnce(t *testing.T) {
	const total, pinned = 3000, 10
	b := newBackend(t)
	clk := newClock()
	var n *node
	var mu sync.Mutex
	ended := map[string]int{}
	n = newClockNode(t, b, sessions.Config{IdleEvict: -1, Timeout: time.Hour, WriteBehind: 2 * time.Millisecond,
		OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
			_ = n.m.Stats()
			v, _, _ := sessions.Get[string](s, "v")
			mu.Lock()
			ended[s.ID()+"="+v]++
			mu.Unlock()
		}}, clk)
	cs := make([]*client, total)
	for i := range cs {
		cs[i] = newClient(t)
		cs[i].must(n.h, fmt.Sprintf("/set?k=v&v=%d", i), 200)
	}
	poll.Eventually(t, 10*time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 })
	held := make([]*heldRequest, pinned)
	for i := range held {
		held[i] = hold(t, n.m, cs[i].cookie, readUser)
	}
	clk.advance(time.Hour + time.Minute)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); sessions.Sweep(n.m, clk.now()) }()
	}
	wg.Wait()
	mu.Lock()
	if len(ended) != total-pinned {
		t.Errorf("%d sessions ended, want %d", len(ended), total-pinned)
	}
	for i, c := range cs {
		k := c.cookie + "=" + strconv.Itoa(i)
		switch got := ended[k]; {
		case i < pinned && got != 0:
			t.Errorf("session %d ended while a request used it", i)
		case i >= pinned && got != 1:
			t.Errorf("session %d: OnSessionEnd fired %d times, want once", i, got)
		}
	}
	mu.Unlock()
	for _, h := range held {
		h.finish(t)
	}
	if st := n.m.Stats(); st.Resident != pinned || st.Evicted != 0 {
		t.Fatalf("%d resident, %d evicted; want %d resident, none evicted", st.Resident, st.Evicted, pinned)
	}
	poll.Eventually(t, 10*time.Second, "deletes flushed", func() bool { return b.entries() == pinned })
	for _, c := range cs[pinned : pinned+100] {
		c.must(n.h, "/get?k=v", http.StatusNotFound)
	}
}
