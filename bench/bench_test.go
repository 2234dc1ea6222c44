package bench

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// The benchmarks of this file drive the same handler work through every
// contender's middleware, in parallel, with httptest (no network between
// the client and the handler):
//
//	read:  read an int "visits" and a string "user", answer with both
//	write: increment "visits", set "user", answer with both
//
// over numSessions sessions created up front (their cookies prepared before
// the timer starts; each goroutine cycles through them). The contender
// "bare" does the same request/recorder/handler work with no session at all:
// it is the harness cost to compare with or subtract.
//
// Benchmark names are BenchmarkSession/<op>/<contender>; the floor, run in
// the same rounds, is BenchmarkSession/floor/redis-GET and
// BenchmarkSession/floor/redis-GET+SET (and redis-GET+CAS, a GET plus the
// library's compare-and-swap script). cmd/ratios reads them.

const (
	numSessions = 1000
	userValue   = "alice@example.com"
	cookieName  = "session"
)

var rounds = flag.Int("bench.rounds", 5,
	"rounds of BenchmarkSession: each runs every contender once, read then write (sub-benchmark names get #01, #02 ... suffixes)")

var parallelism = flag.Int("bench.parallelism", 1,
	"goroutines per GOMAXPROCS in every parallel benchmark (b.SetParallelism), the same for every contender")

// Servers shared by every benchmark of the run, started in TestMain.
var servers struct {
	redis, memcached, postgres *testservers.Server
	redisErr, memcachedErr     error
	postgresErr                error
	dir                        string // temporary directory for bolt files
}

// Logical Redis databases, one per contender, so that none sees another's
// keys.
const (
	dbOursSticky  = 1
	dbOursCluster = 2
	dbSCS         = 3
	dbGorilla     = 4
	dbFloor       = 5
	dbWriteBehind = 6
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *heapProfile != "" {
		runtime.MemProfileRate = 1024 // before anything is allocated worth profiling
	}
	// The library logs at Info when a Manager starts, and may repeat a
	// warning for every request: keep the benchmark output readable (and
	// benchstat-clean) by showing each warning once, with a count at the end.
	logs := &onceHandler{next: slog.NewTextHandler(os.Stderr, nil), seen: map[string]int{}}
	slog.SetDefault(slog.New(logs))
	log.SetOutput(os.Stderr) // keep the log package (scs logs its errors there) unfiltered

	var err error
	if servers.dir, err = os.MkdirTemp("", "sessions-bench-"); err != nil {
		log.Fatal(err)
	}
	servers.redis, servers.redisErr = testservers.StartRedis()
	servers.memcached, servers.memcachedErr = testservers.StartMemcached()
	servers.postgres, servers.postgresErr = testservers.StartPostgres()
	for name, err := range map[string]error{"redis-server": servers.redisErr, "memcached": servers.memcachedErr, "postgres": servers.postgresErr} {
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not started, its contenders are skipped: %v\n", name, err)
		}
	}

	code := m.Run()

	for _, s := range []*testservers.Server{servers.redis, servers.memcached, servers.postgres} {
		if s != nil {
			if err := s.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: closing a server: %v\n", err)
			}
		}
	}
	os.RemoveAll(servers.dir)
	logs.report()
	os.Exit(code)
}

// onceHandler passes on the first record of each message at Warn or above
// and counts the rest.
type onceHandler struct {
	mu   sync.Mutex
	next slog.Handler
	seen map[string]int
}

func (h *onceHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *onceHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *onceHandler) WithGroup(string) slog.Handler                { return h }

func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.seen[r.Message]++
	first := h.seen[r.Message] == 1
	h.mu.Unlock()
	if first {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *onceHandler) report() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for msg, n := range h.seen {
		if n > 1 {
			fmt.Fprintf(os.Stderr, "bench: library logged %q %d times in all\n", msg, n)
		}
	}
}

// sessionAPI is what a contender offers the handler: the same two pieces
// of work, expressed in the contender's own API.
type sessionAPI interface {
	// read returns the session's "visits" and "user".
	read(w http.ResponseWriter, r *http.Request) (visits int, user string, err error)
	// write increments "visits", sets "user" and returns the new visits.
	write(w http.ResponseWriter, r *http.Request) (visits int, err error)
}

// contender is one session library set up over one storage.
type contender struct {
	name  string
	wrap  func(http.Handler) http.Handler // the library's middleware (identity when it has none)
	api   sessionAPI
	close func()

	read, write http.Handler
	cookies     []string // Cookie header values of the pre-created sessions
}

// respond writes the same small answer for every contender.
func respond(w http.ResponseWriter, visits int, user string) {
	var buf [64]byte
	b := strconv.AppendInt(buf[:0], int64(visits), 10)
	b = append(b, ' ')
	b = append(b, user...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func readHandler(a sessionAPI) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, u, err := a.read(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		respond(w, n, u)
	})
}

func writeHandler(a sessionAPI) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := a.write(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		respond(w, n, userValue)
	})
}

// bareAPI does no session work: same handler shape, constant values.
type bareAPI struct{}

func (bareAPI) read(http.ResponseWriter, *http.Request) (int, string, error) {
	return 1, userValue, nil
}
func (bareAPI) write(http.ResponseWriter, *http.Request) (int, error) { return 1, nil }

// prepare builds the handlers and creates numSessions sessions with one
// write request each, keeping their cookies.
func (c *contender) prepare() error {
	c.read = c.wrap(readHandler(c.api))
	c.write = c.wrap(writeHandler(c.api))
	if c.name == "bare" {
		c.cookies = make([]string, numSessions)
		for i := range c.cookies {
			c.cookies[i] = fmt.Sprintf("%s=bare%04d", cookieName, i)
		}
		return nil
	}
	c.cookies = make([]string, 0, numSessions)
	for range numSessions {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		rec := httptest.NewRecorder()
		c.write.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("%s: creating a session: status %d: %s", c.name, rec.Code, rec.Body)
		}
		var cookie string
		for _, line := range rec.Result().Header["Set-Cookie"] {
			if ck, err := http.ParseSetCookie(line); err == nil && ck.Name == cookieName && ck.Value != "" {
				cookie = ck.Name + "=" + ck.Value
			}
		}
		if cookie == "" {
			return fmt.Errorf("%s: creating a session: no %q cookie in %q", c.name, cookieName, rec.Result().Header["Set-Cookie"])
		}
		c.cookies = append(c.cookies, cookie)
	}
	// The sessions must read back as written, through the read handler.
	for _, i := range []int{0, numSessions / 2, numSessions - 1} {
		rec := serve(c.read, c.cookies[i])
		if want := "1 " + userValue; rec.Code != http.StatusOK || rec.Body.String() != want {
			return fmt.Errorf("%s: reading session %d back: status %d, body %q; want %q", c.name, i, rec.Code, rec.Body, want)
		}
	}
	return nil
}

func serve(h http.Handler, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// goroutineSeq spreads the goroutines of a parallel benchmark over the
// sessions.
var goroutineSeq atomic.Uint64

// runRequests drives h in parallel over the cookies.
func runRequests(b *testing.B, h http.Handler, cookies []string) {
	b.SetParallelism(*parallelism)
	b.ReportAllocs()
	// Every contender starts from a collected heap, so that none inherits
	// another's garbage (the harness allocates 6.5 KB per request, and GC
	// cost depends on the heap at hand).
	runtime.GC()
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := int(goroutineSeq.Add(1)*397) % len(cookies)
		for pb.Next() {
			if i++; i == len(cookies) {
				i = 0
			}
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Cookie", cookies[i])
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

// processCPU returns the CPU time (user + system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp resets the timer and returns a function, to defer, that reports
// the process CPU time per operation as "cpu-ns/op": on a shared, noisy
// machine it varies far less than wall time, since time the process spends
// waiting for a CPU is not in it. It counts everything the process does
// meanwhile (background flushes, GC), and not what servers in other
// processes (redis-server, PostgreSQL) do.
func cpuPerOp(b *testing.B) func() {
	b.ResetTimer()
	start := processCPU()
	return func() {
		b.StopTimer()
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func BenchmarkSession(b *testing.B) {
	// Contenders are set up on the first sub-benchmark that selects them
	// (so that -bench can pick one without setting up the others) and
	// closed at the end.
	type lazy struct {
		once    sync.Once
		c       *contender
		err     error
		skipped bool // no server: skip, rather than fail
	}
	all := make([]*lazy, len(contenders))
	for i := range all {
		all[i] = new(lazy)
	}
	defer func() {
		for _, l := range all {
			if l.c != nil {
				l.c.close()
			}
		}
	}()
	get := func(i int) *lazy {
		l := all[i]
		l.once.Do(func() {
			var c *contender
			if c, l.err = contenders[i](); l.err != nil {
				l.skipped = true
				fmt.Fprintf(os.Stderr, "bench: contender skipped: %v\n", l.err)
				return
			}
			if c.name != contenderNames[i] {
				l.err = fmt.Errorf("contender %d is named %q, contenderNames says %q", i, c.name, contenderNames[i])
			} else {
				l.err = c.prepare()
			}
			if l.err != nil {
				c.close()
				return
			}
			l.c = c
		})
		return l
	}
	var fl floor
	defer fl.close()
	// Rounds interleave the contenders, so that a burst of load from
	// elsewhere on a shared machine does not land on one contender's
	// samples only; cmd/ratios takes the median over rounds.
	for range *rounds {
		for _, op := range []string{"read", "write"} {
			for i := range contenders {
				b.Run(op+"/"+contenderNames[i], func(b *testing.B) {
					l := get(i)
					if l.skipped {
						b.Skip(l.err)
					}
					if l.err != nil {
						b.Fatal(l.err)
					}
					c := l.c
					h := c.read
					if op == "write" {
						h = c.write
					}
					runRequests(b, h, c.cookies)
				})
			}
			if op == "read" {
				b.Run("floor/redis-GET", func(b *testing.B) { fl.run(b, floorGet) })
			} else {
				b.Run("floor/redis-GET+SET", func(b *testing.B) { fl.run(b, floorGetSet) })
				b.Run("floor/redis-GET+CAS", func(b *testing.B) { fl.run(b, floorGetCAS) })
			}
		}
	}
}

func TestHandlersAnswer(t *testing.T) {
	// A quick check of the harness with the contenders that need no server.
	for _, mk := range []func() (*contender, error){newBare, newOursStickyMemory, newSCSMemstore} {
		c, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.prepare(); err != nil {
			t.Error(err)
		}
		if rec := serve(c.write, c.cookies[0]); rec.Code != 200 || (c.name != "bare" && rec.Body.String() != "2 "+userValue) {
			t.Errorf("%s: write: %d %q", c.name, rec.Code, rec.Body)
		}
		c.close()
	}
}

// ctx is the context of setup work.
var ctx = context.Background()
