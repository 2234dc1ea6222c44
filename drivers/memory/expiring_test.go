package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"

	"github.com/sessionstorage/sessions/drivers/memory"
)

var (
	_ driver.CompareAndDeleter = (*memory.Store)(nil)
	_ driver.ExpiryLister      = (*memory.Store)(nil)
)

func mustCompareAndDelete(t *testing.T, s *memory.Store, key string, old []byte, want bool) {
	t.Helper()
	ok, err := s.CompareAndDelete(context.Background(), key, old)
	if err != nil || ok != want {
		t.Fatalf("CompareAndDelete(%q, %q) = %v, %v; want %v", key, old, ok, err, want)
	}
}

func mustSet(t *testing.T, s *memory.Store, key, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, []byte(value), store.WithExpiration(ttl)); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, s *memory.Store, key, want string) {
	t.Helper()
	if v, err := s.Get(context.Background(), key); err != nil || string(v.([]byte)) != want {
		t.Fatalf("%s: Get = %v, %v; want %q", key, v, err, want)
	}
}

func TestCompareAndDelete(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand
	defer s.Close()
	mustSet(t, s, "k", "v1", time.Hour)
	mustCompareAndDelete(t, s, "k", []byte("v2"), false)
	mustCompareAndDelete(t, s, "k", []byte("v"), false)
	mustCompareAndDelete(t, s, "k", []byte("v1 "), false)
	mustCompareAndDelete(t, s, "k", nil, false)
	wantValue(t, s, "k", "v1")
	mustCompareAndDelete(t, s, "k", []byte("v1"), true)
	wantGone(t, s, "k")
	if s.Len() != 0 {
		t.Fatalf("Len = %d after CompareAndDelete", s.Len())
	}
	mustCompareAndDelete(t, s, "k", []byte("v1"), false) // absent now
	mustCompareAndDelete(t, s, "never", []byte("v"), false)

	mustSet(t, s, "empty", "", 0)
	mustCompareAndDelete(t, s, "empty", []byte("x"), false)
	mustCompareAndDelete(t, s, "empty", []byte{}, true)
	wantGone(t, s, "empty")

	// An expired entry counts as absent, even before the sweep removes it.
	mustSet(t, s, "e", "old", time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	mustCompareAndDelete(t, s, "e", []byte("old"), false)
	if n := s.SweepExpired(); n != 1 {
		t.Fatalf("SweepExpired removed %d, want the expired entry", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	mustSet(t, s, "k", "v", time.Hour)
	if ok, err := s.CompareAndDelete(ctx, "k", []byte("v")); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("CompareAndDelete with a cancelled context: %v, %v", ok, err)
	}
	wantValue(t, s, "k", "v")
}

// TestCompareAndDeleteRace: of 32 goroutines claiming the same entry with
// the value they all read, exactly one wins, round after round.
func TestCompareAndDeleteRace(t *testing.T) {
	s := memory.New(memory.Options{})
	defer s.Close()
	ctx := context.Background()
	const workers, rounds = 32, 50
	for round := range rounds {
		v := fmt.Sprintf("round %d", round)
		mustSet(t, s, "race", v, time.Hour)
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.CompareAndDelete(ctx, "race", []byte(v))
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
		wantGone(t, s, "race")
	}
}

func wantExpiring(t *testing.T, s *memory.Store, prefix string, before time.Duration, limit int, want ...string) {
	t.Helper()
	keys, values, err := s.ListExpiring(context.Background(), prefix, time.Now().Add(before), limit)
	if err != nil {
		t.Fatalf("ListExpiring(%q, now+%v, %d): %v", prefix, before, limit, err)
	}
	if len(keys) != len(values) {
		t.Fatalf("ListExpiring: %d keys, %d values", len(keys), len(values))
	}
	got := []string{}
	for i, k := range keys {
		got = append(got, k+"="+string(values[i]))
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListExpiring(%q, now+%v, %d) = %q; want %q", prefix, before, limit, got, want)
	}
}

func TestListExpiring(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand
	defer s.Close()
	ctx := context.Background()
	mustSet(t, s, "sess:c", "C", 3*time.Hour)
	mustSet(t, s, "sess:a", "A", time.Hour)
	mustSet(t, s, "sess:b", "B", 2*time.Hour)
	mustSet(t, s, "sess:far", "F", 10*time.Hour)
	mustSet(t, s, "sess:forever", "N", 0)
	mustSet(t, s, "sess:empty", "", 4*time.Hour)
	mustSet(t, s, "other:x", "X", 90*time.Minute)
	mustSet(t, s, "sess", "S", 61*time.Minute) // shorter than the prefix
	mustSet(t, s, "sess:gone", "G", time.Millisecond)
	time.Sleep(5 * time.Millisecond) // sess:gone expires, unswept

	wantExpiring(t, s, "sess:", 5*time.Hour, 100, "sess:a=A", "sess:b=B", "sess:c=C", "sess:empty=")
	wantExpiring(t, s, "sess:", 5*time.Hour, 2, "sess:a=A", "sess:b=B")
	wantExpiring(t, s, "sess:", 5*time.Hour, 0)
	wantExpiring(t, s, "sess:", 2*time.Hour-time.Minute, 100, "sess:a=A")
	wantExpiring(t, s, "sess:", 2*time.Hour+time.Minute, 100, "sess:a=A", "sess:b=B")
	wantExpiring(t, s, "sess:", 59*time.Minute, 100)
	wantExpiring(t, s, "sess:", -time.Hour, 100)
	wantExpiring(t, s, "", 100*time.Hour, 100, "sess:a=A", "sess=S", "other:x=X", "sess:b=B", "sess:c=C", "sess:empty=", "sess:far=F")
	if keys, _, err := s.ListExpiring(ctx, "", time.Now().AddDate(300, 0, 0), 3); !slices.Equal(keys, []string{"sess:a", "sess", "other:x"}) || err != nil {
		t.Fatalf("ListExpiring before a time past UnixNano's range = %q, %v", keys, err)
	}
	wantExpiring(t, s, "other:", 100*time.Hour, 100, "other:x=X")
	wantExpiring(t, s, "none:", 100*time.Hour, 100)
	if keys, _, err := s.ListExpiring(ctx, "", time.Time{}, 10); len(keys) != 0 || err != nil {
		t.Fatalf("ListExpiring before the zero time = %q, %v", keys, err)
	}

	// The values are the caller's.
	_, values, err := s.ListExpiring(ctx, "sess:a", time.Now().Add(5*time.Hour), 1)
	if err != nil || len(values) != 1 {
		t.Fatalf("ListExpiring = %q, %v", values, err)
	}
	values[0][0] = 'Z'
	wantValue(t, s, "sess:a", "A")

	// The heaps follow every write.
	mustSet(t, s, "sess:a", "A2", 6*time.Hour) // later: out of range
	mustSet(t, s, "sess:b", "B2", 0)           // no TTL: never listed
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

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if keys, _, err := s.ListExpiring(ctx, "", time.Now().Add(100*time.Hour), 10); keys != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("ListExpiring with a cancelled context: %v, %v", keys, err)
	}
}

// TestListExpiringManyShards lists from entries spread over every shard,
// with deadlines interleaved across shards, in pages of a small limit,
// claiming each page as the sessions library does. Every entry due in the
// window is listed once, in deadline order; the rest are not.
func TestListExpiringManyShards(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	const n = 2000
	for i := range n {
		// Written out of deadline order: i*7919 % n permutes 0..n-1.
		j := i * 7919 % n
		mustSet(t, s, fmt.Sprintf("sess:%04d", j), fmt.Sprint("v", j), time.Duration(j+1)*time.Second)
	}
	// sess:0000..sess:0999 (ttl 1..1000 s), and a few more if setting
	// took seconds.
	window := time.Duration(n/2) * time.Second
	var listed []string
	for {
		keys, values, err := s.ListExpiring(ctx, "sess:", time.Now().Add(window), 17)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		if len(keys) > 17 {
			t.Fatalf("%d entries listed with limit 17", len(keys))
		}
		for i, k := range keys {
			if string(values[i]) != fmt.Sprint("v", atoi(t, k[len("sess:"):])) {
				t.Fatalf("%s listed with value %q", k, values[i])
			}
			mustCompareAndDelete(t, s, k, values[i], true)
		}
		listed = append(listed, keys...)
	}
	if len(listed) < n/2 || len(listed) > n/2+10 {
		t.Fatalf("listed %d entries, want about %d", len(listed), n/2)
	}
	if !slices.IsSorted(listed) { // keys sort as their deadlines do
		t.Fatalf("not listed earliest first: %q", listed)
	}
	for i, k := range listed {
		if want := fmt.Sprintf("sess:%04d", i); k != want {
			t.Fatalf("entry %d listed is %s, want %s", i, k, want)
		}
	}
	if s.Len() != n-len(listed) {
		t.Fatalf("Len = %d after claiming %d of %d", s.Len(), len(listed), n)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
