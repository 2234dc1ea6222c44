package sessions_test

import (
	"context"
	"flag"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
)

var (
	evictSessions = flag.Int("evict.sessions", 1_000_000, "BenchmarkEvictionUnderLoad: sessions created")
	evictHot      = flag.Int("evict.hot", 100_000, "BenchmarkEvictionUnderLoad: sessions kept hot by the readers")
	evictReaders  = flag.Int("evict.readers", 4, "BenchmarkEvictionUnderLoad: reader goroutines")
	evictQuiet    = flag.Duration("evict.quiet", 3*time.Second, "BenchmarkEvictionUnderLoad: read window without a sweep")
	evictMaxLoad  = flag.Duration("evict.maxload", 10*time.Second, "BenchmarkEvictionUnderLoad: longest read window during the sweep")
)

// BenchmarkEvictionUnderLoad reproduces issue 18's measurement of idle
// eviction (sticky mode): it creates -evict.sessions sessions through the
// middleware, keeps -evict.hot of them hot with -evict.readers goroutines
// reading through the middleware, and evicts all the others in one sweep.
// Run it once: go test -run '^$' -bench EvictionUnderLoad -benchtime 1x.
//
// Metrics:
//   - evicted/s: sessions evicted per second while the readers run (the
//     window ends when the sweep does, or after -evict.maxload; a sweep
//     still running then finishes unmeasured);
//   - quiet-p99-ns, quiet-p99.9-ns: read latency over -evict.quiet with no
//     sweep; busy-p99-ns, busy-p99.9-ns: the same while one more goroutine
//     only burns CPU (a control: what any CPU-bound sweeper costs the
//     readers on this machine, locks aside); sweep-p99-ns, sweep-p99.9-ns:
//     the same during the sweep; quiet-reads/s, sweep-reads/s: the
//     readers' throughput;
//   - idle-evicted/s: the hot sessions evicted afterwards, readers stopped;
//   - heap-B/resident: heap per resident session before the eviction;
//   - heap-B/evicted: heap left after every session was evicted, minus the
//     heap before the first was created, per evicted session.
//
// The storage is a store that acknowledges writes and keeps nothing, so the
// heap figures are the memory tier's alone. The Manager's clock is the
// benchmark's: sessions become idle by moving it, not by waiting.
func BenchmarkEvictionUnderLoad(b *testing.B) {
	for b.Loop() {
		evictionUnderLoad(b)
	}
}

func evictionUnderLoad(b *testing.B) {
	n, hot, readers := *evictSessions, min(*evictHot, *evictSessions), *evictReaders
	const idleEvict = time.Hour
	var clk atomic.Int64
	t0 := time.Now()
	clk.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clk.Load()) }
	m, err := sessions.NewWithClock(sessions.Config{
		Store: discardStore{}, IdleEvict: idleEvict, Timeout: 24 * time.Hour,
		Logger: slogTo(&logBuffer{}), Cookie: sessions.CookieConfig{Insecure: true},
	}, now)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if r.Method == http.MethodPost {
			if err := s.Set("user", "alice"); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
		} else if _, ok, _ := sessions.Get[string](s, "user"); !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	heap0 := heapAlloc()

	// Create the sessions, at t0; keep the cookies of the hot ones.
	hotCookies := make([]string, 0, hot)
	create := httptest.NewRequest(http.MethodPost, "/", nil)
	w := &statusWriter{h: http.Header{}}
	for i := range n {
		clear(w.h)
		h.ServeHTTP(w, create)
		if w.code != http.StatusOK {
			b.Fatalf("create: status %d", w.code)
		}
		if i < hot {
			c, _, _ := strings.Cut(w.h.Get("Set-Cookie"), ";")
			hotCookies = append(hotCookies, c)
		}
	}
	for deadline := time.Now().Add(time.Minute); m.Stats().PendingWrites > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("write-behind did not drain")
		}
	}
	if st := m.Stats(); st.Resident != n {
		b.Fatalf("%d resident, want %d", st.Resident, n)
	}
	heap1 := heapAlloc()

	// The hot sessions are used 2 s later than the others: a sweep at
	// t0+idleEvict+1s evicts exactly the cold ones.
	clk.Store(t0.Add(2 * time.Second).UnixNano())
	read := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range hotCookies {
		read.Header["Cookie"] = []string{c}
		h.ServeHTTP(w, read)
	}

	// Readers: closed loop over the hot set, latency into per-phase
	// histograms.
	const (
		phaseWarm = iota
		phaseQuiet
		phaseBusy
		phaseSweep
		phaseStop
	)
	var phase atomic.Int32
	hists := make([][3]latencyHist, readers)
	var misses atomic.Int64
	var wg sync.WaitGroup
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			w := &statusWriter{h: http.Header{}}
			cookie := make([]string, 1)
			x := uint64(g)*0x9E3779B97F4A7C15 + 1
			for {
				p := phase.Load()
				if p == phaseStop {
					return
				}
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				cookie[0] = hotCookies[x%uint64(len(hotCookies))]
				r.Header["Cookie"] = cookie
				start := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(start)
				if w.code != http.StatusOK {
					misses.Add(1)
				}
				if p >= phaseQuiet && p <= phaseSweep {
					hists[g][p-phaseQuiet].add(d)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	phase.Store(phaseQuiet)
	time.Sleep(*evictQuiet)
	// Control: a goroutine that only burns CPU, taking no lock, for as long.
	phase.Store(phaseBusy)
	burnDone := make(chan struct{})
	go func() {
		defer close(burnDone)
		x := uint64(1)
		for phase.Load() == phaseBusy {
			for range 1000 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		sink.Store(x)
	}()
	time.Sleep(*evictQuiet)

	evicted0 := m.Stats().Evicted
	phase.Store(phaseSweep)
	<-burnDone
	sweepStart := time.Now()
	sweepDone := make(chan struct{})
	go func() {
		sessions.Sweep(m, t0.Add(idleEvict+time.Second))
		close(sweepDone)
	}()
	select {
	case <-sweepDone:
	case <-time.After(*evictMaxLoad):
	}
	loadWindow := time.Since(sweepStart)
	evictedUnderLoad := m.Stats().Evicted - evicted0
	phase.Store(phaseStop)
	wg.Wait()
	<-sweepDone
	if misses.Load() > 0 {
		b.Fatalf("%d reads of hot sessions found no session", misses.Load())
	}
	if got, want := m.Stats().Evicted-evicted0, uint64(n-hot); got != want {
		b.Fatalf("sweep evicted %d, want %d", got, want)
	}

	// Evict the hot ones too, with nobody reading.
	idleStart := time.Now()
	sessions.Sweep(m, t0.Add(idleEvict+3*time.Second))
	idleTook := time.Since(idleStart)
	if st := m.Stats(); st.Resident != 0 || st.Evicted != uint64(n) {
		b.Fatalf("after the last sweep: %d resident, %d evicted, want 0 and %d", st.Resident, st.Evicted, n)
	}
	hotCookies = nil
	heap2 := heapAlloc()

	var quiet, busy, sweep latencyHist
	for g := range hists {
		quiet.merge(&hists[g][0])
		busy.merge(&hists[g][1])
		sweep.merge(&hists[g][2])
	}
	b.ReportMetric(float64(evictedUnderLoad)/loadWindow.Seconds(), "evicted/s")
	b.ReportMetric(float64(hot)/idleTook.Seconds(), "idle-evicted/s")
	b.ReportMetric(float64(quiet.quantile(0.99)), "quiet-p99-ns")
	b.ReportMetric(float64(quiet.quantile(0.999)), "quiet-p99.9-ns")
	b.ReportMetric(float64(busy.quantile(0.99)), "busy-p99-ns")
	b.ReportMetric(float64(busy.quantile(0.999)), "busy-p99.9-ns")
	b.ReportMetric(float64(sweep.quantile(0.99)), "sweep-p99-ns")
	b.ReportMetric(float64(sweep.quantile(0.999)), "sweep-p99.9-ns")
	b.ReportMetric(float64(quiet.count)/evictQuiet.Seconds(), "quiet-reads/s")
	b.ReportMetric(float64(sweep.count)/loadWindow.Seconds(), "sweep-reads/s")
	b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(n), "heap-B/resident")
	b.ReportMetric(float64(int64(heap2)-int64(heap0))/float64(n), "heap-B/evicted")
}

var sink atomic.Uint64

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// latencyHist is a log-linear histogram of durations: 16 buckets per power
// of two (under 6.25% error), no allocation per sample.
type latencyHist struct {
	counts [64 * 16]uint64
	count  uint64
}

func (h *latencyHist) add(d time.Duration) {
	ns := uint64(max(d, 1))
	e := bits.Len64(ns) - 1 // 2^e <= ns < 2^(e+1)
	var frac uint64
	if e >= 4 {
		frac = (ns >> (e - 4)) & 15
	} else {
		frac = (ns << (4 - e)) & 15
	}
	h.counts[e*16+int(frac)]++
	h.count++
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.count += o.count
}

// quantile returns the upper bound (ns) of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) uint64 {
	rank := uint64(q * float64(h.count))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			e, frac := uint64(i/16), uint64(i%16)
			return ((16 + frac + 1) << e) >> 4
		}
	}
	return 0
}

// statusWriter is a cheap http.ResponseWriter that keeps the status.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *statusWriter) WriteHeader(code int)        { w.code = code }

// discardStore acknowledges every write and keeps nothing: a storage whose
// memory is not the benchmark's.
type discardStore struct{}

func (discardStore) Get(context.Context, any) (any, error) { return nil, store.NotFound{} }
func (discardStore) GetWithTTL(context.Context, any) (any, time.Duration, error) {
	return nil, 0, store.NotFound{}
}
func (discardStore) Set(context.Context, any, any, ...store.Option) error        { return nil }
func (discardStore) Delete(context.Context, any) error                           { return nil }
func (discardStore) Invalidate(context.Context, ...store.InvalidateOption) error { return nil }
func (discardStore) Clear(context.Context) error                                 { return nil }
func (discardStore) GetType() string                                             { return "discard" }
func (discardStore) SetMany(context.Context, []string, [][]byte, time.Duration) error {
	return nil
}
