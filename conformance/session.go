package conformance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
)

// app is one Manager over the store under test with a tiny handler:
// /set?k=&v=, /get?k=, /renew, /invalidate.
type app struct {
	m      *sessions.Manager
	h      http.Handler
	closed bool
}

func startManager(c *C, st store.StoreInterface, cfg sessions.Config) *app {
	c.Helper()
	c.parent.Helper()
	cfg.Store = st
	if cfg.KeyPrefix == "" {
		c.Fatalf("startManager needs a KeyPrefix")
	}
	if cfg.WriteBehind == 0 {
		cfg.WriteBehind = 10 * time.Millisecond
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := sessions.New(cfg)
	if err != nil {
		c.Fatalf("sessions.New over the store: %v", err)
	}
	a := &app{m: m}
	a.h = m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		var err error
		switch r.URL.Path {
		case "/set":
			err = s.Set(r.FormValue("k"), r.FormValue("v"))
		case "/get":
			v, ok, gerr := sessions.Get[string](s, r.FormValue("k"))
			if !ok && gerr == nil {
				http.Error(w, "absent", http.StatusNotFound)
				return
			}
			err = gerr
			fmt.Fprint(w, v)
		case "/renew":
			err = s.Renew()
		case "/invalidate":
			err = s.Invalidate()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	c.Cleanup(func() { a.closeNow(c) })
	return a
}

// closeNow closes the Manager, draining its write-behind queue.
func (a *app) closeNow(c *C) {
	c.Helper()
	c.parent.Helper()
	if a.closed {
		return
	}
	a.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.m.Close(ctx); err != nil {
		c.Errorf("Manager.Close (drains writes to the store): %v", err)
	}
}

// user is a browser holding a session cookie.
type user struct{ cookie string }

func (u *user) do(a *app, target string) (int, string) {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if u.cookie != "" {
		r.AddCookie(&http.Cookie{Name: "session", Value: u.cookie})
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "session" {
			u.cookie = ck.Value
			if ck.MaxAge < 0 {
				u.cookie = ""
			}
		}
	}
	return w.Code, w.Body.String()
}

func (u *user) must(c *C, a *app, target string, want int) string {
	c.Helper()
	c.parent.Helper()
	code, body := u.do(a, target)
	if code != want {
		c.Fatalf("request %s: status %d (%s), want %d", target, code, body, want)
	}
	return body
}

// stored reports whether the session whose cookie value is cookie has an
// entry in st.
func stored(st store.StoreInterface, prefix, cookie string) bool {
	id, ok := sessions.CookieID(cookie)
	if !ok {
		return false
	}
	_, err := get(bg(), st, adapter.Key(prefix, id))
	return err == nil
}

func checkSessionSticky(c *C, h *Harness) {
	st := newStore(c, h)
	p := ns()
	first := startManager(c, st, sessions.Config{KeyPrefix: p})
	u := &user{}
	u.must(c, first, "/set?k=cart&v=full", 200)
	if !poll.Until(5*time.Second, func() bool { return stored(st, p, u.cookie) }) {
		c.Fatalf("write-behind did not reach the store within 5 s")
	}
	first.closeNow(c)
	second := startManager(c, st, sessions.Config{KeyPrefix: p, IdleEvict: 50 * time.Millisecond})
	if got := u.must(c, second, "/get?k=cart", 200); got != "full" {
		c.Fatalf("a restarted Manager read %q, want full", got)
	}
	if !poll.Until(5*time.Second, func() bool { return second.m.Stats().Evicted > 0 }) {
		c.Fatalf("session not idle-evicted")
	}
	if got := u.must(c, second, "/get?k=cart", 200); got != "full" {
		c.Fatalf("after idle eviction the session reloaded as %q, want full", got)
	}
}

func checkSessionCluster(c *C, h *Harness) {
	st := newStore(c, h)
	p := ns()
	a := startManager(c, st, sessions.Config{KeyPrefix: p, Cluster: true})
	b := startManager(c, st, sessions.Config{KeyPrefix: p, Cluster: true})
	u := &user{}
	u.must(c, a, "/set?k=step&v=1", 200)
	if got := u.must(c, b, "/get?k=step", 200); got != "1" {
		c.Fatalf("server B read %q right after server A's write, want 1", got)
	}
	u.must(c, b, "/set?k=step&v=2", 200)
	if got := u.must(c, a, "/get?k=step", 200); got != "2" {
		c.Fatalf("server A read %q right after server B's write, want 2", got)
	}
}

func checkRenewInvalidate(c *C, h *Harness) {
	st := newStore(c, h)
	for _, cluster := range []bool{false, true} {
		p := ns()
		a := startManager(c, st, sessions.Config{KeyPrefix: p, Cluster: cluster})
		u := &user{}
		u.must(c, a, "/set?k=k&v=v", 200)
		old := u.cookie
		if !poll.Until(5*time.Second, func() bool { return stored(st, p, old) }) {
			c.Fatalf("cluster=%v: session not stored", cluster)
		}
		u.must(c, a, "/renew", 200)
		renewed := u.cookie
		if !poll.Until(5*time.Second, func() bool { return !stored(st, p, old) && stored(st, p, renewed) }) {
			c.Errorf("cluster=%v: after Renew the entry under the old ID remains (or the new one is missing)", cluster)
		}
		u.must(c, a, "/invalidate", 200)
		if !poll.Until(5*time.Second, func() bool { return !stored(st, p, renewed) }) {
			c.Errorf("cluster=%v: after Invalidate the entry remains", cluster)
		}
		a.closeNow(c)
		if stored(st, p, old) || stored(st, p, renewed) {
			c.Errorf("cluster=%v: entries left behind after Renew and Invalidate", cluster)
		}
	}
}
