package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
)

var checks = []Check{
	{"bytes", "values of 0, 1, 256 (every byte value), 64 KiB and the store's maximum bytes round-trip exactly", checkBytes},
	{"keys", "keys made of every character a session storage key can hold round-trip", checkKeys},
	{"not-found", "a missing key reports gocache's NotFound (errors.Is(err, &store.NotFound{}))", checkNotFound},
	{"overwrite", "Set on an existing key replaces its value", checkOverwrite},
	{"delete", "Delete removes a key; deleting it again, or a key never set, is not an error", checkDelete},
	{"no-aliasing", "a returned value is a copy: changing it, or the slice given to Set, leaves the stored value alone", checkNoAliasing},
	{"expiry", "an entry is present before its TTL, gone after TTL plus resolution, and an overwrite restarts the TTL", checkExpiry},
	{"isolation", "two key prefixes over one store never see or delete each other's entries, raw and through two Managers", checkIsolation},
	{"context", "a cancelled or expired context fails Get, Set and Delete, and the Set writes nothing", checkContext},
	{"concurrency", "32 goroutines writing and reading their own and shared keys see their own writes (run under -race)", checkConcurrency},
	{"session/sticky", "sticky Managers: write-behind reaches storage, a restarted Manager reloads, an idle-evicted session reloads", checkSessionSticky},
	{"session/cluster", "two cluster Managers read each other's writes on the next request", checkSessionCluster},
	{"session/renew-invalidate", "Renew removes the entry under the old ID and Invalidate removes the session, in both modes", checkRenewInvalidate},
	{"session/ends-once", "each session that times out fires OnSessionEnd exactly once across Managers sharing the store — held in memory, evicted, or written by a Manager that has closed — an Invalidate once, and nothing is left in storage", checkEndsOnce},
	{"session/ends-once/concurrent", "4 concurrent requests on 2 Managers that find one expired session fire OnSessionEnd once, in both modes", checkEndsOnceConcurrent},
	{"cap/compare-and-swap", "CompareAndSwap agrees with Get, refuses stale and absent/present mismatches, and has one winner per race", checkCAS},
	{"cap/compare-and-swap-many", "CompareAndSwapMany agrees entry by entry with CompareAndSwap (outcomes and stored values), with its TTL, and rejects mismatched slices", checkCASMany},
	{"cap/set-many", "SetMany stores every entry of a batch as Set would, with its TTL, overwriting, and rejects mismatched slices", checkSetMany},
	{"cap/list-keys", "ListKeys lists exactly the live keys under a prefix and stops on the callback's error", checkListKeys},
	{"cap/compare-and-delete", "CompareAndDelete deletes only an entry holding exactly the given value, never an absent or expired one, and has one winner among racing calls", checkCompareAndDelete},
	{"cap/expiry-lister", "ListExpiring lists exactly the live entries under a prefix whose TTL ends before an instant, earliest first, up to a limit, following every write and delete", checkExpiryLister},
}

// ns returns a random key namespace for one check.
func ns() string {
	var b [6]byte
	rand.Read(b[:])
	return "cf" + hex.EncodeToString(b[:]) + ":"
}

func newStore(c *C, h *Harness) store.StoreInterface {
	c.Helper()
	c.parent.Helper() // for go test's own line
	st := h.NewStore(c)
	if st == nil {
		c.Fatalf("Harness.NewStore returned nil")
	}
	return st
}

// get reads key and returns its bytes, accepting the two value types stores
// return.
func get(ctx context.Context, st store.StoreInterface, key string) ([]byte, error) {
	v, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	switch b := v.(type) {
	case []byte:
		return b, nil
	case string:
		return []byte(b), nil
	}
	return nil, fmt.Errorf("Get returned a %T; the library needs []byte or string", v)
}

// set writes as the library does: []byte values, and synchronous sets
// (ristretto buffers writes otherwise; other stores ignore the option).
func set(c *C, st store.StoreInterface, key string, value []byte, ttl time.Duration) {
	c.Helper()
	c.parent.Helper() // for go test's own line
	opts := []store.Option{store.WithSynchronousSet()}
	if ttl > 0 {
		opts = append(opts, store.WithExpiration(ttl))
	}
	if err := st.Set(bg(), key, value, opts...); err != nil {
		c.Fatalf("Set(%q, %d bytes): %v", key, len(value), err)
	}
}

func trySet(st store.StoreInterface, key string, value []byte) error {
	return st.Set(bg(), key, value, store.WithSynchronousSet())
}

func mustGet(c *C, st store.StoreInterface, key string) []byte {
	c.Helper()
	c.parent.Helper() // for go test's own line
	b, err := get(bg(), st, key)
	if err != nil {
		c.Fatalf("Get(%q) after Set: %v", key, err)
	}
	return b
}

func isNotFound(err error) bool { return errors.Is(err, &store.NotFound{}) }

func expectNotFound(c *C, st store.StoreInterface, key, when string) {
	c.Helper()
	c.parent.Helper() // for go test's own line
	_, err := get(bg(), st, key)
	switch {
	case err == nil:
		c.Errorf("Get(%q) %s: found; want NotFound", key, when)
	case !isNotFound(err):
		c.Errorf("Get(%q) %s: %v; want an error matching errors.Is(err, &store.NotFound{}) (return store.NotFoundWithCause(yourErr))", key, when, err)
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func checkBytes(c *C, h *Harness) {
	st := newStore(c, h)
	p := ns()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"empty", []byte{}},
		{"one byte", []byte{0}},
		{"all 256 byte values", all},
		{"64 KiB", pattern(64 << 10)},
		{fmt.Sprintf("maximum (%d bytes)", h.MaxValueSize), pattern(h.MaxValueSize)},
	} {
		if len(tc.value) > h.MaxValueSize {
			continue
		}
		key := p + strings.ReplaceAll(tc.name, " ", "_")
		if err := trySet(st, key, tc.value); err != nil {
			c.Errorf("Set %s value: %v", tc.name, err)
			continue
		}
		got, err := get(bg(), st, key)
		if err != nil {
			c.Errorf("Get %s value: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(got, tc.value) {
			c.Errorf("%s value: got %d bytes back, want the same %d bytes", tc.name, len(got), len(tc.value))
		}
	}
}

func checkKeys(c *C, h *Harness) {
	st := newStore(c, h)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	p := ns()
	keys := []string{p + alphabet, p + "sess:" + alphabet[:43], "sess:" + p + "x.y:z"}
	for i, k := range keys {
		set(c, st, k, []byte{byte(i)}, 0)
	}
	for i, k := range keys {
		got, err := get(bg(), st, k)
		if err != nil || len(got) != 1 || got[0] != byte(i) {
			c.Errorf("key %q: got %v, %v; want [%d]", k, got, err, i)
		}
	}
}

func checkNotFound(c *C, h *Harness) {
	st := newStore(c, h)
	expectNotFound(c, st, ns()+"never-set", "of a key never set")
}

func checkOverwrite(c *C, h *Harness) {
	st := newStore(c, h)
	k := ns() + "k"
	set(c, st, k, []byte("first value, longer"), 0)
	set(c, st, k, []byte("second"), 0)
	if got := mustGet(c, st, k); string(got) != "second" {
		c.Errorf("after overwrite: %q, want %q", got, "second")
	}
}

func checkDelete(c *C, h *Harness) {
	st := newStore(c, h)
	k := ns() + "k"
	set(c, st, k, []byte("v"), 0)
	if err := st.Delete(bg(), k); err != nil {
		c.Fatalf("Delete: %v", err)
	}
	expectNotFound(c, st, k, "after Delete")
	if err := st.Delete(bg(), k); err != nil {
		c.Errorf("Delete of a deleted key: %v; want nil (idempotent)", err)
	}
	if err := st.Delete(bg(), ns()+"never-set"); err != nil {
		c.Errorf("Delete of a key never set: %v; want nil", err)
	}
}

func checkNoAliasing(c *C, h *Harness) {
	st := newStore(c, h)
	k := ns() + "k"
	in := []byte("original")
	set(c, st, k, in, 0)
	copy(in, "XXXXXXXX")
	got := mustGet(c, st, k)
	if string(got) != "original" {
		c.Errorf("changing the slice passed to Set changed the stored value to %q", got)
	}
	if len(got) > 0 {
		got[0] = 'Y'
	}
	if again := mustGet(c, st, k); string(again) != "original" {
		c.Errorf("changing a slice returned by Get changed the stored value to %q", again)
	}
}

func checkExpiry(c *C, h *Harness) {
	st := newStore(c, h)
	r := h.TTLResolution
	ttl := 4 * r
	p := ns()
	var wg sync.WaitGroup
	c.goSafe(&wg, func() { // present before TTL, gone after TTL + resolution
		k := p + "plain"
		set(c, st, k, []byte("v"), ttl)
		time.Sleep(r)
		if _, err := get(bg(), st, k); err != nil {
			c.Errorf("entry with TTL %v read after %v: %v; want present", ttl, r, err)
		}
		time.Sleep(ttl) // now at TTL + resolution
		expectNotFound(c, st, k, fmt.Sprintf("%v after Set with TTL %v", ttl+r, ttl))
	})
	c.goSafe(&wg, func() { // overwrite restarts the TTL
		k := p + "reset"
		set(c, st, k, []byte("v1"), ttl)
		time.Sleep(3 * r)
		set(c, st, k, []byte("v2"), ttl) // new deadline 7r
		time.Sleep(5*r/2 + r/10)         // 5.6r: first deadline (4r) plus resolution passed
		if got, err := get(bg(), st, k); err != nil || string(got) != "v2" {
			c.Errorf("entry overwritten at 3r read at 5.6r (r=%v, TTL %v): %q, %v; want v2 (overwrite must restart the TTL)", r, ttl, got, err)
		}
		time.Sleep(2*r + r/2) // 8.1r: second deadline plus resolution passed
		expectNotFound(c, st, k, "after the overwritten TTL")
	})
	wg.Wait()
}

func checkIsolation(c *C, h *Harness) {
	st := newStore(c, h)
	a, b := ns(), ns()
	set(c, st, a+"k", []byte("a"), 0)
	set(c, st, b+"k", []byte("b"), 0)
	if err := st.Delete(bg(), a+"k"); err != nil {
		c.Fatalf("Delete: %v", err)
	}
	if got, err := get(bg(), st, b+"k"); err != nil || string(got) != "b" {
		c.Errorf("deleting %sk affected %sk: %q, %v", a, b, got, err)
	}
	// Two applications with their own prefixes over the same store.
	appA := startManager(c, st, sessions.Config{KeyPrefix: a})
	appB := startManager(c, st, sessions.Config{KeyPrefix: b})
	u := &user{}
	u.must(c, appA, "/set?k=owner&v=a", 200)
	appA.closeNow(c) // flush
	id, _ := sessions.CookieID(u.cookie)
	u.must(c, appB, "/get?k=owner", 404)
	if raw, err := get(bg(), st, adapter.Key(a, id)); err != nil || len(raw) == 0 {
		c.Errorf("app A's session is not stored under its prefix %q: %v", a, err)
	}
	if _, err := get(bg(), st, adapter.Key(b, id)); err == nil {
		c.Errorf("app A's session appeared under app B's prefix")
	}
}

func checkContext(c *C, h *Harness) {
	st := newStore(c, h)
	p := ns()
	cancelled, cancel := context.WithCancel(bg())
	cancel()
	expired, cancel2 := context.WithDeadline(bg(), time.Now().Add(-time.Second))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"cancelled": cancelled, "expired": expired} {
		k := p + name
		if err := st.Set(ctx, k, []byte("v")); err == nil {
			c.Errorf("Set with a %s context succeeded; want the context's error", name)
		}
		if _, err := get(bg(), st, k); err == nil {
			c.Errorf("Set with a %s context wrote the value", name)
		}
		set(c, st, k, []byte("v"), 0)
		if _, err := st.Get(ctx, k); err == nil {
			c.Errorf("Get with a %s context succeeded; want the context's error", name)
		}
		if err := st.Delete(ctx, k); err == nil {
			c.Errorf("Delete with a %s context succeeded; want the context's error", name)
		}
		if _, err := get(bg(), st, k); err != nil {
			c.Errorf("Delete with a %s context removed the value", name)
		}
	}
}

func checkConcurrency(c *C, h *Harness) {
	st := newStore(c, h)
	p := ns()
	const workers, rounds = 32, 40
	shared := p + "shared"
	set(c, st, shared, []byte("w00-r000"), 0)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for w := 0; w < workers; w++ {
		c.goSafe(&wg, func() {
			own := fmt.Sprintf("%sown%02d", p, w)
			for r := 0; r < rounds; r++ {
				v := []byte(fmt.Sprintf("w%02d-r%03d", w, r))
				if err := trySet(st, own, v); err != nil {
					c.Errorf("worker %d Set: %v", w, err)
					return
				}
				got, err := get(bg(), st, own)
				if err != nil || !bytes.Equal(got, v) {
					if failures.Add(1) <= 3 {
						c.Errorf("worker %d read its own key back as %q, %v; want %q", w, got, err, v)
					}
				}
				if r%4 == 0 {
					if err := trySet(st, shared, v); err != nil {
						c.Errorf("worker %d Set shared: %v", w, err)
						return
					}
				}
				if got, err := get(bg(), st, shared); err != nil || len(got) != len(v) || got[0] != 'w' {
					if failures.Add(1) <= 3 {
						c.Errorf("worker %d read the shared key as %q, %v; want a whole value written by some worker", w, got, err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func checkCAS(c *C, h *Harness) {
	st := newStore(c, h)
	cas, ok := st.(driver.CompareAndSwapper)
	if !ok {
		c.Skipf("store has no CompareAndSwap (the library then re-reads before writing in cluster mode)")
	}
	p := ns()
	k := p + "k"
	try := func(old, value []byte, want bool, what string) {
		got, err := cas.CompareAndSwap(bg(), k, old, value, 0)
		if err != nil {
			c.Fatalf("CompareAndSwap %s: %v", what, err)
		}
		if got != want {
			c.Errorf("CompareAndSwap %s reported %v, want %v", what, got, want)
		}
	}
	try(nil, []byte("one"), true, "(absent key, old=nil)")
	if got := mustGet(c, st, k); string(got) != "one" {
		c.Errorf("Get after CompareAndSwap: %q, want one", got)
	}
	try(nil, []byte("two"), false, "(present key, old=nil)")
	try([]byte("wrong"), []byte("two"), false, "(wrong old)")
	try([]byte("on"), []byte("two"), false, "(old a prefix of current)")
	if got := mustGet(c, st, k); string(got) != "one" {
		c.Errorf("a failed CompareAndSwap changed the value to %q", got)
	}
	try([]byte("one"), []byte("two"), true, "(right old)")
	if got := mustGet(c, st, k); string(got) != "two" {
		c.Errorf("Get after successful CompareAndSwap: %q, want two", got)
	}
	absent := p + "absent"
	if ok, err := cas.CompareAndSwap(bg(), absent, []byte("x"), []byte("y"), 0); ok || err != nil {
		c.Errorf("CompareAndSwap with old != nil on an absent key: %v, %v; want false, nil", ok, err)
	}
	expectNotFound(c, st, absent, "after a refused CompareAndSwap")

	// A TTL'd entry that expired counts as absent.
	e := p + "expiring"
	if ok, err := cas.CompareAndSwap(bg(), e, nil, []byte("v"), 2*h.TTLResolution); !ok || err != nil {
		c.Fatalf("CompareAndSwap with TTL: %v, %v", ok, err)
	}
	time.Sleep(3 * h.TTLResolution)
	if ok, err := cas.CompareAndSwap(bg(), e, nil, []byte("again"), 0); !ok || err != nil {
		c.Errorf("CompareAndSwap(old=nil) on an expired entry: %v, %v; want true (expired counts as absent)", ok, err)
	}

	// Races: one winner per round.
	race := p + "race"
	const racers, rounds = 16, 5
	var cur []byte
	for round := 0; round < rounds; round++ {
		var wins atomic.Int32
		var wg sync.WaitGroup
		var winner atomic.Value
		for i := 0; i < racers; i++ {
			c.goSafe(&wg, func() {
				v := []byte(fmt.Sprintf("round%d-racer%d", round, i))
				ok, err := cas.CompareAndSwap(bg(), race, cur, v, 0)
				if err != nil {
					c.Errorf("racing CompareAndSwap: %v", err)
					return
				}
				if ok {
					wins.Add(1)
					winner.Store(v)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			c.Fatalf("round %d: %d of %d concurrent CompareAndSwap calls with the same old value won; want exactly 1", round, n, racers)
		}
		cur, _ = winner.Load().([]byte)
		if got := mustGet(c, st, race); !bytes.Equal(got, cur) {
			c.Fatalf("round %d: stored %q, but the winner wrote %q", round, got, cur)
		}
	}
}

func checkListKeys(c *C, h *Harness) {
	st := newStore(c, h)
	lister, ok := st.(driver.KeyLister)
	if !ok {
		c.Skipf("store has no ListKeys (sessionctl ls/purge say the storage cannot list)")
	}
	p := ns()
	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		k := fmt.Sprintf("%sk%d", p, i)
		set(c, st, k, []byte("v"), 0)
		want[k] = true
	}
	set(c, st, p[:len(p)-1]+"-sibling", []byte("v"), 0) // shares all but the last character
	set(c, st, ns()+"other", []byte("v"), 0)
	set(c, st, p+"expiring", []byte("v"), h.TTLResolution)
	time.Sleep(2*h.TTLResolution + 10*time.Millisecond)
	got := map[string]bool{}
	if err := lister.ListKeys(bg(), p, func(k string) error { got[k] = true; return nil }); err != nil {
		c.Fatalf("ListKeys: %v", err)
	}
	for k := range want {
		if !got[k] {
			c.Errorf("ListKeys(%q) missed %q", p, k)
		}
	}
	for k := range got {
		if !want[k] {
			c.Errorf("ListKeys(%q) listed %q (another prefix, or expired)", p, k)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := lister.ListKeys(bg(), p, func(string) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		c.Errorf("ListKeys with a callback returning an error: %v after %d calls; want that error after 1 call", err, calls)
	}

	// The fast path agrees with the basic one, called from inside it as
	// sessionctl does (purge reads each listed key and deletes the
	// expired ones): every listed key is readable, and deleting it from
	// the callback neither deadlocks nor disturbs the listing.
	done := make(chan error, 1)
	seen := map[string]bool{}
	go func() {
		done <- lister.ListKeys(bg(), p, func(k string) error {
			seen[k] = true
			if v, err := get(bg(), st, k); err != nil || string(v) != "v" {
				return fmt.Errorf("Get(%q) inside the callback: %q, %v; want the listed key's value", k, v, err)
			}
			if k == p+"k1" || k == p+"k3" {
				if err := st.Delete(bg(), k); err != nil {
					return fmt.Errorf("Delete(%q) inside the callback: %v", k, err)
				}
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			c.Fatalf("ListKeys whose callback reads and deletes keys: %v", err)
		}
	case <-time.After(10 * time.Second):
		c.Fatalf("ListKeys whose callback calls Get and Delete did not return within 10 s: a lock held across the callback deadlocks sessionctl purge; collect the keys, release the lock, then call fn")
	}
	if len(seen) != len(want) {
		c.Errorf("ListKeys with a callback that reads and deletes listed %d keys, want %d (each key present for the whole call exactly once)", len(seen), len(want))
	}
	expectNotFound(c, st, p+"k1", "after Delete inside a ListKeys callback")
}

func checkSetMany(c *C, h *Harness) {
	st := newStore(c, h)
	batch, ok := st.(driver.BatchSetter)
	if !ok {
		c.Skipf("store has no SetMany (write-behind then writes one session per call)")
	}
	p := ns()
	set(c, st, p+"k0", []byte("old"), 0)
	var keys []string
	var values [][]byte
	for i := 0; i < 300; i++ {
		keys = append(keys, fmt.Sprintf("%sk%d", p, i))
		values = append(values, []byte(fmt.Sprintf("v%d", i)))
	}
	values[7] = []byte{}
	if err := batch.SetMany(bg(), keys, values, 0); err != nil {
		c.Fatalf("SetMany of %d entries: %v", len(keys), err)
	}
	for i, k := range keys {
		if got := mustGet(c, st, k); !bytes.Equal(got, values[i]) {
			c.Fatalf("after SetMany, Get(%q) = %q, want %q", k, got, values[i])
		}
	}
	exp := []string{p + "e1", p + "e2"}
	if err := batch.SetMany(bg(), exp, [][]byte{[]byte("a"), []byte("b")}, 2*h.TTLResolution); err != nil {
		c.Fatalf("SetMany with a TTL: %v", err)
	}
	if _, err := get(bg(), st, exp[0]); err != nil {
		c.Errorf("entry of SetMany with TTL %v missing at once: %v", 2*h.TTLResolution, err)
	}
	time.Sleep(3*h.TTLResolution + h.TTLResolution/2)
	expectNotFound(c, st, exp[1], "after the TTL given to SetMany")
	panicked, err := callSafe(func() error { return batch.SetMany(bg(), []string{p + "x"}, nil, 0) })
	switch {
	case panicked != nil:
		c.Errorf("SetMany with 1 key and 0 values panicked: %v; check len(keys) == len(values) first and return an error", panicked)
	case err == nil:
		c.Errorf("SetMany with 1 key and 0 values succeeded; want an error (check len(keys) == len(values) first)")
	}
}

func checkCASMany(c *C, h *Harness) {
	st := newStore(c, h)
	many, ok := st.(driver.BatchCompareAndSwapper)
	if !ok {
		c.Skipf("store has no CompareAndSwapMany (write-behind then makes one CompareAndSwap call per session)")
	}
	cas, ok := st.(driver.CompareAndSwapper)
	if !ok {
		c.Fatalf("store has CompareAndSwapMany but not CompareAndSwap; the library uses the first only with the second")
	}
	// Two namespaces with the same contents: one batch on the first, the
	// same operations one by one on the second; outcomes and contents
	// must agree.
	batchNS, singleNS := ns(), ns()
	type op struct {
		key      string
		old, new []byte
	}
	var ops []op
	for i := 0; i < 256; i++ {
		k := fmt.Sprintf("k%03d", i)
		cur := []byte(fmt.Sprintf("v%d", i))
		var old []byte
		switch i % 5 {
		case 0: // present, right old
			old = cur
		case 1: // present, wrong old
			old = []byte("wrong")
		case 2: // present, old nil ("only if absent")
			old = nil
		case 3: // absent, old nil
			cur, old = nil, nil
		case 4: // absent, old given
			cur, old = nil, []byte("x")
		}
		if cur != nil {
			set(c, st, batchNS+k, cur, 0)
			set(c, st, singleNS+k, cur, 0)
		}
		ops = append(ops, op{k, old, []byte(fmt.Sprintf("new%d", i))})
	}
	keys := make([]string, len(ops))
	olds, values := make([][]byte, len(ops)), make([][]byte, len(ops))
	for i, o := range ops {
		keys[i], olds[i], values[i] = batchNS+o.key, o.old, o.new
	}
	swapped, err := many.CompareAndSwapMany(bg(), keys, olds, values, 0)
	if err != nil {
		c.Fatalf("CompareAndSwapMany of %d entries: %v", len(keys), err)
	}
	if len(swapped) != len(keys) {
		c.Fatalf("CompareAndSwapMany of %d entries reported %d outcomes", len(keys), len(swapped))
	}
	for i, o := range ops {
		want, err := cas.CompareAndSwap(bg(), singleNS+o.key, o.old, o.new, 0)
		if err != nil {
			c.Fatalf("CompareAndSwap: %v", err)
		}
		if swapped[i] != want {
			c.Errorf("entry %s: CompareAndSwapMany reported %v, CompareAndSwap %v", o.key, swapped[i], want)
		}
		b, berr := get(bg(), st, batchNS+o.key)
		s, serr := get(bg(), st, singleNS+o.key)
		if !bytes.Equal(b, s) || (berr == nil) != (serr == nil) {
			c.Errorf("entry %s: after the batch %q (%v), after single calls %q (%v)", o.key, b, berr, s, serr)
		}
	}
	exp := ns() + "e"
	if ok, err := many.CompareAndSwapMany(bg(), []string{exp}, [][]byte{nil}, [][]byte{[]byte("v")}, 2*h.TTLResolution); err != nil || len(ok) != 1 || !ok[0] {
		c.Fatalf("CompareAndSwapMany with a TTL: %v, %v", ok, err)
	}
	time.Sleep(3*h.TTLResolution + h.TTLResolution/2)
	expectNotFound(c, st, exp, "after the TTL given to CompareAndSwapMany")
	panicked, err := callSafe(func() error {
		_, err := many.CompareAndSwapMany(bg(), []string{exp}, nil, [][]byte{[]byte("v")}, 0)
		return err
	})
	switch {
	case panicked != nil:
		c.Errorf("CompareAndSwapMany with 1 key and 0 olds panicked: %v; check that keys, olds and values have one length first and return an error", panicked)
	case err == nil:
		c.Errorf("CompareAndSwapMany with 1 key and 0 olds succeeded; want an error (check that keys, olds and values have one length first)")
	}
}

func checkCompareAndDelete(c *C, h *Harness) {
	st := newStore(c, h)
	cad, ok := st.(driver.CompareAndDeleter)
	if !ok {
		c.Skipf("store has no CompareAndDelete (two servers finding one expired session at once may both fire OnSessionEnd)")
	}
	p := ns()
	k := p + "k"
	try := func(key string, old []byte, want bool, what string) {
		c.Helper()
		got, err := cad.CompareAndDelete(bg(), key, old)
		if err != nil {
			c.Fatalf("CompareAndDelete %s: %v", what, err)
		}
		if got != want {
			c.Errorf("CompareAndDelete %s reported %v, want %v", what, got, want)
		}
	}
	set(c, st, k, []byte("one"), 0)
	try(k, []byte("wrong"), false, "(wrong old)")
	try(k, []byte("on"), false, "(old a prefix of the value)")
	try(k, []byte("one!"), false, "(the value a prefix of old)")
	if got := mustGet(c, st, k); string(got) != "one" {
		c.Fatalf("a refused CompareAndDelete changed the entry to %q; it must leave it alone", got)
	}
	try(k, []byte("one"), true, "(right old)")
	expectNotFound(c, st, k, "after a successful CompareAndDelete")
	try(k, []byte("one"), false, "(the entry it just deleted)")
	try(p+"absent", []byte("x"), false, "(a key never set)")

	e := p + "expiring"
	set(c, st, e, []byte("v"), 2*h.TTLResolution)
	time.Sleep(3 * h.TTLResolution)
	try(e, []byte("v"), false, "(an entry past its TTL: an expired entry is absent; reporting true lets two servers both end one session)")

	// Races: exactly one of the claimers wins each round.
	const racers, rounds = 16, 5
	for round := range rounds {
		race := fmt.Sprintf("%srace%d", p, round)
		v := []byte(fmt.Sprintf("session-%d", round))
		set(c, st, race, v, 0)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range racers {
			c.goSafe(&wg, func() {
				ok, err := cad.CompareAndDelete(bg(), race, v)
				if err != nil {
					c.Errorf("racing CompareAndDelete: %v", err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			c.Fatalf("round %d: %d of %d concurrent CompareAndDelete calls with the same old value reported true; want exactly 1: the comparison and the delete must be one atomic step (a script, a conditional DELETE, one transaction)", round, n, racers)
		}
		expectNotFound(c, st, race, "after the race")
	}
}

func checkExpiryLister(c *C, h *Harness) {
	st := newStore(c, h)
	lister, ok := st.(driver.ExpiryLister)
	if !ok {
		c.Skipf("store has no ListExpiring (sessions that time out while no server holds them end without OnSessionEnd)")
	}
	if _, ok := st.(driver.CompareAndDeleter); !ok {
		c.Errorf("store has ListExpiring but no CompareAndDelete: the library uses ListExpiring only to find entries to claim with CompareAndDelete")
	}
	p := ns()
	r := h.TTLResolution
	// Deadlines (TTLs) far apart compared to the resolution: 1h+i min.
	for i := range 5 {
		set(c, st, fmt.Sprintf("%sk%d", p, 4-i), []byte{byte('a' + 4 - i)}, time.Hour+time.Duration(4-i)*time.Minute)
	}
	set(c, st, p+"late", []byte("late"), 3*time.Hour)
	set(c, st, p+"forever", []byte("forever"), 0)
	set(c, st, p[:len(p)-1]+"-sibling", []byte("v"), time.Hour) // shares all but the last character
	set(c, st, ns()+"other", []byte("v"), time.Hour)
	set(c, st, p+"expiring", []byte("v"), r)
	time.Sleep(2*r + 10*time.Millisecond)

	list := func(before time.Time, limit int) ([]string, [][]byte) {
		c.Helper()
		keys, values, err := lister.ListExpiring(bg(), p, before, limit)
		if err != nil {
			c.Fatalf("ListExpiring: %v", err)
		}
		if len(keys) != len(values) {
			c.Fatalf("ListExpiring returned %d keys and %d values", len(keys), len(values))
		}
		return keys, values
	}
	want := []string{p + "k0", p + "k1", p + "k2", p + "k3", p + "k4"}
	keys, values := list(time.Now().Add(2*time.Hour), 100)
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		c.Errorf("ListExpiring(prefix, in 2h) = %q; want %q: the live entries under the prefix whose TTL ends before the instant, earliest first (not those expired, with no TTL, expiring later, or under another prefix)", keys, want)
	}
	for i, k := range keys {
		if i < len(want) && k == want[i] && !bytes.Equal(values[i], []byte{byte('a' + i)}) {
			c.Errorf("ListExpiring gave %q the value %q; want %q", k, values[i], []byte{byte('a' + i)})
		}
	}
	if keys, _ := list(time.Now().Add(2*time.Hour), 2); fmt.Sprint(keys) != fmt.Sprint(want[:2]) {
		c.Errorf("ListExpiring with limit 2 = %q; want the 2 earliest, %q", keys, want[:2])
	}
	if keys, _ := list(time.Now().Add(time.Hour+150*time.Second), 100); fmt.Sprint(keys) != fmt.Sprint(want[:3]) {
		c.Errorf("ListExpiring(prefix, in 1h02m30s) = %q; want %q", keys, want[:3])
	}

	// The index follows writes and deletes.
	set(c, st, p+"k0", []byte("moved"), 4*time.Hour) // rewritten: its TTL moves out of range
	if err := st.Delete(bg(), p+"k1"); err != nil {
		c.Fatalf("Delete: %v", err)
	}
	if cad, ok := st.(driver.CompareAndDeleter); ok {
		if ok, err := cad.CompareAndDelete(bg(), p+"k2", []byte("c")); !ok || err != nil {
			c.Fatalf("CompareAndDelete of a listed entry: %v, %v", ok, err)
		}
	}
	if cas, ok := st.(driver.CompareAndSwapper); ok {
		if ok, err := cas.CompareAndSwap(bg(), p+"k3", []byte("d"), []byte("d2"), 5*time.Hour); !ok || err != nil {
			c.Fatalf("CompareAndSwap: %v, %v", ok, err)
		}
		if ok, err := cas.CompareAndSwap(bg(), p+"new", nil, []byte("n"), 90*time.Minute); !ok || err != nil {
			c.Fatalf("CompareAndSwap: %v, %v", ok, err)
		}
	}
	if b, ok := st.(driver.BatchSetter); ok {
		if err := b.SetMany(bg(), []string{p + "batch"}, [][]byte{[]byte("b")}, 80*time.Minute); err != nil {
			c.Fatalf("SetMany: %v", err)
		}
	}
	keys, _ = list(time.Now().Add(2*time.Hour), 100)
	sort.Strings(keys)
	wantAfter := []string{p + "k4"}
	if _, ok := st.(driver.BatchSetter); ok {
		wantAfter = append(wantAfter, p+"batch")
	}
	if _, ok := st.(driver.CompareAndSwapper); ok {
		wantAfter = append(wantAfter, p+"new")
	} else {
		wantAfter = append(wantAfter, p+"k3")
	}
	sort.Strings(wantAfter)
	if fmt.Sprint(keys) != fmt.Sprint(wantAfter) {
		c.Errorf("after rewriting k0 (TTL 4h), deleting k1, CompareAndDelete of k2, CompareAndSwap of k3 (TTL 5h), new entries of 80-90 min: ListExpiring(prefix, in 2h) = %q; want %q: the index must follow every write and delete", keys, wantAfter)
	}
}

// callSafe calls fn, turning a panic into a value: the check then fails
// with a message saying to return an error instead.
func callSafe(fn func() error) (panicked any, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked = r
		}
	}()
	return nil, fn()
}
