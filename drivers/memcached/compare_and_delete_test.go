package memcached

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/eko/gocache/lib/v4/store"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestCompareAndDelete(t *testing.T) {
	t.Parallel()
	s, p := sharedStore(t)
	ctx := context.Background()
	cad := func(key string, old []byte, want bool) {
		t.Helper()
		ok, err := s.CompareAndDelete(ctx, p+key, old)
		if err != nil || ok != want {
			t.Fatalf("CompareAndDelete(%q, %q) = %v, %v; want %v", key, old, ok, err, want)
		}
	}
	wantValue := func(key, want string) {
		t.Helper()
		if got, err := getBytes(t, s, p+key); err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v; want %q", key, got, err, want)
		}
	}
	set := func(key, value string, ttl time.Duration) {
		t.Helper()
		if err := s.Set(ctx, p+key, []byte(value), store.WithExpiration(ttl)); err != nil {
			t.Fatal(err)
		}
	}

	set("k", "v1", time.Hour)
	cad("k", []byte("v2"), false)
	cad("k", []byte("v"), false)
	cad("k", []byte("v1 "), false)
	cad("k", nil, false)
	cad("k", []byte{}, false)
	wantValue("k", "v1")
	cad("k", []byte("v1"), true)
	// Gone, not an empty value left behind: the delete after the claim
	// succeeded.
	if _, err := s.client.Get(p + "k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("after CompareAndDelete: %v, want a miss", err)
	}
	cad("k", []byte("v1"), false) // absent now
	cad("never", []byte("v"), false)

	// An empty value (a claim whose delete failed looks the same) is
	// never claimed, and stays.
	set("empty", "", time.Hour)
	cad("empty", []byte{}, false)
	cad("empty", nil, false)
	wantValue("empty", "")

	// An expired item is absent. memcached counts whole seconds: a 1 s
	// TTL is over after at most 2 s.
	set("e", "old", time.Second)
	time.Sleep(2100 * time.Millisecond)
	cad("e", []byte("old"), false)

	if _, err := s.CompareAndDelete(ctx, "bad key", []byte("x")); !errors.Is(err, memcache.ErrMalformedKey) {
		t.Errorf("malformed key: %v", err)
	}
}

// TestCompareAndDeleteClaimExpires: a claim whose delete never ran (ctx
// ended right after the cas) leaves an empty item, which no one can
// claim again and which expires by itself.
func TestCompareAndDeleteClaimExpires(t *testing.T) {
	t.Parallel()
	s, p := sharedStore(t)
	key := p + "k"
	if err := s.Set(context.Background(), key, []byte("v"), store.WithExpiration(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The claim as CompareAndDelete makes it, without its delete.
	it, err := s.client.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	it.Value, it.Expiration = []byte{}, claimExpiration
	if err := s.client.CompareAndSwap(it); err != nil {
		t.Fatal(err)
	}
	for _, old := range [][]byte{[]byte("v"), {}, nil} {
		if ok, err := s.CompareAndDelete(context.Background(), key, old); ok || err != nil {
			t.Fatalf("CompareAndDelete(%q) of a claimed item = %v, %v; want false", old, ok, err)
		}
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := s.client.Get(key); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("the claimed item is still there after 2.1 s: %v", err)
	}
}

// TestCompareAndDeleteRace: of 32 goroutines claiming the same item with
// the value they all read, through two clients (two servers of the
// application), exactly one wins, round after round.
func TestCompareAndDeleteRace(t *testing.T) {
	a, p := sharedStore(t)
	b := openURL(t, testservers.SharedMemcached(t).URL())
	ctx := context.Background()
	key := p + "race"
	const workers, rounds = 32, 20
	for round := range rounds {
		v := fmt.Appendf(nil, "round %d", round)
		if err := a.Set(ctx, key, v, store.WithExpiration(time.Minute)); err != nil {
			t.Fatal(err)
		}
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
				ok, err := s.CompareAndDelete(ctx, key, v)
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
		if _, err := a.Get(ctx, key); !errors.Is(err, &store.NotFound{}) {
			t.Fatalf("round %d: after the claim: %v, want NotFound", round, err)
		}
	}
}

// TestCompareAndDeleteRaceWithRewrite races claimers against a
// CompareAndSwap from the same value (a server saving the session while
// others find it expiring): exactly one of them wins, and a claim never
// deletes the rewritten value.
func TestCompareAndDeleteRaceWithRewrite(t *testing.T) {
	a, p := sharedStore(t)
	b := openURL(t, testservers.SharedMemcached(t).URL())
	ctx := context.Background()
	key := p + "race"
	const claimers, rounds = 16, 50
	for round := range rounds {
		v := fmt.Appendf(nil, "round %d", round)
		rewritten := fmt.Appendf(nil, "round %d rewritten", round)
		if err := a.Set(ctx, key, v, store.WithExpiration(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var claims atomic.Int32
		var swapped atomic.Bool
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range claimers {
			s := a
			if w%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.CompareAndDelete(ctx, key, v)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
				if ok {
					claims.Add(1)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := b.CompareAndSwap(ctx, key, v, rewritten, time.Minute)
			if err != nil {
				t.Errorf("round %d: CompareAndSwap: %v", round, err)
			}
			swapped.Store(ok)
		}()
		close(start)
		wg.Wait()
		got, err := getBytes(t, a, key)
		switch {
		case swapped.Load() && claims.Load() == 0:
			if err != nil || string(got) != string(rewritten) {
				t.Fatalf("round %d: the rewrite won, but the item is %q, %v", round, got, err)
			}
		case !swapped.Load() && claims.Load() == 1:
			if !errors.Is(err, &store.NotFound{}) {
				t.Fatalf("round %d: a claim won, but the item is %q, %v", round, got, err)
			}
		default:
			t.Fatalf("round %d: rewrite %v and %d claims won; want exactly one winner", round, swapped.Load(), claims.Load())
		}
	}
}
