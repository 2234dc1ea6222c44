package sessions_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/serializer"
)

func TestSessionReadAfterItsDeadlineEndsThere(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		type end struct {
			id, user string
			reason   sessions.EndReason
		}
		var mu sync.Mutex
		var ends []end
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: 5 * time.Millisecond,
			OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
				u, _, _ := sessions.Get[string](s, "user")
				mu.Lock()
				ends = append(ends, end{s.ID(), u, r})
				mu.Unlock()
			}})
		// A stored session whose deadline passed while no server held it
		// (the storage has not expired it yet).
		id := randomID()
		user, _ := serializer.Msgpack.Marshal("alice")
		past := time.Now().Add(-time.Minute).UnixMilli()
		env := &serializer.Envelope{Codec: serializer.MsgpackID, Created: past - 1000, LastAccess: past - 1000,
			Expires: past, Revision: 3, Values: []serializer.Field{{Key: "user", Value: user}}}
		must(t, b.mem.Set(context.Background(), adapter.Key("sess:", id), env.Marshal()))

		c := &client{t: t, name: "session", cookie: id}
		c.must(n.h, "/get?k=user", http.StatusNotFound)
		mu.Lock()
		got := append([]end(nil), ends...)
		mu.Unlock()
		if len(got) != 1 || got[0].id != id || got[0].user != "alice" || got[0].reason != sessions.EndTimeout {
			t.Fatalf("cluster=%v: OnSessionEnd calls %+v; want one timeout with the ID and values", cluster, got)
		}
		poll.Eventually(t, time.Second, "expired entry deleted", func() bool { return !b.has(id) })
	}
}

func TestUntypedGet(t *testing.T) {
	for _, codec := range []serializer.Codec{serializer.Msgpack, serializer.JSON, serializer.Gob} {
		b := newBackend(t)
		n1 := newNode(t, b, sessions.Config{Codec: codec})
		c := newClient(t)
		inRequest(t, n1, c, func(s *sessions.Session) {
			must(t, s.Set("n", 42))
			if v, ok := s.Get("n"); !ok || v != 42 {
				t.Fatalf("%s: Get of a value set in this process = %#v, %v; want the value itself", codec.Name(), v, ok)
			}
			if v, ok := s.Get("missing"); ok || v != nil {
				t.Fatalf("%s: Get of a missing key = %#v, %v", codec.Name(), v, ok)
			}
		})
		n1.close(t)
		n2 := newNode(t, b, sessions.Config{Codec: codec})
		inRequest(t, n2, c, func(s *sessions.Session) {
			v, ok := s.Get("n")
			switch codec {
			case serializer.Msgpack:
				if !ok || v != int64(42) {
					t.Errorf("msgpack: untyped Get after reload = %#v, %v; want int64(42)", v, ok)
				}
			case serializer.JSON:
				if !ok || v != float64(42) {
					t.Errorf("json: untyped Get after reload = %#v, %v; want float64(42)", v, ok)
				}
			case serializer.Gob:
				if ok {
					t.Errorf("gob: untyped Get after reload = %#v; want not ok (gob needs the type)", v)
				}
				if !strings.Contains(n2.logs.String(), "use sessions.Get[T]") {
					t.Errorf("gob: the failed untyped Get was not logged with advice:\n%s", n2.logs)
				}
			}
			// The typed read works for every codec.
			if i, ok, err := sessions.Get[int](s, "n"); !ok || err != nil || i != 42 {
				t.Errorf("%s: Get[int] = %v, %v, %v", codec.Name(), i, ok, err)
			}
		})
	}
}

func TestSessionMetadata(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	c := newClient(t)
	before := time.Now().Add(-time.Second)
	inRequest(t, n, c, func(s *sessions.Session) {
		if !s.CreatedAt().IsZero() {
			t.Error("an unwritten session has a creation time")
		}
		must(t, s.Set("a", 1))
		if s.CreatedAt().Before(before) || s.LastAccess().Before(before) {
			t.Errorf("CreatedAt %v, LastAccess %v: want now", s.CreatedAt(), s.LastAccess())
		}
	})
	var nilSession *sessions.Session
	if nilSession.ID() != "" || !nilSession.CreatedAt().IsZero() || nilSession.Keys() != nil ||
		nilSession.Set("a", 1) != sessions.ErrNoSession || nilSession.Renew() != sessions.ErrNoSession ||
		nilSession.Invalidate() != sessions.ErrNoSession {
		t.Error("a nil *Session must be safe: empty reads, ErrNoSession on writes")
	}
	nilSession.Delete("a")
	if _, ok := nilSession.Get("a"); ok {
		t.Error("Get on a nil session found something")
	}
	if sessions.FromContext(context.Background()) != nil {
		t.Error("FromContext outside the middleware is not nil")
	}
	if sessions.EndTimeout.String() != "timeout" || sessions.EndInvalidated.String() != "invalidated" {
		t.Error("EndReason strings")
	}
}

func TestHijackCommitsFirst(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{Cluster: true})
	var id string
	srv := httptest.NewServer(n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		must(t, s.Set("ws", "open"))
		id = s.ID()
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack through the middleware: %v", err)
			return
		}
		defer conn.Close()
		if _, ok := b.storedValue(t, id, "ws"); !ok {
			t.Error("the session was not committed before the connection was handed over")
		}
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		rw.Flush()
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestPersistentCookieIsRefreshedWhileActive(t *testing.T) {
	clk := newClock()
	const timeout = 10 * time.Minute
	n := newClockNode(t, newBackend(t), sessions.Config{Timeout: timeout, Cookie: sessions.CookieConfig{Persist: true}}, clk)
	c := newClient(t)
	send := func() []*http.Cookie {
		r := httptest.NewRequest("GET", "/get?k=a", nil)
		if c.cookie != "" {
			r.AddCookie(&http.Cookie{Name: "session", Value: c.cookie})
		}
		w := httptest.NewRecorder()
		n.h.ServeHTTP(w, r)
		return w.Result().Cookies()
	}
	c.must(n.h, "/set?k=a&v=1", 200)
	if got := send(); len(got) != 0 {
		t.Fatalf("a persistent cookie was re-sent at once: %v", got)
	}
	clk.advance(timeout/10 - time.Second)
	if got := send(); len(got) != 0 {
		t.Fatalf("a persistent cookie was re-sent before Timeout/10: %v", got)
	}
	clk.advance(2 * time.Second) // past Timeout/10
	got := send()
	if len(got) != 1 || got[0].Value != c.cookie || got[0].MaxAge != int(timeout/time.Second) {
		t.Fatalf("an active session's persistent cookie was not refreshed: %v", got)
	}
	if got := send(); len(got) != 0 {
		t.Fatalf("a persistent cookie was re-sent right after its refresh: %v", got)
	}
}
