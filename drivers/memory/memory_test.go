package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/drivers/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCloseStopsTheSweeper(t *testing.T) {
	never := memory.New(memory.Options{})
	if err := never.Close(); err != nil { // never started
		t.Fatal(err)
	}
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	s.Set(context.Background(), "k", []byte("v"), store.WithExpiration(time.Hour)) // starts the sweeper
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Data stays readable after Close; goleak (TestMain) checks the goroutine.
	if v, err := s.Get(context.Background(), "k"); err != nil || string(v.([]byte)) != "v" {
		t.Fatalf("Get after Close = %v, %v", v, err)
	}
}

func TestOverwriteMovesTheDeadline(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand
	defer s.Close()
	ctx := context.Background()
	set := func(k, v string, ttl time.Duration) {
		t.Helper()
		if err := s.Set(ctx, k, []byte(v), store.WithExpiration(ttl)); err != nil {
			t.Fatal(err)
		}
	}
	set("longer", "old", time.Millisecond)
	set("longer", "new", time.Hour)
	set("none", "old", time.Millisecond)
	set("none", "new", 0)
	set("shorter", "old", time.Hour)
	set("shorter", "new", time.Millisecond)
	set("deleted", "v", time.Millisecond)
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	set("cas", "old", time.Millisecond)
	if ok, err := s.CompareAndSwap(ctx, "cas", []byte("old"), []byte("new"), time.Hour); !ok || err != nil {
		t.Fatalf("CompareAndSwap = %v, %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond)
	if n := s.SweepExpired(); n != 1 {
		t.Fatalf("SweepExpired removed %d entries, want 1 (shorter)", n)
	}
	for _, k := range []string{"longer", "none", "cas"} {
		v, ttl, err := s.GetWithTTL(ctx, k)
		if err != nil || string(v.([]byte)) != "new" {
			t.Fatalf("%s: Get = %v, %v; want the new value, not expired by the old deadline", k, v, err)
		}
		if k == "none" && ttl != 0 || k != "none" && ttl < 59*time.Minute {
			t.Errorf("%s: ttl %v", k, ttl)
		}
	}
	wantGone(t, s, "shorter")
	wantGone(t, s, "deleted")
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

// TestSweepManyExpired expires more entries per shard than one lock
// acquisition of the sweep removes.
func TestSweepManyExpired(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	const expired, live = 20000, 1000
	for i := range expired {
		s.Set(ctx, fmt.Sprint("e", i), []byte(fmt.Sprint("v", i)), store.WithExpiration(time.Duration(1+i%3)*time.Millisecond))
	}
	for i := range live {
		s.Set(ctx, fmt.Sprint("l", i), []byte("v"), store.WithExpiration(time.Hour))
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Get(ctx, "e0"); !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("expired entry returned before the sweep: %v", err)
	}
	if n := s.SweepExpired(); n != expired {
		t.Fatalf("SweepExpired removed %d entries, want %d", n, expired)
	}
	if s.Len() != live {
		t.Fatalf("Len = %d after the sweep, want %d", s.Len(), live)
	}
}

// TestSweepConcurrent sweeps while writers set keys with short and long
// TTLs, overwrite and delete them; each writer owns its keys, so their
// final states are known.
func TestSweepConcurrent(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	const writers, keys, rounds = 4, 50, 40
	final := make([]map[string]string, writers) // key -> last value; "" deleted
	var wg sync.WaitGroup
	for w := range writers {
		final[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for k := range keys {
					key := fmt.Sprintf("w%d:k%d", w, k)
					switch (r + k) % 5 {
					case 0, 1: // short: expires during the test
						v := fmt.Sprintf("S%d", r)
						s.Set(ctx, key, []byte(v), store.WithExpiration(time.Duration(1+k%3)*time.Millisecond))
						final[w][key] = v
					case 2, 3:
						v := fmt.Sprintf("L%d", r)
						s.Set(ctx, key, []byte(v), store.WithExpiration(time.Hour))
						final[w][key] = v
					case 4:
						s.Delete(ctx, key)
						final[w][key] = ""
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	time.Sleep(10 * time.Millisecond) // every short TTL has passed
	s.Close()                         // waits for a sweep in progress to finish
	s.SweepExpired()
	left := 0
	for w := range writers {
		for key, v := range final[w] {
			switch {
			case v == "" || v[0] == 'S':
				wantGone(t, s, key)
			default:
				left++
				if b, err := s.Get(ctx, key); err != nil || string(b.([]byte)) != v {
					t.Fatalf("%s: Get = %v, %v; want %q", key, b, err, v)
				}
			}
		}
	}
	if s.Len() != left {
		t.Fatalf("Len = %d, want %d", s.Len(), left)
	}
}

func wantGone(t *testing.T, s *memory.Store, key string) {
	t.Helper()
	if v, err := s.Get(context.Background(), key); !errors.Is(err, &store.NotFound{}) {
		t.Fatalf("%s: Get = %v, %v; want NotFound", key, v, err)
	}
}
