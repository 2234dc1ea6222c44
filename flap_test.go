package sessions_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/poll"
)

// Routing flaps in sticky mode: a user's requests move between two
// servers that both keep the session in memory.

// flap writes one key per round on alternating servers (in the pattern
// given), waits for the writer's write-behind, and reads every key so far
// back on the other server: no stale read, and no key lost in storage.
func flapRounds(t *testing.T, servers []*node, pattern string, rounds int, stored func(id, k string) bool) {
	t.Helper()
	c := newClient(t)
	var keys []string
	for round := 0; round < rounds; round++ {
		w := servers[pattern[round%len(pattern)]-'A']
		r := servers[pattern[(round+1)%len(pattern)]-'A']
		k := fmt.Sprintf("k%02d", round)
		c.must(w.h, "/set?k="+k+"&v=v", 200)
		keys = append(keys, k)
		sort.Strings(keys)
		poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return w.m.Stats().PendingWrites == 0 })
		if got := c.must(r.h, "/keys", 200); got != strings.Join(keys, ",") {
			t.Fatalf("round %d: a request on the other server read keys %q, want %q (a stale copy)", round, got, strings.Join(keys, ","))
		}
	}
	for _, s := range servers {
		poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return s.m.Stats().PendingWrites == 0 })
	}
	for _, k := range keys {
		if !stored(c.cookie, k) {
			t.Errorf("key %s lost from storage", k)
		}
	}
}

func TestStickyFlapNoStaleReadNoLostKey(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{WriteBehind: 2 * time.Millisecond}
	a, bb := newNode(t, b, cfg), newNode(t, b, cfg)
	stored := func(id, k string) bool { _, ok := b.storedValue(t, id, k); return ok }
	for _, pattern := range []string{"AB", "AAB", "ABB", "AABBA"} {
		t.Run(pattern, func(t *testing.T) { flapRounds(t, []*node{a, bb}, pattern, 12, stored) })
	}
}

// Requests of one session sent to two servers at once: both servers' keys
// survive in storage (the later flush merges instead of overwriting).
func TestStickyConcurrentWritesOnTwoServersLoseNothing(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{WriteBehind: 2 * time.Millisecond}
	a, other := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(a.h, "/set?k=base&v=1", 200)
	poll.Eventually(t, time.Second, "stored", func() bool { return b.has(c.cookie) })
	c.must(other.h, "/get?k=base", 200) // resident on both
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for i, n := range []*node{a, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cc := &client{t: t, name: "session", cookie: c.cookie}
				cc.must(n.h, fmt.Sprintf("/set?k=r%02d-%d&v=v", round, i), 200)
			}()
		}
		wg.Wait()
	}
	for _, n := range []*node{a, other, a} {
		poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return n.m.Stats().PendingWrites == 0 })
	}
	for round := 0; round < 20; round++ {
		for i := 0; i < 2; i++ {
			if _, ok := b.storedValue(t, c.cookie, fmt.Sprintf("r%02d-%d", round, i)); !ok {
				t.Errorf("key r%02d-%d lost: a flush replaced a newer stored version", round, i)
			}
		}
	}
	if a.m.Stats().Conflicts+other.m.Stats().Conflicts == 0 {
		t.Error("no flush ever met the other server's version; the test did not race")
	}
}

// A logout on one server is not undone by the other server's write-behind
// of a change it made in parallel.
func TestStickyLogoutOnOtherServerIsNotWrittenBack(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{WriteBehind: 20 * time.Millisecond}
	a, other := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(a.h, "/set?k=user&v=alice", 200)
	id := c.cookie
	poll.Eventually(t, time.Second, "stored", func() bool { return b.has(id) })
	c.must(other.h, "/invalidate", 200) // the balancer sent the logout to the other server
	poll.Eventually(t, time.Second, "deleted", func() bool { return !b.has(id) })
	late := &client{t: t, name: "session", cookie: id}
	late.must(a.h, "/set?k=cart&v=full", 200) // a's copy still looks live to a
	poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return a.m.Stats().PendingWrites == 0 })
	if b.has(id) {
		t.Fatal("the logged-out session was written back by the other server")
	}
	late.must(a.h, "/get?k=user", 404)
}
