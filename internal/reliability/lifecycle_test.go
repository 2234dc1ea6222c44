package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// The session lifecycle races of the root package's lifecycle tests, over a
// real Redis shared by two Managers (two servers behind a balancer).

// lifecycleApp: /set?k=&v=, /get?k=, /renew, /invalidate, and /hold, which
// waits on the test's gate before setting k=v.
func lifecycleApp(gate *holdGate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		var err error
		switch r.URL.Path {
		case "/set":
			err = s.Set(r.FormValue("k"), r.FormValue("v"))
		case "/get":
			v, ok, _ := sessions.Get[string](s, r.FormValue("k"))
			if !ok {
				http.Error(w, "absent", http.StatusNotFound)
				return
			}
			fmt.Fprint(w, v)
			return
		case "/renew":
			err = s.Renew()
		case "/invalidate":
			err = s.Invalidate()
		case "/hold":
			gate.arrived <- struct{}{}
			<-gate.release
			err = s.Set(r.FormValue("k"), r.FormValue("v"))
		}
		switch {
		case errors.Is(err, sessions.ErrSessionEnded):
			http.Error(w, err.Error(), http.StatusGone)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

type holdGate struct{ arrived, release chan struct{} }

func newGate() *holdGate {
	return &holdGate{arrived: make(chan struct{}), release: make(chan struct{})}
}

type response struct {
	code      int
	setCookie string
}

// send makes one request with cookie and returns its status and
// Set-Cookie header.
func send(h http.Handler, cookie, path string) response {
	r := httptest.NewRequest("GET", path, nil)
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: "session", Value: cookie})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return response{w.Code, w.Result().Header.Get("Set-Cookie")}
}

// Over Redis, in cluster mode: a Renew on one server leaves a request in
// flight on the other without a cookie, and the old ID gives no access on
// either; a write arriving after a logout on the other server is refused
// (409), not acknowledged, and nothing is stored.
func TestClusterLifecycleRacesOverRedis(t *testing.T) {
	srv := testservers.Redis(t)
	gateA, gateB := newGate(), newGate()
	a := newManager(t, sessions.Config{Storage: srv.URL(), Cluster: true})
	defer closeWithin(t, a, 5*time.Second)
	b := newManager(t, sessions.Config{Storage: srv.URL(), Cluster: true})
	defer closeWithin(t, b, 5*time.Second)
	ha, hb := a.Handler(lifecycleApp(gateA)), b.Handler(lifecycleApp(gateB))

	user := &browser{}
	if code, _ := user.get(ha, "/set?k=user&v=alice"); code != 200 {
		t.Fatal(code)
	}
	old := user.cookie
	// A request under the old ID is in flight on a while b renews.
	inFlight := make(chan response, 1)
	go func() { inFlight <- send(ha, old, "/hold?k=theme&v=dark") }()
	<-gateA.arrived
	if code, _ := user.get(hb, "/renew"); code != 200 || user.cookie == old {
		t.Fatalf("renew on b: %d, cookie changed %v", code, user.cookie != old)
	}
	close(gateA.release)
	if r := <-inFlight; r.setCookie != "" || r.code == 200 {
		t.Fatalf("the request in flight during the renew answered %d with Set-Cookie %q; want a refusal and no cookie", r.code, r.setCookie)
	}
	for name, h := range map[string]http.Handler{"a": ha, "b": hb} {
		if r := send(h, old, "/get?k=user"); r.code != http.StatusNotFound || r.setCookie != "" {
			t.Fatalf("old ID on %s: %d, Set-Cookie %q", name, r.code, r.setCookie)
		}
	}
	if code, body := user.get(ha, "/get?k=user"); code != 200 || body != "alice" {
		t.Fatalf("new ID on a: %d %q", code, body)
	}

	// A late write on b after a logout on a.
	id := user.cookie
	late := make(chan response, 1)
	go func() { late <- send(hb, id, "/hold?k=user_id&v=alice") }()
	<-gateB.arrived
	if code, _ := user.get(ha, "/invalidate"); code != 200 {
		t.Fatal("logout failed")
	}
	close(gateB.release)
	if r := <-late; r.code != http.StatusConflict || r.setCookie != "" {
		t.Fatalf("a write after a logout elsewhere answered %d, Set-Cookie %q; want 409 and no cookie", r.code, r.setCookie)
	}
	for name, h := range map[string]http.Handler{"a": ha, "b": hb} {
		if r := send(h, id, "/get?k=user_id"); r.code != http.StatusNotFound {
			t.Fatalf("after the logout, %s serves the late write", name)
		}
	}
}

// Over Redis, in sticky mode: while the storage delete of a logged-out
// session hangs in flight, and after it lands, the old ID loads nothing.
func TestStickyLogoutFinalWhileRedisDeleteHangs(t *testing.T) {
	srv := testservers.Redis(t)
	ctx := context.Background()
	st, err := adapter.Resolve(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fault := faultstore.New(st.Store())
	m := newManager(t, sessions.Config{Store: fault, WriteBehind: 5 * time.Millisecond, StorageTimeout: 10 * time.Second})
	defer closeWithin(t, m, 15*time.Second)
	h := m.Handler(lifecycleApp(newGate()))
	user := &browser{}
	user.get(h, "/set?k=user&v=alice")
	id := user.cookie[:43] // the ID, without the version sticky mode appends
	key := adapter.Key("sess:", id)
	poll.Eventually(t, 5*time.Second, "stored", func() bool { _, err := st.Get(ctx, key); return err == nil })

	fault.SetOpMode(faultstore.OpDelete, faultstore.Hang)
	before := fault.Deletes.Load()
	if code, _ := user.get(h, "/invalidate"); code != 200 {
		t.Fatal("logout failed")
	}
	poll.Eventually(t, 5*time.Second, "delete in flight", func() bool { return fault.Deletes.Load() > before })
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := send(h, id, "/get?k=user"); r.code != http.StatusNotFound || r.setCookie != "" {
				t.Errorf("old ID while its delete is in flight: %d, Set-Cookie %q", r.code, r.setCookie)
			}
		}()
	}
	wg.Wait()
	fault.SetMode(faultstore.Pass)
	poll.Eventually(t, 5*time.Second, "delete landed", func() bool { return m.Stats().PendingWrites == 0 })
	if _, err := st.Get(ctx, key); !errors.Is(err, adapter.ErrNotFound) {
		t.Fatalf("the logged-out session is still stored: %v", err)
	}
	if r := send(h, id, "/get?k=user"); r.code != http.StatusNotFound {
		t.Fatal("the logged-out session came back")
	}
}

// Over Redis: 10 sessions × 100 increments with Update, four requests in
// flight per session spread over three cluster servers: every acknowledged
// increment is in the final counter, none twice.
func TestUpdateLosesNothingOverRedis(t *testing.T) {
	srv := testservers.Redis(t)
	var hs []http.Handler
	for i := 0; i < 3; i++ {
		m := newManager(t, sessions.Config{Storage: srv.URL(), Cluster: true})
		defer closeWithin(t, m, 5*time.Second)
		hs = append(hs, m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := sessions.FromContext(r.Context())
			if r.URL.Path == "/start" {
				s.Set("theme", "dark")
				return
			}
			n, err := sessions.Update(s, "n", func(old int, _ bool) (int, error) { return old + 1, nil })
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, n)
		})))
	}
	type counter struct {
		mu     sync.Mutex
		acked  int
		values map[string]bool
	}
	var wg sync.WaitGroup
	var cookies []string
	counters := make([]*counter, 10)
	for i := range counters {
		b := &browser{}
		b.get(hs[0], "/start")
		cookie := b.cookie
		cookies = append(cookies, cookie)
		counters[i] = &counter{values: map[string]bool{}}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 25; j++ {
					r := httptest.NewRequest("GET", "/incr", nil)
					r.AddCookie(&http.Cookie{Name: "session", Value: cookie})
					w := httptest.NewRecorder()
					hs[(g+j)%3].ServeHTTP(w, r)
					if w.Code != 200 {
						continue
					}
					c := counters[i]
					c.mu.Lock()
					if c.values[w.Body.String()] {
						t.Errorf("session %d: value %s returned twice", i, w.Body.String())
					}
					c.values[w.Body.String()] = true
					c.acked++
					c.mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for i, c := range counters {
		r := httptest.NewRequest("GET", "/incr", nil)
		r.AddCookie(&http.Cookie{Name: "session", Value: cookies[i]})
		w := httptest.NewRecorder()
		hs[1].ServeHTTP(w, r)
		if w.Code != 200 || w.Body.String() != fmt.Sprint(c.acked+1) {
			t.Errorf("session %d: %d acknowledged increments, then the next one answered %d %q", i, c.acked, w.Code, w.Body.String())
		}
		if c.acked < 90 {
			t.Errorf("session %d: only %d of 100 increments acknowledged", i, c.acked)
		}
	}
}
