package sessions_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
)

// counterRun drives perSession increments through /uincr for each of
// sessions sessions, inFlight at a time per session, spread over handlers
// round-robin; it returns each session's cookie, acknowledged count and
// acknowledged values.
func counterRun(t *testing.T, hs []http.Handler, sessionsN, perSession, inFlight int) (cookies []string, acked []int, values [][]int) {
	t.Helper()
	cookies = make([]string, sessionsN)
	acked = make([]int, sessionsN)
	values = make([][]int, sessionsN)
	for i := range cookies {
		c := newClient(t)
		c.must(hs[0], "/set?k=theme&v=dark", 200)
		cookies[i] = c.cookie
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range cookies {
		for g := 0; g < inFlight; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &client{t: t, name: "session", cookie: cookies[i]}
				for j := 0; j < perSession/inFlight; j++ {
					code, body := c.do(hs[(g+j)%len(hs)], "/uincr?k=n")
					if code != 200 {
						continue // not acknowledged
					}
					v, err := strconv.Atoi(body)
					if err != nil {
						t.Errorf("Update answered %q", body)
						return
					}
					mu.Lock()
					acked[i]++
					values[i] = append(values[i], v)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return cookies, acked, values
}

// checkCounters: each session's stored counter equals its acknowledged
// increments, and no value was returned twice.
func checkCounters(t *testing.T, h http.Handler, cookies []string, acked []int, values [][]int) {
	t.Helper()
	for i, id := range cookies {
		c := &client{t: t, name: "session", cookie: id}
		got, _ := strconv.Atoi(c.must(h, "/geti?k=n", 200))
		if got != acked[i] {
			t.Errorf("session %d: counter %d after %d acknowledged increments", i, got, acked[i])
		}
		seen := map[int]bool{}
		for _, v := range values[i] {
			if seen[v] || v < 1 || v > got {
				t.Errorf("session %d: value %d returned twice or out of range 1..%d", i, v, got)
			}
			seen[v] = true
		}
	}
}

func TestUpdateLosesNothingAcrossClusterServers(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{Cluster: true}
	n1, n2, n3 := newNode(t, b, cfg), newNode(t, b, cfg), newNode(t, b, cfg)
	cookies, acked, values := counterRun(t, []http.Handler{n1.h, n2.h, n3.h}, 10, 100, 4)
	total := 0
	for _, a := range acked {
		total += a
	}
	if total < 900 {
		t.Errorf("only %d of 1000 increments acknowledged", total)
	}
	checkCounters(t, n2.h, cookies, acked, values)
}

func TestUpdateLosesNothingInStickyMode(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	cookies, acked, values := counterRun(t, []http.Handler{n.h}, 10, 100, 4)
	for i, a := range acked {
		if a != 100 {
			t.Errorf("session %d: %d of 100 increments acknowledged", i, a)
		}
	}
	checkCounters(t, n.h, cookies, acked, values)
}

func TestUpdateEdges(t *testing.T) {
	modes(t, func(t *testing.T, cluster bool) {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: cluster})
		c := newClient(t)
		// Update starts a session like Set.
		if got := c.must(n.h, "/uincr?k=n", 200); got != "1" || c.cookie == "" {
			t.Fatalf("first Update: %q, cookie %q", got, c.cookie)
		}
		// fn's error is returned and nothing changes.
		var err error
		inRequest(t, n, c, func(s *sessions.Session) {
			_, err = sessions.Update(s, "n", func(old int, ok bool) (int, error) { return 0, errors.New("cart full") })
		})
		if err == nil || err.Error() != "cart full" {
			t.Fatalf("Update with a failing fn: %v", err)
		}
		if got := c.must(n.h, "/geti?k=n", 200); got != "1" {
			t.Fatalf("after a failed Update: %q", got)
		}
		// A value that does not decode as T is an error, not a reset.
		c.must(n.h, "/set?k=s&v=text", 200)
		inRequest(t, n, c, func(s *sessions.Session) {
			_, err = sessions.Update(s, "s", func(old int, ok bool) (int, error) { return old + 1, nil })
		})
		if err == nil {
			t.Fatal("Update of a string as an int succeeded")
		}
		// Unserializable results are refused.
		inRequest(t, n, c, func(s *sessions.Session) {
			_, err = sessions.Update(s, "f", func(old func(), ok bool) (func(), error) { return func() {}, nil })
		})
		if !errors.Is(err, sessions.ErrUnserializable) {
			t.Fatalf("Update returning a func: %v", err)
		}
		// On a session that ended while the request ran.
		held := hold(t, n.m, c.cookie, func(w http.ResponseWriter, s *sessions.Session) {
			_, err = sessions.Update(s, "n", func(old int, ok bool) (int, error) { return old + 1, nil })
		})
		c.must(n.h, "/invalidate", 200)
		held.finish(t)
		if !errors.Is(err, sessions.ErrSessionEnded) {
			t.Fatalf("Update on an ended session: %v", err)
		}
	})
}

// Cluster mode: an Update whose write fails returns the error, and the key
// keeps its stored value (in memory too).
func TestClusterUpdateStorageFailureChangesNothing(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{Cluster: true})
	c := newClient(t)
	c.must(n.h, "/uincr?k=n", 200)
	b.fault.FailNext(faultstore.OpCAS, 1)
	if code, _ := c.do(n.h, "/uincr?k=n"); code != http.StatusServiceUnavailable {
		t.Fatalf("Update with a failing write answered %d", code)
	}
	if got := c.must(n.h, "/geti?k=n", 200); got != "1" {
		t.Fatalf("after a failed Update the counter reads %q, want 1", got)
	}
	if v, _ := b.storedValue(t, c.cookie, "n"); v != fmt.Sprint(1) {
		t.Fatalf("stored counter %q", v)
	}
}
