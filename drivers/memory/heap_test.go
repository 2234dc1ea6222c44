package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// checkShards verifies each shard's invariant: its heap holds a node for
// exactly the entries that have a deadline, each at its own index with
// that deadline, in heap order.
func checkShards(t *testing.T, s *Store) {
	t.Helper()
	for n := range s.shards {
		sh := &s.shards[n]
		sh.mu.RLock()
		withTTL := 0
		for k, it := range sh.m {
			switch {
			case it.expires == 0 && it.node != nil:
				t.Fatalf("shard %d: %q has no deadline but a heap node", n, k)
			case it.expires == 0:
			case it.node == nil || it.node.key != k:
				t.Fatalf("shard %d: %q (deadline %d) has no node of its own", n, k, it.expires)
			case it.node.idx < 0 || it.node.idx >= len(sh.h) || sh.h[it.node.idx].n != it.node:
				t.Fatalf("shard %d: %q not at its heap index %d", n, k, it.node.idx)
			case sh.h[it.node.idx].expires != it.expires:
				t.Fatalf("shard %d: %q in the heap at deadline %d, not %d", n, k, sh.h[it.node.idx].expires, it.expires)
			default:
				withTTL++
			}
		}
		if len(sh.h) != withTTL {
			t.Fatalf("shard %d: heap of %d for %d entries with a deadline", n, len(sh.h), withTTL)
		}
		for i, sl := range sh.h {
			if sl.n.idx != i {
				t.Fatalf("shard %d: heap slot %d holds a node that says %d", n, i, sl.n.idx)
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
			switch rng.IntN(7) {
			case 0:
				s.Delete(ctx, k)
			case 6:
				s.CompareAndDelete(ctx, k, []byte("v"))
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
