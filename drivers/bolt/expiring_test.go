package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
)

var (
	_ driver.CompareAndDeleter = (*Store)(nil)
	_ driver.ExpiryLister      = (*Store)(nil)
)

func mustCompareAndDelete(t *testing.T, s *Store, key string, old []byte, want bool) {
	t.Helper()
	ok, err := s.CompareAndDelete(context.Background(), key, old)
	if err != nil || ok != want {
		t.Fatalf("CompareAndDelete(%q, %q) = %v, %v; want %v", key, old, ok, err, want)
	}
}

func TestCompareAndDelete(t *testing.T) {
	s := newTemp(t, "?sweep=off")
	mustSet(t, s, "k", []byte("v1"), store.WithExpiration(time.Hour))
	mustCompareAndDelete(t, s, "k", []byte("v2"), false)
	mustCompareAndDelete(t, s, "k", []byte("v"), false)
	mustCompareAndDelete(t, s, "k", []byte("v1 "), false)
	mustCompareAndDelete(t, s, "k", nil, false)
	if got := mustGet(t, s, "k"); string(got) != "v1" {
		t.Fatalf("a failed CompareAndDelete changed the value: %q", got)
	}
	mustCompareAndDelete(t, s, "k", []byte("v1"), true)
	wantNotFound(t, s, "k")
	if d, x := rawCount(t, s); d != 0 || x != 0 {
		t.Fatalf("after CompareAndDelete raw = %d, %d; want 0, 0", d, x)
	}
	mustCompareAndDelete(t, s, "k", []byte("v1"), false) // absent now
	mustCompareAndDelete(t, s, "never", []byte("v"), false)

	mustSet(t, s, "empty", []byte{}) // no expiry, no index record
	mustCompareAndDelete(t, s, "empty", []byte("x"), false)
	mustCompareAndDelete(t, s, "empty", []byte{}, true)
	wantNotFound(t, s, "empty")

	// An expired entry counts as absent, even before the sweep removes it.
	mustSet(t, s, "e", []byte("old"), store.WithExpiration(20*time.Millisecond))
	time.Sleep(40 * time.Millisecond)
	mustCompareAndDelete(t, s, "e", []byte("old"), false)
	if n, err := s.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the expired entry", n, err)
	}
	if d, x := rawCount(t, s); d != 0 || x != 0 {
		t.Fatalf("raw = %d, %d; want 0, 0", d, x)
	}

	if _, err := s.CompareAndDelete(context.Background(), "", []byte("v")); err == nil {
		t.Error("empty key accepted")
	}
}

// TestCompareAndDeleteRace: of 32 goroutines claiming the same entry with
// the value they all read, exactly one wins, round after round.
func TestCompareAndDeleteRace(t *testing.T) {
	s := newTemp(t, "")
	raceCompareAndDelete(t, s, s)
}

// TestCompareAndDeleteRaceTwoStores races two stores on one file (two
// Managers in one process), half of the goroutines on each.
func TestCompareAndDeleteRaceTwoStores(t *testing.T) {
	a := newTemp(t, "")
	b := openURL(t, "bolt://"+a.db.Path())
	raceCompareAndDelete(t, a, b)
}

func raceCompareAndDelete(t *testing.T, a, b *Store) {
	ctx := context.Background()
	const workers, rounds = 32, 20
	for round := range rounds {
		v := fmt.Appendf(nil, "round %d", round)
		mustSet(t, a, "race", v, store.WithExpiration(time.Hour))
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range workers {
			s := a
			if w%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.CompareAndDelete(ctx, "race", v)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, n)
		}
		wantNotFound(t, a, "race")
	}
	if d, x := rawCount(t, a); d != 0 || x != 0 {
		t.Fatalf("raw = %d, %d; want 0, 0", d, x)
	}
}

// expiring is one ListExpiring call's result as "key=value" strings.
func expiring(t *testing.T, s *Store, prefix string, before time.Duration, limit int) []string {
	t.Helper()
	keys, values, err := s.ListExpiring(context.Background(), prefix, time.Now().Add(before), limit)
	if err != nil {
		t.Fatalf("ListExpiring(%q, now+%v, %d): %v", prefix, before, limit, err)
	}
	if len(keys) != len(values) {
		t.Fatalf("ListExpiring: %d keys, %d values", len(keys), len(values))
	}
	out := []string{}
	for i, k := range keys {
		out = append(out, k+"="+string(values[i]))
	}
	return out
}

func wantExpiring(t *testing.T, s *Store, prefix string, before time.Duration, limit int, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := expiring(t, s, prefix, before, limit); !slices.Equal(got, want) {
		t.Fatalf("ListExpiring(%q, now+%v, %d) = %q; want %q", prefix, before, limit, got, want)
	}
}

func TestListExpiring(t *testing.T) {
	s := newTemp(t, "?sweep=off")
	ctx := context.Background()
	ttl := func(d time.Duration) store.Option { return store.WithExpiration(d) }
	mustSet(t, s, "sess:c", []byte("C"), ttl(3*time.Hour))
	mustSet(t, s, "sess:a", []byte("A"), ttl(time.Hour))
	mustSet(t, s, "sess:b", []byte("B"), ttl(2*time.Hour))
	mustSet(t, s, "sess:far", []byte("F"), ttl(10*time.Hour))
	mustSet(t, s, "sess:forever", []byte("N"))
	mustSet(t, s, "sess:empty", []byte{}, ttl(4*time.Hour))
	mustSet(t, s, "other:x", []byte("X"), ttl(90*time.Minute))
	mustSet(t, s, "sess", []byte("S"), ttl(61*time.Minute)) // shorter than the prefix
	mustSet(t, s, "sess:gone", []byte("G"), ttl(time.Millisecond))
	time.Sleep(5 * time.Millisecond) // sess:gone expires, unswept

	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:a=A", "sess:b=B", "sess:c=C", "sess:empty=")
	wantExpiring(t, s, "sess:", 5*time.Hour, 2, "sess:a=A", "sess:b=B")
	wantExpiring(t, s, "sess:", 5*time.Hour, 0)
	wantExpiring(t, s, "sess:", 2*time.Hour-time.Minute, 100, "sess:a=A")
	wantExpiring(t, s, "sess:", 2*time.Hour+time.Minute, 100, "sess:a=A", "sess:b=B")
	wantExpiring(t, s, "sess:", 59*time.Minute, 100)
	wantExpiring(t, s, "sess:", -time.Hour, 100)
	wantExpiring(t, s, "", 100*time.Hour, 100, "sess:a=A", "sess=S", "other:x=X", "sess:b=B", "sess:c=C", "sess:empty=", "sess:far=F")
	wantExpiring(t, s, "other:", 100*time.Hour, 100, "other:x=X")
	wantExpiring(t, s, "none:", 100*time.Hour, 100)

	// The values are the caller's.
	_, values, err := s.ListExpiring(ctx, "sess:a", time.Now().Add(5*time.Hour), 1)
	if err != nil || len(values) != 1 {
		t.Fatalf("ListExpiring = %q, %v", values, err)
	}
	values[0][0] = 'Z'
	if got := mustGet(t, s, "sess:a"); string(got) != "A" {
		t.Fatalf("a returned value aliases the store: %q", got)
	}

	// The index follows every write.
	mustSet(t, s, "sess:a", []byte("A2"), ttl(6*time.Hour)) // later: out of range
	mustSet(t, s, "sess:b", []byte("B2"))                   // no TTL: never listed
	if err := s.SetMany(ctx, []string{"sess:far", "sess:new"}, [][]byte{[]byte("F2"), []byte("W")}, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:far=F2", "sess:new=W", "sess:c=C", "sess:empty=")
	if ok, err := s.CompareAndSwap(ctx, "sess:c", []byte("C"), []byte("C2"), 7*time.Hour); !ok || err != nil {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	if ok, err := s.CompareAndSwap(ctx, "sess:a", []byte("A2"), []byte("A3"), 10*time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	if ok, err := s.CompareAndSwap(ctx, "sess:gone", nil, []byte("G2"), 4*time.Hour+time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap over the expired entry = %v, %v", ok, err)
	}
	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:a=A3", "sess:far=F2", "sess:new=W", "sess:empty=", "sess:gone=G2")
	swapped, err := s.CompareAndSwapMany(ctx, []string{"sess:far", "sess:new", "sess:b"},
		[][]byte{[]byte("F2"), []byte("wrong"), nil}, [][]byte{[]byte("F3"), []byte("W3"), []byte("B3")}, 0)
	if err != nil || !slices.Equal(swapped, []bool{true, false, false}) {
		t.Fatalf("CompareAndSwapMany = %v, %v", swapped, err)
	}
	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:a=A3", "sess:new=W", "sess:empty=", "sess:gone=G2")
	if err := s.Delete(ctx, "sess:new"); err != nil {
		t.Fatal(err)
	}
	mustCompareAndDelete(t, s, "sess:empty", []byte("x"), false)
	mustCompareAndDelete(t, s, "sess:a", []byte("A3"), true)
	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:empty=", "sess:gone=G2")
}

// TestListExpiringClaimAll plays the sessions library's part: list what
// is about to expire and claim each entry with CompareAndDelete, while
// other entries are deleted or expire and are swept. Afterwards both
// buckets are empty: the index does not outlive the entries.
func TestListExpiringClaimAll(t *testing.T) {
	s := newTemp(t, "?sweep=off")
	ctx := context.Background()
	const n = 300
	for i := range n {
		ttl := time.Duration(1+i%50) * time.Minute
		switch i % 3 {
		case 0:
			mustSet(t, s, fmt.Sprintf("sess:%03d", i), fmt.Appendf(nil, "v%d", i), store.WithExpiration(ttl))
		case 1:
			mustSet(t, s, fmt.Sprintf("del:%03d", i), []byte("d"), store.WithExpiration(ttl))
		case 2:
			mustSet(t, s, fmt.Sprintf("short:%03d", i), []byte("s"), store.WithExpiration(time.Millisecond))
		}
	}
	claimed := 0
	for {
		keys, values, err := s.ListExpiring(ctx, "sess:", time.Now().Add(time.Hour), 32)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		for i, k := range keys {
			var idx int
			if _, err := fmt.Sscanf(k, "sess:%d", &idx); err != nil || !bytes.Equal(values[i], fmt.Appendf(nil, "v%d", idx)) {
				t.Fatalf("%s: value %q", k, values[i])
			}
			mustCompareAndDelete(t, s, k, values[i], true)
			mustCompareAndDelete(t, s, k, values[i], false) // claimed once only
			claimed++
		}
	}
	if claimed != n/3 {
		t.Fatalf("claimed %d entries, want %d", claimed, n/3)
	}
	if err := s.ListKeys(ctx, "del:", func(k string) error { return s.Delete(ctx, k) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	wantExpiring(t, s, "", 100*time.Hour, 1000)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if d, x := rawCount(t, s); d != 0 || x != 0 {
		t.Fatalf("raw = %d, %d; want both buckets empty", d, x)
	}
}

func TestCompareAndDeleteListExpiringContext(t *testing.T) {
	s := newTemp(t, "")
	mustSet(t, s, "k", []byte("v"), store.WithExpiration(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := s.CompareAndDelete(ctx, "k", []byte("v")); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("CompareAndDelete: %v, %v", ok, err)
	}
	if keys, _, err := s.ListExpiring(ctx, "", time.Now().Add(2*time.Hour), 10); keys != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("ListExpiring: %v, %v", keys, err)
	}
	mustGet(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompareAndDelete(context.Background(), "k", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("CompareAndDelete after Close: %v", err)
	}
	if _, _, err := s.ListExpiring(context.Background(), "", time.Now().Add(2*time.Hour), 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("ListExpiring after Close: %v", err)
	}
}
