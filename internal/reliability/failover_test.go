package reliability_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions"
	redisdriver "github.com/sessionstorage/sessions/drivers/redis"
	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// Failovers of Redis under load: Redis Cluster (a replica per master) and
// Sentinel (a master, two replicas, three Sentinels), in both modes. Two
// Managers serve failoverClients clients each writing its own counter
// continuously (each client sticks to one Manager); the master serving
// some of the sessions is killed (SIGKILL), and the load goes on until the
// storage has recovered. Then:
//
//   - no acknowledged write is lost that was acknowledged more than
//     failoverGrace before the kill (Redis replicates asynchronously: the
//     last writes a master acknowledged may never reach the replica that
//     takes over);
//   - sticky mode: no request fails;
//   - cluster mode: requests fail only within the failover window (the
//     kill to the first success of a session on the killed master) plus
//     failoverGrace;
//   - the storage recovers without a restart of anything, and both
//     Managers close with nothing left unwritten;
//   - no error, logged or answered, mentions CROSSSLOT or MOVED.
//
// SESSIONS_FAILOVER_WAIT (a duration, default 20s) bounds the wait for
// recovery, for measuring drivers that take longer;
// SESSIONS_FAILOVER_OPTIONS is appended to the storage URL (for example
// "&cluster_state_reload_interval=60s").
const (
	failoverClients = 10
	failoverGrace   = time.Second
)

func TestFailoverRedisClusterSticky(t *testing.T)   { testFailoverCluster(t, false) }
func TestFailoverRedisClusterCluster(t *testing.T)  { testFailoverCluster(t, true) }
func TestFailoverRedisSentinelSticky(t *testing.T)  { testFailoverSentinel(t, false) }
func TestFailoverRedisSentinelCluster(t *testing.T) { testFailoverSentinel(t, true) }

func testFailoverCluster(t *testing.T, clusterMode bool) {
	quietRedis()
	c := testservers.RedisClusterWithReplicas(t)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	ctx := context.Background()
	masterOf := func(key string) string {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatalf("master of %s: %v", key, err)
		}
		return m.Options().Addr
	}
	index := masterOf(redisdriver.ExpiryIndexKey)
	runFailover(t, failoverSetup{
		url:         c.URL(),
		clusterMode: clusterMode,
		// The master with the most sessions, other than the one holding
		// the expiry index (whose failover delays every write: see
		// docs/operations.md).
		victim: func(keys []string) (func(string) bool, func()) {
			count := map[string]int{}
			best := ""
			for _, k := range keys {
				if m := masterOf(k); m != index {
					if count[m]++; best == "" || count[m] > count[best] {
						best = m
					}
				}
			}
			if best == "" {
				t.Skip("every session landed on the expiry index's master")
			}
			t.Logf("killing master %s: %d of %d sessions (the expiry index is on %s)", best, count[best], len(keys), index)
			on := map[string]bool{}
			for _, k := range keys {
				on[k] = masterOf(k) == best
			}
			return func(k string) bool { return on[k] }, func() { c.Node(best).Kill(t) }
		},
	})
}

func testFailoverSentinel(t *testing.T, clusterMode bool) {
	quietRedis()
	dep := testservers.RedisSentinel(t)
	runFailover(t, failoverSetup{
		url:         dep.URL(),
		clusterMode: clusterMode,
		victim: func(keys []string) (func(string) bool, func()) {
			return func(string) bool { return true }, func() { dep.Master().Kill(t) }
		},
	})
}

type failoverSetup struct {
	url         string
	clusterMode bool
	// victim gets the sessions' storage keys and returns which of them
	// the kill affects, and the kill.
	victim func(keys []string) (affected func(key string) bool, kill func())
}

// reply is one response a client got.
type reply struct {
	start, at time.Time // sent, answered
	code      int
	n         int // the counter, for a 200
	body      string
}

// logRecorder keeps every log line of the Managers.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func runFailover(t *testing.T, s failoverSetup) {
	maxWait := 20 * time.Second
	if v := os.Getenv("SESSIONS_FAILOVER_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SESSIONS_FAILOVER_WAIT=%q: %v", v, err)
		}
		maxWait = d
	}

	s.url += os.Getenv("SESSIONS_FAILOVER_OPTIONS")
	logs := &logRecorder{}
	cfg := sessions.Config{Storage: s.url, Cluster: s.clusterMode, WriteBehind: 20 * time.Millisecond, Logger: slog.New(logs)}
	var servers [2]*sessions.Manager
	var handlers [2]http.Handler
	for i := range servers {
		m, err := sessions.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		servers[i], handlers[i] = m, m.Handler(counterApp())
		defer closeWithin(t, m, 5*time.Second) // after a failure; the normal path closes them below
	}

	// Each client gets its session, then writes continuously.
	clients := make([]*browser, failoverClients)
	keys := make([]string, failoverClients)
	for i := range clients {
		clients[i] = &browser{}
		if code, body := clients[i].get(handlers[i%2], "/incr"); code != 200 || body != "1" {
			t.Fatalf("client %d, first request: %d %q", i, code, body)
		}
		keys[i] = adapter.Key("sess:", clients[i].cookie[:43])
	}
	affected, kill := s.victim(keys)

	var (
		mu      sync.Mutex
		replies = make([][]reply, failoverClients)
		cookies = make([]string, failoverClients) // each client's, as of its last reply
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for i := range clients {
		cookies[i] = clients[i].cookie
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				start := time.Now()
				code, body := clients[i].get(handlers[i%2], "/incr")
				r := reply{start: start, at: time.Now(), code: code, body: body}
				if code == 200 {
					n, err := strconv.Atoi(body)
					if err != nil {
						r.code = -1 // an unreadable 200: counted as a failure
					}
					r.n = n
				}
				mu.Lock()
				replies[i] = append(replies[i], r)
				cookies[i] = clients[i].cookie
				mu.Unlock()
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	// Writes acknowledged by storage, sampled (sticky mode: the
	// write-behind keeps flushing the healthy sessions).
	type sample struct {
		at     time.Time
		writes uint64
	}
	var samples []sample
	sampleNow := func() sample {
		a, b := servers[0].Stats(), servers[1].Stats()
		return sample{time.Now(), a.StorageWrites + b.StorageWrites}
	}

	// A third server reads a session on the killed master from storage
	// (sticky mode: has the write-behind written it again?).
	reader := newManager(t, sessions.Config{Storage: s.url, Cluster: true})
	defer closeWithin(t, reader, 5*time.Second)
	rh := reader.Handler(counterApp())
	watched := -1
	for i := range clients {
		if affected(keys[i]) {
			watched = i
			break
		}
	}
	lastAcked := func(i int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 1
		for _, r := range replies[i] {
			if r.code == 200 {
				n = r.n
			}
		}
		return n
	}

	time.Sleep(failoverGrace + 500*time.Millisecond) // acknowledged writes well before the kill
	killedAt := time.Now()
	kill()
	t.Logf("killed the master at +0 (kill took %v)", time.Since(killedAt).Round(time.Millisecond))
	atKill := lastAcked(watched)

	// Recovery (cluster mode): the first success of a request for a
	// session on the killed master that started after the kill. Sticky
	// mode: the third server reads a later value of such a session than
	// the one acknowledged at the kill.
	var recoveredAt time.Time
	firstOK := func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		first := time.Time{}
		for i, rs := range replies {
			for _, r := range rs {
				if affected(keys[i]) && r.code == 200 && r.start.After(killedAt) && (first.IsZero() || r.at.Before(first)) {
					first = r.at
				}
			}
		}
		return first, !first.IsZero()
	}
	ok := poll.Until(maxWait, func() bool {
		samples = append(samples, sampleNow())
		if s.clusterMode {
			at, ok := firstOK()
			recoveredAt = at
			return ok
		}
		mu.Lock()
		cookie := cookies[watched]
		mu.Unlock()
		code, body := (&browser{cookie: cookie}).get(rh, "/get")
		if n, err := strconv.Atoi(body); code == 200 && err == nil && n > atKill {
			recoveredAt = time.Now()
			return true
		}
		return false
	})
	if !ok {
		stopLoad()
		t.Fatalf("no recovery within %v of the kill (SESSIONS_FAILOVER_WAIT)", maxWait)
	}
	window := recoveredAt.Sub(killedAt)
	time.Sleep(2 * failoverGrace) // running normally again: the last failoverGrace is checked below
	stopLoad()
	samples = append(samples, sampleNow())

	// Replies: failures and lost writes.
	var failures, failuresAfter, total int
	lostOld := 0
	var lastFailure time.Duration
	for i, rs := range replies {
		maxN, before := 1, 1 // the first request stored 1
		for _, r := range rs {
			total++
			if r.at.Before(killedAt.Add(-failoverGrace)) && r.code == 200 {
				before = r.n
			}
			if r.code != 200 {
				failures++
				if d := r.at.Sub(killedAt); d > lastFailure {
					lastFailure = d
				}
				if !r.at.Before(killedAt) && r.at.After(recoveredAt.Add(failoverGrace)) {
					failuresAfter++
				}
				if failures <= 3 || strings.Contains(r.body, "CROSSSLOT") || strings.Contains(r.body, "MOVED") {
					t.Logf("client %d at %+v: %d %q", i, r.at.Sub(killedAt).Round(time.Millisecond), r.code, r.body)
				}
				if !s.clusterMode || r.at.Before(killedAt) {
					t.Errorf("client %d at %+v from the kill: %d %q", i, r.at.Sub(killedAt).Round(time.Millisecond), r.code, r.body)
				}
				continue
			}
			if r.n <= maxN {
				// The counter went back: writes up to maxN were lost.
				t.Logf("client %d at %+v: counter %d after %d: %d writes lost", i, r.at.Sub(killedAt).Round(time.Millisecond), r.n, maxN, maxN-r.n+1)
				if r.n-1 < before {
					lostOld++
					t.Errorf("client %d: the write of %d, acknowledged more than %v before the kill, was lost (counter back to %d)", i, before, failoverGrace, r.n)
				}
			}
			maxN = r.n
		}
	}
	// Sticky mode: writes acknowledged by storage while the master was
	// down (the healthy masters' sessions were not held back).
	var outageWrites uint64
	var longestStall time.Duration
	lastWrite := killedAt
	for j, smp := range samples[:len(samples)-1] { // the last one is after a pause
		if j > 0 && smp.writes > samples[j-1].writes {
			if d := smp.at.Sub(lastWrite); d > longestStall && smp.at.After(killedAt) {
				longestStall = d
			}
			lastWrite = smp.at
			if smp.at.Before(recoveredAt) {
				outageWrites += smp.writes - samples[j-1].writes
			}
		}
	}
	mode := "sticky"
	if s.clusterMode {
		mode = "cluster"
	}
	t.Logf("%s mode: %d requests, %d failed (last at +%v; %d after the window + %v); failover window %v; "+
		"storage writes acknowledged during the window: %d; longest stretch without one after the kill: %v",
		mode, total, failures, lastFailure.Round(time.Millisecond), failuresAfter, failoverGrace, window.Round(time.Millisecond),
		outageWrites, longestStall.Round(time.Millisecond))
	if failuresAfter > 0 {
		t.Errorf("%d requests failed after the failover window (%v) + %v", failuresAfter, window.Round(time.Millisecond), failoverGrace)
	}
	if lostOld > 0 {
		t.Errorf("%d clients lost writes acknowledged more than %v before the kill", lostOld, failoverGrace)
	}
	if recent := failuresSince(replies, time.Now().Add(-failoverGrace)); recent > 0 {
		t.Errorf("%d requests failed in the last %v: not recovered", recent, failoverGrace)
	}

	// Both Managers write everything back, and the storage has each
	// client's last acknowledged value.
	for i, m := range servers {
		if err := closeWithin(t, m, 10*time.Second); err != nil {
			t.Errorf("closing server %d: %v", i, err)
		}
	}
	for i, rs := range replies {
		want := "1"
		for _, r := range rs {
			if r.code == 200 {
				want = r.body
			}
		}
		// The reader was idle through the failover: its first read of the
		// killed master's sessions may fail (go-redis dials the dead
		// address, with retries, before the slot layout is reloaded).
		code, body, tries := 0, "", 0
		poll.Until(2*time.Second, func() bool {
			tries++
			code, body = (&browser{cookie: clients[i].cookie}).get(rh, "/get")
			return code == 200
		})
		if tries > 1 {
			t.Logf("client %d: the idle reader needed %d tries", i, tries)
		}
		if code != 200 || body != want {
			t.Errorf("client %d: storage holds %d %q, want its last acknowledged %s", i, code, body, want)
		}
	}
	for _, l := range logs.all() {
		if strings.Contains(l, "CROSSSLOT") || strings.Contains(l, "MOVED") {
			t.Errorf("log: %s", l)
		}
	}
}

func failuresSince(replies [][]reply, since time.Time) int {
	n := 0
	for _, rs := range replies {
		for _, r := range rs {
			if r.code != 200 && r.at.After(since) {
				n++
			}
		}
	}
	return n
}

// quietRedis silences go-redis, which logs each failed dial to a dead
// master, once, before any test of the package runs in parallel.
var quietRedis = sync.OnceFunc(func() { goredis.SetLogger(quietRedisLogger{}) })

type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}
