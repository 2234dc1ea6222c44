package sessions_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/internal/faultstore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects a Manager's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(substr string) int { return strings.Count(b.String(), substr) }

func slogTo(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// backend is one shared storage: a memory store behind a fault-injecting,
// call-counting wrapper.
type backend struct {
	mem   *memory.Store
	fault *faultstore.Store
}

func newBackend(t *testing.T) *backend {
	mem := memory.New(memory.Options{SweepInterval: 10 * time.Millisecond})
	t.Cleanup(func() { mem.Close() })
	return &backend{mem: mem, fault: faultstore.New(mem)}
}

// node is one server: a Manager and the test app behind its middleware.
type node struct {
	m    *sessions.Manager
	h    http.Handler
	logs *logBuffer
}

// newNode starts a Manager over b with cfg (Store and Logger filled in) and
// closes it at cleanup.
func newNode(t *testing.T, b *backend, cfg sessions.Config) *node {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = b.fault
	}
	logs := &logBuffer{}
	cfg.Logger = slogTo(logs)
	m, err := sessions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{m: m, h: m.Handler(testApp()), logs: logs}
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *node) close(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.m.Close(ctx); err != nil && err != sessions.ErrManagerClosed {
		t.Errorf("Close: %v", err)
	}
}

// testApp: /set?k=&v=, /get?k=, /incr?k=, /uincr?k= (with Update), /geti?k= (an int), /del?k=, /renew, /invalidate,
// /keys, /redirect?k=&v=.
func testApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if err := s.Set(r.FormValue("k"), r.FormValue("v")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := sessions.Get[string](sessions.FromContext(r.Context()), r.FormValue("k"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !ok {
			http.Error(w, "absent", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, v)
	})
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		n, _, _ := sessions.Get[int](s, r.FormValue("k"))
		if err := s.Set(r.FormValue("k"), n+1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n+1)
	})
	mux.HandleFunc("/geti", func(w http.ResponseWriter, r *http.Request) {
		n, ok, err := sessions.Get[int](sessions.FromContext(r.Context()), r.FormValue("k"))
		if err != nil || !ok {
			http.Error(w, fmt.Sprint("absent or not an int: ", err), http.StatusNotFound)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/uincr", func(w http.ResponseWriter, r *http.Request) {
		n, err := sessions.Update(sessions.FromContext(r.Context()), r.FormValue("k"), func(old int, _ bool) (int, error) { return old + 1, nil })
		switch {
		case errors.Is(err, sessions.ErrSessionEnded):
			http.Error(w, err.Error(), http.StatusConflict)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			fmt.Fprint(w, n)
		}
	})
	mux.HandleFunc("/del", func(w http.ResponseWriter, r *http.Request) {
		sessions.FromContext(r.Context()).Delete(r.FormValue("k"))
	})
	mux.HandleFunc("/renew", func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Renew(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/invalidate", func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Invalidate(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Join(sessions.FromContext(r.Context()).Keys(), ","))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Set(r.FormValue("k"), r.FormValue("v")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/get?k="+r.FormValue("k"), http.StatusSeeOther)
	})
	return mux
}

// clock is a test clock that only moves when told: give its now to
// sessions.NewWithClock (newClockNode), move it with advance, and run the
// Manager's background work at the new time with sessions.Sweep, Tick or
// Flush (see export_test.go).
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// newClockNode is newNode with a clock of the test's.
func newClockNode(t *testing.T, b *backend, cfg sessions.Config, clk *clock) *node {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = b.fault
	}
	logs := &logBuffer{}
	cfg.Logger = slogTo(logs)
	m, err := sessions.NewWithClock(cfg, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{m: m, h: m.Handler(testApp()), logs: logs}
	t.Cleanup(func() { n.close(t) })
	return n
}

// tick runs, at the clock's time, rounds of what the sweeper does on each
// tick (sessions.Tick) on every node: a few rounds stand for "several sweeps
// passed". The nodes of a round tick concurrently, as servers sharing a
// storage do.
func (c *clock) tick(rounds int, nodes ...*node) {
	for range rounds {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); sessions.Tick(n.m, c.now()) }()
		}
		wg.Wait()
	}
}

// client is a browser: it keeps the session cookie between requests.
type client struct {
	t      *testing.T
	cookie string // session ID; "" for none
	name   string // cookie name
	raw    string // the cookie's whole value (ID and version), if set by a response
}

// idOf returns the session ID of a cookie value (which may carry a
// version after the ID).
func idOf(value string) string {
	if len(value) > 43 {
		return value[:43]
	}
	return value
}

func newClient(t *testing.T) *client { return &client{t: t, name: "session"} }

// do sends one request to h and returns the status and body, updating the
// cookie from Set-Cookie.
func (c *client) do(h http.Handler, target string) (int, string) {
	c.t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if c.cookie != "" {
		value := c.cookie
		if idOf(c.raw) == c.cookie {
			value = c.raw
		}
		r.AddCookie(&http.Cookie{Name: c.name, Value: value})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == c.name {
			if ck.MaxAge < 0 {
				c.cookie, c.raw = "", ""
			} else {
				c.cookie, c.raw = idOf(ck.Value), ck.Value
			}
		}
	}
	return w.Code, w.Body.String()
}

// must is do that fails the test unless the status is want.
func (c *client) must(h http.Handler, target string, want int) string {
	c.t.Helper()
	code, body := c.do(h, target)
	if code != want {
		c.t.Fatalf("GET %s: status %d (%s), want %d", target, code, strings.TrimSpace(body), want)
	}
	return body
}

// storedKeys lists the session entries in the memory store.
func (b *backend) entries() int { return b.mem.Len() }
