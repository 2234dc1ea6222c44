package memory_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/drivers/memory"
)

const (
	benchLive    = 1_000_000 // live entries, TTL 1 h
	benchExpired = 10_000    // entries that expire before each sweep
)

// fillStore returns a store with benchLive entries of 64 bytes, each with
// a TTL, their keys, and the heap the store took per entry (keys, which it
// shares with the caller, not included).
func fillStore(b *testing.B) (*memory.Store, []string, float64) {
	keys := make([]string, benchLive)
	for i := range keys {
		keys[i] = fmt.Sprintf("sess:%043d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand
	b.Cleanup(func() { s.Close() })
	v := make([]byte, 64)
	ctx := context.Background()
	for _, k := range keys {
		if err := s.Set(ctx, k, v, store.WithExpiration(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return s, keys, float64(after.HeapAlloc-before.HeapAlloc) / benchLive
}

// expiredKeys are the keys addExpired stores.
var expiredKeys = func() []string {
	k := make([]string, benchExpired)
	for i := range k {
		k[i] = fmt.Sprintf("gone:%038d", i)
	}
	return k
}()

// addExpired stores benchExpired entries that are already expired.
func addExpired(b *testing.B, s *memory.Store) {
	ctx := context.Background()
	v := make([]byte, 64)
	for _, k := range expiredKeys {
		if err := s.Set(ctx, k, v, store.WithExpiration(time.Nanosecond)); err != nil {
			b.Error(err)
			return
		}
	}
}

// BenchmarkSweep measures the expiry sweep of a store holding 1M live
// entries with TTLs. sweep-10k-expired: one SweepExpired removing 10k
// expired entries (ns/op is the time per sweep); it also reports the heap
// per entry. sweep-none-expired: one SweepExpired with nothing to remove,
// the steady state. get-idle: Get of live keys, nothing else running;
// get-while-sweeping: the same while another goroutine adds 10k expired
// entries and sweeps, over and over. They report Get latency percentiles
// and the longest wait, for get-while-sweeping of the Gets that started
// while a sweep ran (and what share of Gets that was), and the time
// goroutines spent blocked on locks per sweep (runtime/metrics
// /sync/mutex/wait/total).
func BenchmarkSweep(b *testing.B) {
	b.Run("sweep-10k-expired", func(b *testing.B) {
		s, _, perEntry := fillStore(b)
		for b.Loop() {
			b.StopTimer()
			addExpired(b, s)
			b.StartTimer()
			if n := s.SweepExpired(); n != benchExpired {
				b.Fatalf("SweepExpired removed %d entries, want %d", n, benchExpired)
			}
		}
		b.ReportMetric(perEntry, "heap-B/entry")
	})
	b.Run("sweep-none-expired", func(b *testing.B) {
		s, _, _ := fillStore(b)
		for b.Loop() {
			s.SweepExpired()
		}
		if s.Len() != benchLive {
			b.Fatalf("Len = %d", s.Len())
		}
	})
	get := func(b *testing.B, sweeping bool) {
		s, keys, _ := fillStore(b)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var sweeps atomic.Int64
		var inSweep atomic.Bool
		if sweeping {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					addExpired(b, s)
					inSweep.Store(true)
					s.SweepExpired()
					inSweep.Store(false)
					sweeps.Add(1)
				}
			}()
		}
		waitSample := []metrics.Sample{{Name: "/sync/mutex/wait/total:seconds"}}
		metrics.Read(waitSample)
		wait0 := waitSample[0].Value.Float64()
		ctx := context.Background()
		// Latencies of Gets that started while a sweep ran, and of the others.
		during := make([]time.Duration, 0, 1<<20)
		other := make([]time.Duration, 0, 1<<20)
		i := 0
		for b.Loop() {
			swept := inSweep.Load()
			t0 := time.Now()
			if _, err := s.Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			if swept && len(during) < cap(during) {
				during = append(during, d)
			} else if !swept && len(other) < cap(other) {
				other = append(other, d)
			}
			i += 7919
		}
		close(stop)
		wg.Wait()
		metrics.Read(waitSample)
		wait := waitSample[0].Value.Float64() - wait0
		report := func(lat []time.Duration, prefix string) {
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
			b.ReportMetric(q(0.99), prefix+"p99-ns")
			b.ReportMetric(q(0.999), prefix+"p99.9-ns")
			b.ReportMetric(q(1), prefix+"max-ns")
		}
		if !sweeping {
			report(other, "")
			return
		}
		report(during, "in-sweep-")
		b.ReportMetric(wait*1e6/float64(max(1, sweeps.Load())), "lockwait-us/sweep")
		b.ReportMetric(float64(len(during))/float64(len(during)+len(other)), "in-sweep-share")
		b.ReportMetric(float64(sweeps.Load())/b.Elapsed().Seconds(), "sweeps/s")
	}
	b.Run("get-idle", func(b *testing.B) { get(b, false) })
	b.Run("get-while-sweeping", func(b *testing.B) { get(b, true) })
}
