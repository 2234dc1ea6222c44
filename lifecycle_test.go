package sessions_test

// Tests of what concurrent requests see around the edges of a session's
// life: Renew, Invalidate, timeout, idle eviction and failing storage. Each
// holds one request inside its handler while others change the session, then
// checks what the held request may still do and what its response says.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
)

// result is what a held request answered.
type result struct {
	code    int
	body    string
	cookies []*http.Cookie // the session cookies it set
}

// cookieValue is the value of the only session cookie set, "" for none,
// "<deleted>" for a deletion.
func (r result) cookieValue() string {
	if len(r.cookies) == 0 {
		return ""
	}
	if r.cookies[0].MaxAge < 0 {
		return "<deleted>"
	}
	return r.cookies[0].Value
}

// heldRequest is a request stopped inside its handler, its session loaded.
type heldRequest struct {
	release chan struct{}
	done    chan result
}

// hold sends a request carrying cookie to m's middleware; its handler waits
// for finish before running then.
func hold(t *testing.T, m *sessions.Manager, cookie string, then func(w http.ResponseWriter, s *sessions.Session)) *heldRequest {
	t.Helper()
	h := &heldRequest{release: make(chan struct{}), done: make(chan result, 1)}
	loaded := make(chan struct{})
	handler := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-h.release
		then(w, sessions.FromContext(r.Context()))
	}))
	go func() {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "session", Value: cookie})
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		res := result{code: w.Code, body: w.Body.String()}
		for _, c := range w.Result().Cookies() {
			if c.Name == "session" {
				res.cookies = append(res.cookies, c)
			}
		}
		h.done <- res
	}()
	select {
	case <-loaded:
	case <-time.After(5 * time.Second):
		t.Fatal("held request did not reach its handler")
	}
	return h
}

// finish lets the held request go on and returns its response.
func (h *heldRequest) finish(t *testing.T) result {
	t.Helper()
	close(h.release)
	select {
	case r := <-h.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("held request did not finish")
		return result{}
	}
}

// readUser answers the value of "user", or "absent".
func readUser(w http.ResponseWriter, s *sessions.Session) {
	v, ok, _ := sessions.Get[string](s, "user")
	if !ok {
		v = "absent"
	}
	fmt.Fprint(w, v)
}

// setKey returns a handler tail that sets k=v and reports the error.
func setKey(k, v string) func(w http.ResponseWriter, s *sessions.Session) {
	return func(w http.ResponseWriter, s *sessions.Session) {
		if err := s.Set(k, v); err != nil {
			if errors.Is(err, sessions.ErrSessionEnded) {
				http.Error(w, "ended: "+err.Error(), http.StatusGone)
				return
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}
}

// loginApp: /login sets user=alice and renews; /relogin logs out, then logs
// in as alice in the same request.
func loginApp() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", testApp())
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if err := s.Set("user", "alice"); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := s.Renew(); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/relogin", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if err := s.Invalidate(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := s.Set("user", "alice"); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	return mux
}

func modes(t *testing.T, fn func(t *testing.T, cluster bool)) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) { fn(t, cluster) })
	}
}

// Failure 1: a request still running under a planted ID must not be handed
// the ID the victim's login renewed it to, nor read the victim's data.
func TestConcurrentRequestNeverGetsRenewedID(t *testing.T) {
	for _, login := range []string{"/login", "/relogin"} {
		t.Run(login, func(t *testing.T) {
			modes(t, func(t *testing.T, cluster bool) {
				b := newBackend(t)
				n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: 5 * time.Millisecond})
				h := n.m.Handler(loginApp())
				victim := newClient(t)
				victim.must(h, "/set?k=theme&v=dark", 200)
				planted := victim.cookie // the attacker knows it

				attacker := hold(t, n.m, planted, readUser)
				victim.must(h, login, 200)
				if victim.cookie == planted || victim.cookie == "" {
					t.Fatalf("login did not give the victim a new ID")
				}
				res := attacker.finish(t)
				if got := res.cookieValue(); got != "" {
					t.Fatalf("the attacker's concurrent request got Set-Cookie %q (victim's new ID %s)", got, victim.cookie)
				}
				if res.body != "absent" {
					t.Fatalf("the attacker's concurrent request read user=%q after the login", res.body)
				}
				attackerClient := &client{t: t, name: "session", cookie: planted}
				attackerClient.must(h, "/get?k=user", http.StatusNotFound)
				if attackerClient.cookie != planted {
					t.Fatalf("a request with the old ID got a Set-Cookie: %q", attackerClient.cookie)
				}
				if got := victim.must(h, "/get?k=user", 200); got != "alice" {
					t.Fatalf("victim reads user=%q", got)
				}
			})
		})
	}
}

// Failure 2: a request carrying an ID renewed on another server must not
// delete the client's (new) cookie.
func TestStaleIDGetsNoCookieAfterRenewElsewhere(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{Cluster: true}
	a, bnode := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(a.h, "/set?k=user&v=alice", 200)
	old := c.cookie
	c.must(a.h, "/get?k=user", 200) // resident on a
	inFlight := hold(t, a.m, old, readUser)
	c.must(bnode.h, "/renew", 200)
	if c.cookie == old {
		t.Fatal("renew kept the ID")
	}
	if res := inFlight.finish(t); res.cookieValue() != "" {
		t.Fatalf("a request in flight during a Renew elsewhere answered Set-Cookie %q", res.cookieValue())
	}
	for _, n := range []*node{a, bnode} {
		xhr := &client{t: t, name: "session", cookie: old}
		xhr.must(n.h, "/get?k=user", http.StatusNotFound)
		if xhr.cookie != old {
			t.Fatalf("a request with the renewed-away ID got Set-Cookie %q; it must get none", xhr.cookie)
		}
	}
	if got := c.must(a.h, "/get?k=user", 200); got != "alice" {
		t.Fatalf("after renew: %q", got)
	}
}

// Failure 3, same server: a write that comes after a logout is refused, and
// starts no new session.
func TestWriteAfterLogoutOnSameServerIsRefused(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: time.Hour})
		c := newClient(t)
		c.must(n.h, "/set?k=user&v=alice", 200)
		id := c.cookie
		sessions.Flush(n.m)
		late := hold(t, n.m, id, setKey("user_id", "alice"))
		c.must(n.h, "/invalidate", 200)
		res := late.finish(t)
		if res.code != http.StatusGone {
			t.Fatalf("a Set after the logout answered %d %q; want ErrSessionEnded", res.code, res.body)
		}
		if res.cookieValue() != "" {
			t.Fatalf("the late request set a cookie: %q", res.cookieValue())
		}
		if failed := sessions.Flush(n.m); failed != 0 { // what the write-behind window would write
			t.Fatalf("%d writes failed", failed)
		}
		if r := n.m.Stats().Resident; r != 0 {
			t.Fatalf("%d sessions resident after the logout; the late write must start none", r)
		}
		if e, p := b.entries(), n.m.Stats().PendingWrites; e != 0 || p != 0 {
			t.Fatalf("%d entries stored and %d writes pending after the logout, want none", e, p)
		}
	})
}

// Failure 3, another server: the late write is not acknowledged as if it
// had been stored.
func TestWriteAfterLogoutOnOtherServerIsNotAcknowledged(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{Cluster: true}
	a, other := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(a.h, "/set?k=user&v=alice", 200)
	id := c.cookie
	late := hold(t, other.m, id, setKey("cart", "full"))
	c.must(a.h, "/invalidate", 200)
	res := late.finish(t)
	if res.code == http.StatusOK {
		t.Fatalf("a write to a session logged out elsewhere answered 200 %q; it was not stored", res.body)
	}
	if res.cookieValue() != "" {
		t.Fatalf("the late request set a cookie: %q", res.cookieValue())
	}
	if b.entries() != 0 {
		t.Fatal("the late write resurrected the session")
	}
}

// Failure 4: while the flusher's delete of a logged-out session is still
// on its way to storage, a request with the old ID finds nothing.
func TestStickyLogoutIsFinalWhileDeleteInFlight(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: 5 * time.Millisecond, StorageTimeout: 10 * time.Second})
	c := newClient(t)
	c.must(n.h, "/set?k=user&v=alice", 200)
	id := c.cookie
	poll.Eventually(t, time.Second, "stored", func() bool { return b.has(id) })
	b.fault.SetOpMode(faultstore.OpDelete, faultstore.Hang)
	deletes := b.fault.Deletes.Load()
	c.must(n.h, "/invalidate", 200)
	poll.Eventually(t, 2*time.Second, "the flusher's delete in flight", func() bool { return b.fault.Deletes.Load() > deletes })
	for i := 0; i < 3; i++ {
		old := &client{t: t, name: "session", cookie: id}
		if code, body := old.do(n.h, "/get?k=user"); code != http.StatusNotFound {
			t.Fatalf("while the delete was in flight, the old ID read %d %q", code, body)
		}
	}
	if r := n.m.Stats().Resident; r != 0 {
		t.Fatalf("the logged-out session came back into memory (%d resident)", r)
	}
	b.fault.SetMode(faultstore.Pass)
	poll.Eventually(t, 3*time.Second, "delete done", func() bool { return !b.has(id) && n.m.Stats().PendingWrites == 0 })
	(&client{t: t, name: "session", cookie: id}).must(n.h, "/get?k=user", http.StatusNotFound)
	if b.has(id) {
		t.Fatal("the logged-out session was written back")
	}
}

// Failure 5: a request longer than IdleEvict keeps its session resident, so
// parallel requests share its copy and no change is lost.
func TestSessionInUseIsNotEvicted(t *testing.T) {
	b := newBackend(t)
	clk := newClock()
	n := newClockNode(t, b, sessions.Config{IdleEvict: time.Minute, WriteBehind: 2 * time.Millisecond}, clk)
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	poll.Eventually(t, time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 && b.has(c.cookie) })
	upload := hold(t, n.m, c.cookie, setKey("c", "3"))
	clk.advance(2 * time.Minute)
	clk.tick(3, n) // several sweeps past IdleEvict
	c.must(n.h, "/set?k=b&v=2", 200)
	if res := upload.finish(t); res.code != 200 {
		t.Fatalf("long request: %d %q", res.code, res.body)
	}
	if got := c.must(n.h, "/keys", 200); got != "a,b,c" {
		t.Fatalf("keys %q after a long request and a parallel one, want a,b,c", got)
	}
	poll.Eventually(t, time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 })
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := b.storedValue(t, c.cookie, k); !ok {
			t.Fatalf("stored session lacks %s", k)
		}
	}
}

// Failure 6: the guest session started after a logout is stored, even when
// the logged-out session still had a write queued.
func TestGuestSessionAfterLogoutWithPendingWriteIsStored(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: time.Hour}) // nothing flushes before Close
	h := n.m.Handler(loginApp())
	c := newClient(t)
	c.must(h, "/set?k=user&v=bob", 200)
	old := c.cookie
	c.must(h, "/relogin", 200) // logout, then a new session in the same request
	if c.cookie == old || c.cookie == "" {
		t.Fatal("no new session after the logout")
	}
	n.close(t)
	if !b.has(c.cookie) {
		t.Fatal("the session started after the logout was never stored")
	}
	if b.has(old) {
		t.Fatal("the logged-out session is stored")
	}
}

// Failure 7, Invalidate: a failed storage delete leaves the session as it
// was: an error, no end event, no cookie change, still readable.
func TestClusterFailedInvalidateChangesNothing(t *testing.T) {
	b := newBackend(t)
	var ends atomic.Int32
	n := newNode(t, b, sessions.Config{Cluster: true, OnSessionEnd: func(*sessions.Session, sessions.EndReason) { ends.Add(1) }})
	c := newClient(t)
	c.must(n.h, "/set?k=user&v=alice", 200)
	id := c.cookie
	b.fault.SetOpMode(faultstore.OpDelete, faultstore.Fail)
	code, _ := c.do(n.h, "/invalidate")
	if code != http.StatusInternalServerError {
		t.Fatalf("Invalidate with a failing storage answered %d, want its error", code)
	}
	if ends.Load() != 0 {
		t.Fatal("OnSessionEnd fired for an Invalidate that failed")
	}
	if c.cookie != id {
		t.Fatalf("a failed Invalidate changed the cookie to %q", c.cookie)
	}
	b.fault.SetMode(faultstore.Pass)
	if got := c.must(n.h, "/get?k=user", 200); got != "alice" {
		t.Fatalf("after a failed Invalidate: %q", got)
	}
	c.must(n.h, "/invalidate", 200)
	if ends.Load() != 1 || b.has(id) {
		t.Fatalf("a retried Invalidate: %d ends, stored %v", ends.Load(), b.has(id))
	}
}

// Failure 7, Renew: a failed storage call leaves the ID as it was, and the
// request's later writes land under it.
func TestClusterFailedRenewChangesNothing(t *testing.T) {
	for _, op := range []faultstore.Op{faultstore.OpCAS, faultstore.OpDelete} {
		t.Run(fmt.Sprintf("failing=%d", op), func(t *testing.T) {
			b := newBackend(t)
			n := newNode(t, b, sessions.Config{Cluster: true})
			var renewErr error
			h := n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := sessions.FromContext(r.Context())
				b.fault.FailNext(op, 1)
				renewErr = s.Renew()
				if err := s.Set("user", "alice"); err != nil {
					http.Error(w, err.Error(), 500)
				}
			}))
			c := newClient(t)
			c.must(n.h, "/set?k=theme&v=dark", 200)
			id := c.cookie
			c.must(h, "/", 200)
			if renewErr == nil {
				t.Fatal("Renew with a failing storage call returned nil")
			}
			if c.cookie != id {
				t.Fatalf("a failed Renew changed the cookie")
			}
			if got := c.must(n.h, "/get?k=user", 200); got != "alice" {
				t.Fatalf("the write after a failed Renew: %q", got)
			}
			if e := b.entries(); e != 1 {
				t.Fatalf("%d stored entries after a failed Renew, want 1", e)
			}
		})
	}
}

// Failure 8: Close keeps its deadline while storage hangs, however many
// deletes are queued or in flight.
func TestCloseKeepsDeadlineWhileStorageHangs(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: 2 * time.Millisecond, StorageTimeout: 200 * time.Millisecond})
	var clients []*client
	for i := 0; i < 40; i++ {
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		clients = append(clients, c)
	}
	poll.Eventually(t, 2*time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 && b.entries() == 40 })
	b.fault.SetMode(faultstore.Hang)
	for _, c := range clients {
		c.must(n.h, "/invalidate", 200)
	}
	poll.Eventually(t, 2*time.Second, "deletes in flight", func() bool { return b.fault.Deletes.Load() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := n.m.Close(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "not flushed") {
		t.Fatalf("Close with hanging storage = %v, want a report of what was left", err)
	}
	// 40 deletes one at a time would take 8 s; the deadline is 300 ms.
	if took > 3*time.Second {
		t.Fatalf("Close took %v with a 300ms deadline", took)
	}
	b.fault.SetMode(faultstore.Pass)
}

// Failure 9: an entry that always fails does not hold back the others of
// its batch, and is retried alone.
func TestOneFailingEntryDoesNotBlockItsBatch(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: 50 * time.Millisecond})
	var poisoned atomic.Value
	poisoned.Store("")
	b.fault.FailKeys(func(k string) bool { return k == poisoned.Load().(string) })
	bad := newClient(t)
	bad.must(n.h, "/set?k=a&v=1", 200)
	poisoned.Store(adapter.Key("sess:", bad.cookie))
	var good []*client
	for i := 0; i < 5; i++ {
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		good = append(good, c)
	}
	poll.Eventually(t, 3*time.Second, "the other sessions of the batch stored", func() bool {
		for _, c := range good {
			if !b.has(c.cookie) {
				return false
			}
		}
		return true
	})
	if n.m.Stats().StorageErrors == 0 {
		t.Fatal("the failing entry was not counted")
	}
	if got := n.logs.count("storage refuses this session's write"); got != 1 {
		t.Fatalf("the failing entry was logged %d times, want once:\n%s", got, n.logs)
	}
	// Sessions changed later are not slowed by the failing one.
	late := newClient(t)
	late.must(n.h, "/set?k=a&v=1", 200)
	poll.Eventually(t, 3*time.Second, "a later session stored", func() bool { return b.has(late.cookie) })
	if b.has(bad.cookie) {
		t.Fatal("the failing entry was stored")
	}
	b.fault.FailKeys(nil)
	poll.Eventually(t, 10*time.Second, "the failing entry stored once it can be", func() bool { return b.has(bad.cookie) })
}

// Failure 10: a resident session past its deadline is never served, even
// before a sweep finds it.
func TestExpiredResidentSessionIsNeverServed(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		clk := newClock()
		var ends []sessions.EndReason
		var mu sync.Mutex
		n := newClockNode(t, b, sessions.Config{Cluster: cluster, Timeout: time.Hour, IdleEvict: -1, WriteBehind: 2 * time.Millisecond,
			OnSessionEnd: func(_ *sessions.Session, r sessions.EndReason) { mu.Lock(); ends = append(ends, r); mu.Unlock() }}, clk)
		c := newClient(t)
		c.must(n.h, "/set?k=user&v=alice", 200)
		c.must(n.h, "/get?k=user", 200)
		poll.Eventually(t, time.Second, "flushed", func() bool { return n.m.Stats().PendingWrites == 0 })
		clk.advance(time.Hour + time.Minute)
		c.must(n.h, "/get?k=user", http.StatusNotFound)
		c.must(n.h, "/get?k=user", http.StatusNotFound)
		mu.Lock()
		defer mu.Unlock()
		if len(ends) != 1 || ends[0] != sessions.EndTimeout {
			t.Fatalf("ends %v, want one timeout", ends)
		}
	})
}

// Failure 11: the session OnSessionEnd receives is read-only.
func TestEndSnapshotIsReadOnly(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		var setErr error
		var user string
		done := make(chan struct{})
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: time.Hour,
			OnSessionEnd: func(s *sessions.Session, _ sessions.EndReason) {
				user, _, _ = sessions.Get[string](s, "user")
				setErr = s.Set("x", "y")
				close(done)
			}})
		c := newClient(t)
		c.must(n.h, "/set?k=user&v=alice", 200)
		sessions.Flush(n.m)
		c.must(n.h, "/invalidate", 200)
		<-done
		if user != "alice" {
			t.Fatalf("the end snapshot reads user=%q", user)
		}
		if !errors.Is(setErr, sessions.ErrSessionEnded) {
			t.Fatalf("Set on the end snapshot = %v, want ErrSessionEnded", setErr)
		}
		if failed := sessions.Flush(n.m); failed != 0 { // the logout's delete, and anything the snapshot queued
			t.Fatalf("%d writes failed", failed)
		}
		if p, e := n.m.Stats().PendingWrites, b.entries(); p != 0 || e != 0 {
			t.Fatalf("%d writes pending and %d entries stored after the logout, want none", p, e)
		}
	})
}

// After Renew, the old ID gives no access on any server, and reads under
// it by requests already running see nothing.
func TestOldIDAfterRenewGivesNoAccessAnywhere(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{Cluster: true}
	a, other := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(a.h, "/set?k=user&v=alice", 200)
	old := c.cookie
	c.must(other.h, "/get?k=user", 200) // resident on both
	c.must(a.h, "/renew", 200)
	for _, n := range []*node{a, other} {
		o := &client{t: t, name: "session", cookie: old}
		o.must(n.h, "/get?k=user", http.StatusNotFound)
		if code, body := o.do(n.h, "/renew"); code != 200 || o.cookie != old {
			t.Fatalf("Renew under the old ID: %d %q cookie %q", code, body, o.cookie)
		}
	}
	if got := c.must(other.h, "/get?k=user", 200); got != "alice" {
		t.Fatalf("new ID on the other server: %q", got)
	}
}

// A request that began under a session which ended while it ran gets
// ErrSessionEnded from every write, and its reads find nothing.
func TestHandleOfEndedSessionRefusesWrites(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: 2 * time.Millisecond})
		c := newClient(t)
		c.must(n.h, "/set?k=user&v=alice", 200)
		var errs []error
		var id string
		var keys []string
		held := hold(t, n.m, c.cookie, func(w http.ResponseWriter, s *sessions.Session) {
			errs = append(errs, s.Set("k", "v"), s.Delete("user"), s.Renew())
			id, keys = s.ID(), s.Keys()
		})
		c.must(n.h, "/renew", 200)
		res := held.finish(t)
		for i, err := range errs {
			if !errors.Is(err, sessions.ErrSessionEnded) {
				t.Errorf("write %d on a renewed-away handle = %v, want ErrSessionEnded", i, err)
			}
		}
		if id != "" || len(keys) != 0 || res.cookieValue() != "" {
			t.Fatalf("renewed-away handle: ID %q, keys %v, cookie %q", id, keys, res.cookieValue())
		}
		if got := c.must(n.h, "/keys", 200); got != "user" {
			t.Fatalf("keys %q after refused writes", got)
		}
	})
}

// Many readers hammer an ID while its owner logs in and out: no reader's
// response ever carries a cookie, and no reader sees the owner's data after
// the ID moved away from it.
func TestReadersNeverGetCookiesDuringLoginLogoutChurn(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		cfg := sessions.Config{Cluster: cluster, WriteBehind: time.Millisecond}
		n := newNode(t, b, cfg)
		h := n.m.Handler(loginApp())
		owner := newClient(t)
		owner.must(h, "/set?k=theme&v=dark", 200)
		var ids sync.Map // every ID the owner has had
		ids.Store(owner.cookie, true)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var bad atomic.Value
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var target string
					ids.Range(func(k, _ any) bool { target = k.(string); return i%3 != 0 })
					r := httptest.NewRequest(http.MethodGet, "/get?k=theme", nil)
					r.AddCookie(&http.Cookie{Name: "session", Value: target})
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if sc := w.Result().Header.Get("Set-Cookie"); sc != "" {
						bad.Store("a reader got Set-Cookie: " + sc)
					}
				}
			}()
		}
		for i := 0; i < 50; i++ {
			owner.must(h, "/login", 200)
			ids.Store(owner.cookie, true)
			owner.must(h, "/relogin", 200)
			ids.Store(owner.cookie, true)
			owner.must(h, "/set?k=theme&v=dark", 200)
		}
		close(stop)
		wg.Wait()
		if v := bad.Load(); v != nil {
			t.Fatal(v)
		}
	})
}
