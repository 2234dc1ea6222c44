package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// checkShards verifies each shard's invariant: its heap holds exactly the
// entries that have a deadline, each at its own index, in heap order.
func checkShards(t *testing.T, s *Store) {
	t.Helper()
	for n := range s.shards {
		sh := &s.shards[n]
		sh.mu.RLock()
		withTTL := 0
		for k, e := range sh.m {
			if e.key != k {
				t.Fatalf("shard %d: entry of %q filed under %q", n, e.key, k)
			}
			if e.expires != 0 {
				withTTL++
				if e.idx < 0 || e.idx >= len(sh.h) || sh.h[e.idx].e != e {
					t.Fatalf("shard %d: %q (deadline %d) not at its heap index %d", n, k, e.expires, e.idx)
				}
			} else if e.idx != -1 {
				t.Fatalf("shard %d: %q has no deadline but heap index %d", n, k, e.idx)
			}
		}
		if len(sh.h) != withTTL {
			t.Fatalf("shard %d: heap of %d for %d entries with a deadline", n, len(sh.h), withTTL)
		}
		for i, sl := range sh.h {
			if sl.expires != sl.e.expires || sl.e.idx != i {
				t.Fatalf("shard %d: heap slot %d out of date", n, i)
			}
			if i > 0 && sh.h[(i-1)/4].expires > sl.expires {
				t.Fatalf("shard %d: heap order broken at %d", n, i)
			}
		}
		sh.mu.RUnlock()
	}
}

func TestHeapInvariant(t *testing.T) {
	s := New(Options{SweepInterval: time.Hour})
	defer s.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	ttls := []time.Duration{0, time.Nanosecond, time.Millisecond, time.Minute, time.Hour}
	for round := range 20 {
		for range 2000 {
			k := fmt.Sprint("k", rng.IntN(500))
			ttl := ttls[rng.IntN(len(ttls))]
			switch rng.IntN(6) {
			case 0:
				s.Delete(ctx, k)
			case 1:
				s.CompareAndSwap(ctx, k, nil, []byte("c"), ttl)
			case 2:
				s.SetMany(ctx, []string{k, k + "x"}, [][]byte{[]byte("m"), nil}, ttl)
			default:
				s.Set(ctx, k, []byte("v"), store.WithExpiration(ttl))
			}
		}
		checkShards(t, s)
		if round%5 == 4 {
			s.Clear(ctx)
		}
		s.SweepExpired()
		checkShards(t, s)
	}
}
