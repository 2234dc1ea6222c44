package reliability_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	if err := goleak.Find(testservers.LeakCheckOptions()...); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

// counterApp increments "n" on /incr and prints it on /get.
func counterApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		n, _, _ := sessions.Get[int](s, "n")
		if r.URL.Path == "/incr" {
			n++
			if err := s.Set("n", n); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		fmt.Fprint(w, n)
	})
}

type browser struct{ cookie string }

func (b *browser) get(h http.Handler, path string) (int, string) {
	r := httptest.NewRequest("GET", path, nil)
	if b.cookie != "" {
		r.AddCookie(&http.Cookie{Name: "session", Value: b.cookie})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == "session" && c.MaxAge >= 0 {
			b.cookie = c.Value
		}
	}
	return w.Code, strings.TrimSpace(w.Body.String())
}

func newManager(t *testing.T, cfg sessions.Config) *sessions.Manager {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := sessions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeWithin(t *testing.T, m *sessions.Manager, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return m.Close(ctx)
}

// Sticky mode rides out a storage that dies and comes back empty: users keep
// their sessions from memory, and the queue rewrites them on recovery.
func TestStickyRidesOutRedisDeathAndRestart(t *testing.T) {
	srv := testservers.Redis(t)
	url := srv.URL() + "?dial_timeout=200ms&read_timeout=200ms&write_timeout=200ms&max_retries=-1"
	m := newManager(t, sessions.Config{Storage: url, WriteBehind: 20 * time.Millisecond, StorageTimeout: 300 * time.Millisecond})
	h := m.Handler(counterApp())
	b := &browser{}
	for i := 1; i <= 5; i++ {
		b.get(h, "/incr")
	}
	poll.Eventually(t, 5*time.Second, "first flush", func() bool { return m.Stats().StorageWrites > 0 && m.Stats().PendingWrites == 0 })

	srv.Kill(t)
	for i := 6; i <= 20; i++ {
		start := time.Now()
		if code, body := b.get(h, "/incr"); code != 200 || body != fmt.Sprint(i) {
			t.Fatalf("request %d while redis is dead: %d %q", i, code, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a request waited %v on the dead storage", d)
		}
	}
	poll.Eventually(t, 5*time.Second, "failed flushes", func() bool { return m.Stats().StorageErrors > 0 })

	srv.Restart(t) // comes back empty: --save "" and no AOF
	poll.Eventually(t, 15*time.Second, "queue flushed after recovery", func() bool { return m.Stats().PendingWrites == 0 })
	if err := closeWithin(t, m, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Another server reads what the first one wrote after the outage.
	m2 := newManager(t, sessions.Config{Storage: url})
	defer closeWithin(t, m2, 5*time.Second)
	if code, body := b.get(m2.Handler(counterApp()), "/get"); code != 200 || body != "20" {
		t.Fatalf("after the outage the stored session says %q (status %d), want 20", body, code)
	}
}

// Cluster mode answers fast and clearly while the storage is dead, and
// serves normally once it is back.
func TestClusterAnswersClearlyWhilePostgresIsDown(t *testing.T) {
	srv := testservers.Postgres(t)
	m := newManager(t, sessions.Config{Storage: srv.URL(), Cluster: true, StorageTimeout: 500 * time.Millisecond})
	defer closeWithin(t, m, 5*time.Second)
	h := m.Handler(counterApp())
	b := &browser{}
	for i := 1; i <= 3; i++ {
		b.get(h, "/incr")
	}
	srv.Kill(t)
	// A backend killed with its server may still answer one last query on
	// a loaded machine: poll until the outage shows, each request fast.
	code, body := 0, ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		start := time.Now()
		code, body = b.get(h, "/get")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a request took %v with PostgreSQL down; StorageTimeout is 500ms", d)
		}
		if code != http.StatusOK {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "Session storage unavailable") {
		t.Fatalf("with PostgreSQL down: %d %q, want 503 and the message", code, body)
	}
	srv.Restart(t) // PostgreSQL keeps its data
	poll.Eventually(t, 20*time.Second, "PostgreSQL back", func() bool {
		code, _ := b.get(h, "/get")
		return code == 200
	})
	if code, body := b.get(h, "/incr"); code != 200 || body != "4" {
		t.Fatalf("after the restart: %d %q, want 4 (nothing acknowledged was lost)", code, body)
	}
}

// Close during an outage gives up at its deadline, says so, and leaves no
// goroutine behind (TestMain checks).
func TestCloseDuringOutageReportsAndStops(t *testing.T) {
	srv := testservers.Redis(t)
	url := srv.URL() + "?dial_timeout=100ms&read_timeout=100ms&max_retries=-1"
	m := newManager(t, sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond, StorageTimeout: 200 * time.Millisecond})
	h := m.Handler(counterApp())
	b := &browser{}
	b.get(h, "/incr")
	srv.Kill(t)
	b.get(h, "/incr")
	err := closeWithin(t, m, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "pending writes not flushed") {
		t.Fatalf("Close during an outage = %v, want a report of unflushed writes", err)
	}
}

// Sticky mode over a Redis that dies and comes back empty while the app
// runs: every session held in memory is written again after the recovery,
// including the ones that did not change, so a graceful restart of the
// app afterwards loses none.
func TestStickyRewritesResidentSessionsAfterRedisComesBackEmpty(t *testing.T) {
	srv := testservers.Redis(t)
	url := srv.URL() + "?dial_timeout=200ms&read_timeout=200ms&write_timeout=200ms&max_retries=-1"
	m := newManager(t, sessions.Config{Storage: url, WriteBehind: 20 * time.Millisecond, StorageTimeout: 300 * time.Millisecond})
	h := m.Handler(counterApp())
	browsers := make([]*browser, 20)
	for i := range browsers {
		browsers[i] = &browser{}
		for j := 0; j <= i; j++ {
			browsers[i].get(h, "/incr")
		}
	}
	poll.Eventually(t, 5*time.Second, "first flush", func() bool { return m.Stats().PendingWrites == 0 && m.Stats().StorageWrites >= 20 })

	srv.Kill(t)
	browsers[0].get(h, "/incr") // one change during the outage; the others stay unchanged
	poll.Eventually(t, 5*time.Second, "failed flushes", func() bool { return m.Stats().StorageErrors > 0 })
	srv.Restart(t) // empty: --save "" and no AOF
	poll.Eventually(t, 20*time.Second, "resident sessions written again", func() bool {
		s := m.Stats()
		return s.Repersisted >= 20 && s.PendingWrites == 0
	})
	if err := closeWithin(t, m, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, sessions.Config{Storage: url})
	defer closeWithin(t, m2, 5*time.Second)
	h2 := m2.Handler(counterApp())
	for i, b := range browsers {
		want := fmt.Sprint(i + 1)
		if i == 0 {
			want = "2"
		}
		if code, body := b.get(h2, "/get"); code != 200 || body != want {
			t.Errorf("session %d after the outage and a restart: %d %q, want %s", i, code, body, want)
		}
	}
}

// Redis killed and restarted empty between two of the server's calls, so
// that the server sees no failed call: a missing entry is then not taken
// for a session ended elsewhere (the server's alive marker is gone too),
// and every resident session is written again.
func TestStickyNoticesRedisRestartedEmptyWithoutAFailedCall(t *testing.T) {
	srv := testservers.Redis(t)
	m := newManager(t, sessions.Config{Storage: srv.URL(), WriteBehind: 10 * time.Millisecond})
	h := m.Handler(counterApp())
	browsers := make([]*browser, 5)
	for i := range browsers {
		browsers[i] = &browser{}
		browsers[i].get(h, "/incr")
	}
	poll.Eventually(t, 5*time.Second, "first flush", func() bool { return m.Stats().PendingWrites == 0 && m.Stats().StorageWrites >= 5 })
	srv.Kill(t)
	srv.Restart(t) // empty; no request touched storage meanwhile
	if code, body := browsers[0].get(h, "/incr"); code != 200 || body != "2" {
		t.Fatalf("after the restart: %d %q", code, body)
	}
	poll.Eventually(t, 10*time.Second, "sessions written again", func() bool {
		s := m.Stats()
		return s.Repersisted >= 5 && s.PendingWrites == 0
	})
	if err := closeWithin(t, m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, sessions.Config{Storage: srv.URL()})
	defer closeWithin(t, m2, 5*time.Second)
	for i, b := range browsers {
		want := "1"
		if i == 0 {
			want = "2"
		}
		if code, body := b.get(m2.Handler(counterApp()), "/get"); code != 200 || body != want {
			t.Errorf("session %d after Redis restarted empty: %d %q, want %s", i, code, body, want)
		}
	}
}

// Over Redis, two sticky servers: a logout on one is not undone by the
// other's write-behind of a change it made to its resident copy.
func TestStickyLogoutElsewhereNotWrittenBackOverRedis(t *testing.T) {
	srv := testservers.Redis(t)
	cfg := sessions.Config{Storage: srv.URL(), WriteBehind: 10 * time.Millisecond}
	a, b := newManager(t, cfg), newManager(t, cfg)
	defer closeWithin(t, a, 5*time.Second)
	defer closeWithin(t, b, 5*time.Second)
	ha, hb := a.Handler(lifecycleApp(newGate())), b.Handler(lifecycleApp(newGate()))
	user := &browser{}
	user.get(ha, "/set?k=user&v=alice")
	poll.Eventually(t, 5*time.Second, "stored", func() bool { return a.Stats().PendingWrites == 0 && a.Stats().StorageWrites > 0 })
	old := user.cookie
	if code, _ := user.get(hb, "/invalidate"); code != 200 {
		t.Fatal("logout on b")
	}
	poll.Eventually(t, 5*time.Second, "deleted", func() bool { return b.Stats().StorageDeletes > 0 })
	if r := send(ha, old, "/set?k=cart&v=full"); r.code != 200 {
		t.Fatalf("late write on a: %d", r.code)
	}
	poll.Eventually(t, 5*time.Second, "a's write-behind", func() bool { return a.Stats().PendingWrites == 0 })
	if r := send(hb, old[:43], "/get?k=user"); r.code != http.StatusNotFound {
		t.Fatalf("the logged-out session was written back: %d", r.code)
	}
}
