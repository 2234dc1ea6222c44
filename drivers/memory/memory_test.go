package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/drivers/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExpiryGoesToExactlyOneSubscriber(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand below
	defer s.Close()
	var a, b atomic.Int32
	stopA := s.NotifyExpired(func(string, []byte) { a.Add(1) })
	s.NotifyExpired(func(string, []byte) { b.Add(1) })
	ctx := context.Background()
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		if err := s.Set(ctx, k, []byte("v"), store.WithExpiration(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	s.SweepExpired()
	if got := a.Load() + b.Load(); got != 4 || a.Load() == 0 || b.Load() == 0 {
		t.Fatalf("4 expiries delivered as %d+%d; want each once, spread over both subscribers", a.Load(), b.Load())
	}
	stopA()
	stopA() // idempotent
	s.Set(ctx, "k5", []byte("v"), store.WithExpiration(time.Millisecond))
	time.Sleep(5 * time.Millisecond)
	s.SweepExpired()
	if a.Load()+b.Load() != 5 || b.Load() < 3 {
		t.Fatalf("after stop, the remaining subscriber must get every expiry: a=%d b=%d", a.Load(), b.Load())
	}
	if s.Len() != 0 {
		t.Fatalf("%d entries left after sweeping", s.Len())
	}
}

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

// notices records expiry notifications by key.
type notices struct {
	mu  sync.Mutex
	got map[string][]string
}

func (n *notices) fn(key string, value []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.got == nil {
		n.got = map[string][]string{}
	}
	n.got[key] = append(n.got[key], string(value))
}

func (n *notices) of(key string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got[key]...)
}

func TestOverwriteMovesTheDeadline(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand
	defer s.Close()
	var n notices
	s.NotifyExpired(n.fn)
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
	s.SweepExpired()
	for _, k := range []string{"longer", "none", "cas"} {
		v, ttl, err := s.GetWithTTL(ctx, k)
		if err != nil || string(v.([]byte)) != "new" {
			t.Fatalf("%s: Get = %v, %v; want the new value, not expired by the old deadline", k, v, err)
		}
		if k == "none" && ttl != 0 || k != "none" && ttl < 59*time.Minute {
			t.Errorf("%s: ttl %v", k, ttl)
		}
		if got := n.of(k); len(got) != 0 {
			t.Errorf("%s: expiry reported %q", k, got)
		}
	}
	if got := n.of("shorter"); len(got) != 1 || got[0] != "new" {
		t.Errorf("shorter: expiries %q, want one with the new value", got)
	}
	if got := n.of("deleted"); len(got) != 0 {
		t.Errorf("a deleted entry was reported expired: %q", got)
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

// TestSweepManyExpired expires more entries per shard than one lock
// acquisition of the sweep removes.
func TestSweepManyExpired(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour})
	defer s.Close()
	var n notices
	s.NotifyExpired(n.fn)
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
	s.SweepExpired()
	for i := range expired {
		if got := n.of(fmt.Sprint("e", i)); len(got) != 1 || got[0] != fmt.Sprint("v", i) {
			t.Fatalf("e%d: expiries %q, want exactly one with its value", i, got)
		}
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
	var n notices
	s.NotifyExpired(n.fn)
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
	s.Close()                         // waits for a sweep in progress to deliver
	s.SweepExpired()
	left := 0
	for w := range writers {
		for key, v := range final[w] {
			got := n.of(key)
			for _, g := range got {
				if g[0] != 'S' {
					t.Fatalf("%s: expiry reported for %q, written with a TTL of 1 h", key, g)
				}
			}
			switch {
			case v == "":
				wantGone(t, s, key)
			case v[0] == 'S':
				wantGone(t, s, key)
				if len(got) == 0 || got[len(got)-1] != v {
					t.Fatalf("%s: expiries %q, want the last one %q", key, got, v)
				}
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
