package reliability_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// keysApp: /set?k= sets k=v, /keys lists the keys.
func keysApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if r.URL.Path == "/set" {
			if err := s.Set(r.FormValue("k"), "v"); err != nil {
				http.Error(w, err.Error(), 500)
			}
			return
		}
		fmt.Fprint(w, strings.Join(s.Keys(), ","))
	})
}

// Sticky mode over real Redis and PostgreSQL, two Managers, a user whose
// requests flap between them: after each write has gone through one
// write-behind window, the other server reads it (no stale read), and in
// the end storage holds every key (none lost to a blind overwrite); then
// the same with requests sent to both servers at once.
func TestStickyFlapOverRedisAndPostgres(t *testing.T) {
	for _, name := range []string{"redis", "postgres"} {
		t.Run(name, func(t *testing.T) {
			var url string
			if name == "redis" {
				url = testservers.Redis(t).URL()
			} else {
				url = testservers.Postgres(t).URL()
			}
			cfg := sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond}
			a, b := newManager(t, cfg), newManager(t, cfg)
			defer closeWithin(t, a, 5*time.Second)
			defer closeWithin(t, b, 5*time.Second)
			servers := []*sessions.Manager{a, b}
			handlers := []http.Handler{a.Handler(keysApp()), b.Handler(keysApp())}
			user := &browser{}
			var keys []string
			stale := 0
			for round := 0; round < 30; round++ {
				w := (round / 2) % 2 // A A B B A A ...: each switch is a flap
				k := fmt.Sprintf("k%02d", round)
				if code, body := user.get(handlers[w], "/set?k="+k); code != 200 {
					t.Fatalf("set: %d %q", code, body)
				}
				keys = append(keys, k)
				sort.Strings(keys)
				poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return servers[w].Stats().PendingWrites == 0 })
				if _, got := user.get(handlers[1-w], "/keys"); got != strings.Join(keys, ",") {
					stale++
					t.Errorf("round %d: the other server read %q, want %q", round, got, strings.Join(keys, ","))
				}
			}
			// Parallel requests of the session on both servers.
			var wg sync.WaitGroup
			for round := 0; round < 10; round++ {
				for i := range handlers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						k := fmt.Sprintf("p%02d-%d", round, i)
						(&browser{cookie: user.cookie}).get(handlers[i], "/set?k="+k)
					}()
					keys = append(keys, fmt.Sprintf("p%02d-%d", round, i))
				}
				wg.Wait()
			}
			sort.Strings(keys)
			for _, m := range servers {
				poll.Eventually(t, 5*time.Second, "write-behind", func() bool { return m.Stats().PendingWrites == 0 })
			}
			// A third server, reading storage only, sees every key.
			c := newManager(t, sessions.Config{Storage: url})
			defer closeWithin(t, c, 5*time.Second)
			if _, got := (&browser{cookie: user.cookie[:43]}).get(c.Handler(keysApp()), "/keys"); got != strings.Join(keys, ",") {
				t.Fatalf("storage holds %q, want %q: keys lost", got, strings.Join(keys, ","))
			}
			t.Logf("%d stale reads in 30 flaps; conflicts merged: %d + %d", stale, a.Stats().Conflicts, b.Stats().Conflicts)
		})
	}
}
