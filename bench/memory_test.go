package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/poll"
)

// Both benchmarks of this file measure one scenario that takes about a
// second or more; b.N does not apply. Each computes its result once per
// process and reports it as custom metrics (the ns/op they show is the
// scenario's wall time, not a per-operation cost).

// --- write-behind coalescing ---

const (
	coalesceWrites = 1000
	coalesceSpan   = time.Second
)

type coalesceResult struct {
	storageWrites int64 // writes that reached the store
	managerWrites uint64
	span          time.Duration // how long the 1,000 requests took
	err           error
}

var coalesceOnce = sync.OnceValue(measureCoalescing)

// measureCoalescing sends coalesceWrites write requests to one session,
// evenly spread over coalesceSpan, in sticky mode with the default
// write-behind window (100 ms), and counts the writes that reach the store
// once everything is flushed. The first request creates the session.
func measureCoalescing() coalesceResult {
	st := newCountingStore("sess:")
	defer st.Close()
	m, err := sessions.New(sessions.Config{Store: st, Cookie: sessions.CookieConfig{Name: cookieName}})
	if err != nil {
		return coalesceResult{err: err}
	}
	defer m.Close(context.Background())
	h := m.Handler(writeHandler(oursAPI{}))

	start := time.Now()
	rec := serve(h, "")
	var cookie string
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieName {
			cookie = c.Name + "=" + c.Value
		}
	}
	if rec.Code != http.StatusOK || cookie == "" {
		return coalesceResult{err: fmt.Errorf("creating the session: status %d, cookie %q", rec.Code, cookie)}
	}
	for i := 1; i < coalesceWrites; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * coalesceSpan / coalesceWrites)))
		if rec := serve(h, cookie); rec.Code != http.StatusOK {
			return coalesceResult{err: fmt.Errorf("write %d: status %d", i, rec.Code)}
		}
	}
	span := time.Since(start)
	if want := fmt.Sprintf("%d %s", coalesceWrites, userValue); serve(m.Handler(readHandler(oursAPI{})), cookie).Body.String() != want {
		return coalesceResult{err: fmt.Errorf("the session does not read back as %q", want)}
	}
	// Wait for the queue to drain, then one more window for a flush that
	// may be in flight.
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().PendingWrites > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return coalesceResult{storageWrites: st.writes.Load(), managerWrites: m.Stats().StorageWrites, span: span}
}

// BenchmarkCoalescing reports how many storage writes 1,000 writes to one
// session within one second cost in sticky mode (WriteBehind 100 ms).
func BenchmarkCoalescing(b *testing.B) {
	r := coalesceOnce()
	if r.err != nil {
		b.Fatal(r.err)
	}
	b.ReportMetric(float64(r.storageWrites), "storage-writes")
	b.ReportMetric(float64(coalesceWrites), "session-writes")
	b.ReportMetric(r.span.Seconds(), "span-s")
	b.Logf("%d session writes over %v -> %d storage writes (Manager counted %d)", coalesceWrites, r.span.Round(time.Millisecond), r.storageWrites, r.managerWrites)
}

// --- heap per resident and per evicted session ---

const (
	heapSessions  = 100_000
	heapIdleEvict = 5 * time.Second
)

type heapResult struct {
	payload  float64 // the values' own bytes per session (keys + string bytes + 8 per int)
	resident float64 // heap bytes per resident session
	evicted  float64 // heap bytes per session left after idle eviction
	create   time.Duration
	err      error
}

// The session every request of the heap benchmark creates: five keys, a
// typical post-login session.
func setRealisticSession(s *sessions.Session, i int) (payload int, err error) {
	user := fmt.Sprintf("user%06d@example.com", i)
	var tok [32]byte
	rand.Read(tok[:])
	csrf := base64.RawURLEncoding.EncodeToString(tok[:])
	for _, kv := range []struct {
		k string
		v any
	}{{"user_id", 100000 + i}, {"user", user}, {"role", "member"}, {"csrf", csrf}, {"visits", 1}} {
		if err := s.Set(kv.k, kv.v); err != nil {
			return 0, err
		}
		payload += len(kv.k)
		switch v := kv.v.(type) {
		case string:
			payload += len(v)
		case int:
			payload += 8
		}
	}
	return payload, nil
}

var heapProfile = flag.String("bench.heapprofile", "",
	"write a heap profile to this file when the heap benchmark's sessions are resident (go tool pprof -sample_index=inuse_space)")

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func perSession(after, before uint64) float64 {
	return (float64(after) - float64(before)) / heapSessions
}

// measureHeap creates heapSessions sessions through the middleware (sticky
// mode), measures the live heap they hold, waits until idle eviction has
// dropped them all from memory, and measures again.
func measureHeap(newStore func() store.StoreInterface) heapResult {
	cfg := func(st store.StoreInterface) sessions.Config {
		return sessions.Config{Store: st, IdleEvict: heapIdleEvict, Cookie: sessions.CookieConfig{Name: cookieName}}
	}
	// Warm up code paths and pools on a throwaway Manager.
	if w, err := sessions.New(cfg(&nullStore{})); err == nil {
		h := w.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			setRealisticSession(sessions.FromContext(r.Context()), 0)
		}))
		for range 100 {
			serve(h, "")
		}
		w.Close(context.Background())
	}

	st := newStore()
	if c, ok := st.(interface{ Close() error }); ok {
		defer c.Close()
	}
	m, err := sessions.New(cfg(st))
	if err != nil {
		return heapResult{err: err}
	}
	defer m.Close(context.Background())
	var (
		i, payload int
		setErr     error
	)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := setRealisticSession(sessions.FromContext(r.Context()), i)
		if err != nil {
			setErr = err
		}
		payload += p
		w.WriteHeader(http.StatusOK)
	}))

	before := liveHeap()
	start := time.Now()
	for i = 0; i < heapSessions; i++ {
		serve(h, "")
	}
	if setErr != nil {
		return heapResult{err: setErr}
	}
	if !poll.Until(30*time.Second, func() bool { return m.Stats().PendingWrites == 0 }) {
		return heapResult{err: fmt.Errorf("write-behind did not drain: %+v", m.Stats())}
	}
	created := time.Since(start)
	resident := liveHeap()
	if *heapProfile != "" {
		if err := writeHeapProfile(*heapProfile); err != nil {
			return heapResult{err: err}
		}
	}
	if s := m.Stats(); s.Resident != heapSessions || s.Evicted != 0 {
		return heapResult{err: fmt.Errorf("creating %d sessions took %v, longer than IdleEvict %v allows: %+v", heapSessions, created, heapIdleEvict, s)}
	}
	if !poll.Until(3*heapIdleEvict+30*time.Second, func() bool { return m.Stats().Resident == 0 }) {
		return heapResult{err: fmt.Errorf("sessions not evicted: %+v", m.Stats())}
	}
	evicted := liveHeap()
	runtime.KeepAlive(h)
	return heapResult{
		payload:  float64(payload) / heapSessions,
		resident: perSession(resident, before),
		evicted:  perSession(evicted, before),
		create:   created,
	}
}

var heapOnce = map[string]func() heapResult{
	// The library's memory tier alone: the store keeps nothing in this
	// process, as Redis, memcached or a database would.
	"null-store": sync.OnceValue(func() heapResult {
		return measureHeap(func() store.StoreInterface { return &nullStore{} })
	}),
}

// BenchmarkHeap reports live heap bytes per resident session (and beyond
// the values' own size), and per session after all were idle-evicted, at
// 100,000 sessions of five keys, sticky mode.
func BenchmarkHeap(b *testing.B) {
	for _, name := range []string{"null-store"} {
		b.Run(name, func(b *testing.B) {
			r := heapOnce[name]()
			if r.err != nil {
				b.Fatal(r.err)
			}
			b.ReportMetric(r.resident, "resident-B/session")
			b.ReportMetric(r.resident-r.payload, "overhead-B/session")
			b.ReportMetric(r.payload, "payload-B/session")
			b.ReportMetric(r.evicted, "evicted-B/session")
			b.Logf("%d sessions created and flushed in %v: %.0f B/session resident (%.0f B of it the values' own), %.0f B/session after idle eviction",
				heapSessions, r.create.Round(time.Millisecond), r.resident, r.payload, r.evicted)
		})
	}
}
