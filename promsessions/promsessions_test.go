package promsessions_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	"github.com/sessionstorage/sessions/internal/testservers"
	"github.com/sessionstorage/sessions/promsessions"
	"github.com/sessionstorage/sessions/serializer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// manager starts a Manager with its own Observer and a registry
// exporting it.
func manager(t *testing.T, cfg sessions.Config) (*sessions.Manager, *prometheus.Registry) {
	t.Helper()
	cfg.Observer = promsessions.NewObserver()
	cfg.Logger = quiet
	cfg.Cookie.Insecure = true
	m, err := sessions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promsessions.New(m))
	return m, reg
}

// serve runs one request through m with cookie (nil: none) and returns
// the session cookie the response set, else cookie.
func serve(t *testing.T, m *sessions.Manager, cookie *http.Cookie, h func(s *sessions.Session)) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(sessions.FromContext(r.Context()))
	})).ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "session" {
			return c
		}
	}
	return cookie
}

// compare checks the named metrics of reg against want (exposition text
// without HELP and TYPE lines, which are added), with the labels mode and
// storage of m.
func compare(t *testing.T, reg *prometheus.Registry, m *sessions.Manager, want string, names ...string) {
	t.Helper()
	info := m.Info()
	lbl := fmt.Sprintf(`mode="%s",storage="%s"`, info.Mode, info.Storage)
	want = strings.ReplaceAll(want, "LBL", lbl)
	// testutil wants the HELP and TYPE lines: take them from a gather.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, name := range names {
		for _, mf := range mfs {
			if mf.GetName() == name {
				fmt.Fprintf(&text, "# HELP %s %s\n# TYPE %s %s\n", name, mf.GetHelp(), name, strings.ToLower(mf.GetType().String()))
			}
		}
		for _, line := range strings.Split(want, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), name+"{") || strings.TrimSpace(line) == name || strings.HasPrefix(strings.TrimSpace(line), name+" ") {
				text.WriteString(sortLabels(strings.TrimSpace(line)) + "\n")
			}
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(text.String()), names...); err != nil {
		t.Error(err)
	}
}

// sortLabels puts the labels of an exposition line in order, as the
// comparison wants them.
func sortLabels(line string) string {
	open, end := strings.Index(line, "{"), strings.Index(line, "}")
	if open < 0 || end < open {
		return line
	}
	parts := strings.Split(line[open+1:end], ",")
	slices.Sort(parts)
	return line[:open+1] + strings.Join(parts, ",") + line[end:]
}

// histCount returns the sample count of histogram name's series with
// label op (op "" for a histogram without it).
func histCount(t *testing.T, reg *prometheus.Registry, name, op string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			match := op == ""
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "op" && lp.GetValue() == op {
					match = true
				}
			}
			if match {
				return mt.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// TestMetricsSticky drives known requests through two sticky Managers
// sharing one memory store and checks every counter they move, and the
// histograms' sample counts.
func TestMetricsSticky(t *testing.T) {
	store := memory.New(memory.Options{})
	t.Cleanup(func() { store.Close() })                          // after the Managers' Close
	cfg := sessions.Config{Store: store, WriteBehind: time.Hour} // flushed by Close only
	a, regA := manager(t, cfg)
	b, regB := manager(t, cfg)

	cookie := serve(t, a, nil, func(s *sessions.Session) { s.Set("n", 1) })              // new, created
	serve(t, a, cookie, func(s *sessions.Session) { sessions.Get[int](s, "n") })         // memory
	serve(t, a, cookie, func(s *sessions.Session) { sessions.Get[int](s, "n") })         // memory
	serve(t, a, &http.Cookie{Name: "session", Value: "bad"}, func(*sessions.Session) {}) // malformed: new
	compare(t, regA, a, `
sessions_resident{LBL} 1
sessions_write_behind_pending{LBL} 1
sessions_write_behind_window_seconds{LBL} 3600
sessions_requests_total{LBL,outcome="memory"} 2
sessions_requests_total{LBL,outcome="storage"} 0
sessions_requests_total{LBL,outcome="new"} 2
sessions_requests_total{LBL,outcome="error"} 0
sessions_created_total{LBL} 1
`, "sessions_resident", "sessions_write_behind_pending", "sessions_write_behind_window_seconds", "sessions_requests_total", "sessions_created_total")

	if err := a.Close(context.Background()); err != nil { // writes the session
		t.Fatal(err)
	}
	compare(t, regA, a, `
sessions_write_behind_pending{LBL} 0
sessions_write_behind_lag_seconds{LBL} 0
sessions_storage_writes_total{LBL} 1
sessions_storage_errors_total{LBL} 0
sessions_write_behind_retries_total{LBL} 0
sessions_conflicts_total{LBL} 0
`, "sessions_write_behind_pending", "sessions_write_behind_lag_seconds", "sessions_storage_writes_total", "sessions_storage_errors_total", "sessions_write_behind_retries_total", "sessions_conflicts_total")
	if n := histCount(t, regA, "sessions_storage_call_duration_seconds", "compare_and_swap_many"); n != 1 {
		t.Errorf("compare_and_swap_many calls observed: %d, want 1", n)
	}
	if n := histCount(t, regA, "sessions_storage_call_duration_seconds", "get"); n != 0 {
		t.Errorf("get calls observed on A: %d, want 0", n)
	}
	if n := histCount(t, regA, "sessions_write_behind_flush_size", ""); n != 1 {
		t.Errorf("flushes observed: %d, want 1", n)
	}

	// B has never seen the session: it loads it, then the request ends it.
	serve(t, b, cookie, func(s *sessions.Session) {
		if n, _, _ := sessions.Get[int](s, "n"); n != 1 {
			t.Errorf("n = %d on B", n)
		}
		s.Invalidate()
	})
	if err := b.Close(context.Background()); err != nil { // deletes it
		t.Fatal(err)
	}
	compare(t, regB, b, `
sessions_resident{LBL} 0
sessions_requests_total{LBL,outcome="memory"} 0
sessions_requests_total{LBL,outcome="storage"} 1
sessions_requests_total{LBL,outcome="new"} 0
sessions_requests_total{LBL,outcome="error"} 0
sessions_created_total{LBL} 0
sessions_ended_total{LBL,reason="invalidated"} 1
sessions_ended_total{LBL,reason="timeout"} 0
sessions_storage_reads_total{LBL} 1
sessions_storage_deletes_total{LBL} 1
sessions_decode_failures_total{LBL,cause="codec"} 0
sessions_decode_failures_total{LBL,cause="format"} 0
sessions_decode_failures_total{LBL,cause="sealed"} 0
sessions_storage_call_errors_total{LBL,op="compare_and_delete"} 0
sessions_storage_call_errors_total{LBL,op="compare_and_swap"} 0
sessions_storage_call_errors_total{LBL,op="compare_and_swap_many"} 0
sessions_storage_call_errors_total{LBL,op="delete"} 0
sessions_storage_call_errors_total{LBL,op="get"} 0
sessions_storage_call_errors_total{LBL,op="list_expiring"} 0
sessions_storage_call_errors_total{LBL,op="set"} 0
sessions_storage_call_errors_total{LBL,op="set_many"} 0
`, "sessions_resident", "sessions_requests_total", "sessions_created_total", "sessions_ended_total", "sessions_storage_reads_total",
		"sessions_storage_deletes_total", "sessions_decode_failures_total", "sessions_storage_call_errors_total")
	for op, want := range map[string]uint64{"get": 1, "delete": 1, "compare_and_swap_many": 0, "set": 0} {
		if n := histCount(t, regB, "sessions_storage_call_duration_seconds", op); n != want {
			t.Errorf("%s calls observed on B: %d, want %d", op, n, want)
		}
	}

	// An entry C cannot read (another codec): counted once, by cause.
	w, err := sessions.New(sessions.Config{Store: store, Logger: quiet, Cookie: sessions.CookieConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	cookie = serve(t, w, nil, func(s *sessions.Session) { s.Set("k", "v") })
	if err := w.Close(context.Background()); err != nil { // writes it
		t.Fatal(err)
	}
	c, reg := manager(t, sessions.Config{Store: store, Codec: serializer.JSON, WriteBehind: time.Hour})
	serve(t, c, cookie, func(*sessions.Session) {})
	serve(t, c, cookie, func(*sessions.Session) {})
	compare(t, reg, c, `
sessions_decode_failures_total{LBL,cause="codec"} 1
sessions_decode_failures_total{LBL,cause="format"} 0
sessions_decode_failures_total{LBL,cause="sealed"} 0
sessions_requests_total{LBL,outcome="memory"} 0
sessions_requests_total{LBL,outcome="storage"} 0
sessions_requests_total{LBL,outcome="new"} 2
sessions_requests_total{LBL,outcome="error"} 0
`, "sessions_decode_failures_total", "sessions_requests_total")
}

// conflictOnce runs, in cluster mode, a request on b that loads the
// session of cookie and changes it, while a request on a (run from inside
// b's handler) changes the same session first: b's commit conflicts once,
// merges and writes. ctx is b's request context.
func conflictOnce(t *testing.T, ctx context.Context, a, b *sessions.Manager, cookie *http.Cookie) {
	t.Helper()
	r := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	r.AddCookie(cookie)
	w := httptest.NewRecorder()
	b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(t, a, cookie, func(s *sessions.Session) { s.Set("from", "a") })
		sessions.FromContext(r.Context()).Set("from-b", "b")
	})).ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	serve(t, a, cookie, func(s *sessions.Session) {
		x, _, _ := sessions.Get[string](s, "from")
		y, _, _ := sessions.Get[string](s, "from-b")
		if x != "a" || y != "b" {
			t.Errorf("after the merge: from=%q from-b=%q", x, y)
		}
	})
}

// TestMetricsRedisCluster: two cluster-mode Managers over a real Redis,
// a commit that conflicts once, exact counters and histogram counts.
func TestMetricsRedisCluster(t *testing.T) {
	url := testservers.Redis(t).URL()
	cfg := sessions.Config{Storage: url, Cluster: true, RequireStorageAtStart: true}
	a, regA := manager(t, cfg)
	b, regB := manager(t, cfg)

	cookie := serve(t, a, nil, func(s *sessions.Session) { s.Set("n", 1) }) // A: new, 1 CAS
	conflictOnce(t, t.Context(), a, b, cookie)                              // A: get+CAS, B: get, CAS, get, CAS; A: get
	compare(t, regB, b, `
sessions_requests_total{LBL,outcome="memory"} 0
sessions_requests_total{LBL,outcome="storage"} 1
sessions_requests_total{LBL,outcome="new"} 0
sessions_requests_total{LBL,outcome="error"} 0
sessions_conflicts_total{LBL} 1
sessions_conflict_give_ups_total{LBL} 0
sessions_storage_writes_total{LBL} 1
sessions_storage_reads_total{LBL} 2
sessions_storage_errors_total{LBL} 0
sessions_resident{LBL} 1
`, "sessions_requests_total", "sessions_conflicts_total", "sessions_conflict_give_ups_total", "sessions_storage_writes_total",
		"sessions_storage_reads_total", "sessions_storage_errors_total", "sessions_resident")
	compare(t, regA, a, `
sessions_requests_total{LBL,outcome="memory"} 0
sessions_requests_total{LBL,outcome="storage"} 2
sessions_requests_total{LBL,outcome="new"} 1
sessions_requests_total{LBL,outcome="error"} 0
sessions_created_total{LBL} 1
sessions_conflicts_total{LBL} 0
sessions_storage_writes_total{LBL} 2
`, "sessions_requests_total", "sessions_created_total", "sessions_conflicts_total", "sessions_storage_writes_total")
	for _, c := range []struct {
		reg  *prometheus.Registry
		op   string
		want uint64
		who  string
	}{
		{regB, "get", 2, "B"}, {regB, "compare_and_swap", 2, "B"},
		{regA, "get", 2, "A"}, {regA, "compare_and_swap", 2, "A"},
		{regA, "set", 0, "A"}, {regB, "delete", 0, "B"},
	} {
		if n := histCount(t, c.reg, "sessions_storage_call_duration_seconds", c.op); n != c.want {
			t.Errorf("%s: %s calls observed: %d, want %d", c.who, c.op, n, c.want)
		}
	}
}
