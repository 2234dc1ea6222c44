package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// endRecorder counts OnSessionEnd calls per session, by the "who" value
// each test session holds, across Managers.
type endRecorder struct {
	mu   sync.Mutex
	ends map[string][]string // who → "server reason" per call
}

func (e *endRecorder) hook(server string) func(*sessions.Session, sessions.EndReason) {
	return func(s *sessions.Session, r sessions.EndReason) {
		who, _, _ := sessions.Get[string](s, "who")
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.ends == nil {
			e.ends = map[string][]string{}
		}
		e.ends[who] = append(e.ends[who], server+" "+r.String())
	}
}

func (e *endRecorder) of(who string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.ends[who]...)
}

func (e *endRecorder) sessions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ends)
}

// whoApp: /set?v= stores who=v; /touch reads it.
func whoApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		if r.URL.Path == "/set" {
			if err := s.Set("who", r.FormValue("v")); err != nil {
				http.Error(w, err.Error(), 500)
			}
			return
		}
		who, _, _ := sessions.Get[string](s, "who")
		fmt.Fprint(w, who)
	})
}

// Three Managers over real Redis and PostgreSQL, in both modes: sessions
// held in memory until they time out, sessions idle-evicted, and sessions
// whose server restarted before their deadline each fire OnSessionEnd
// exactly once across the Managers; a session kept in use through the same
// time never ends; nothing of the ended sessions is left in storage.
func TestEndsFireOnceAcrossRestartsOverRedisAndPostgres(t *testing.T) {
	for _, name := range []string{"redis", "postgres"} {
		for _, cluster := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cluster=%v", name, cluster), func(t *testing.T) {
				t.Parallel()
				var url string
				if name == "redis" {
					url = testservers.Redis(t).URL()
				} else {
					url = testservers.Postgres(t).URL()
				}
				prefix := fmt.Sprintf("ends-%v:", cluster)
				rec := &endRecorder{}
				const timeout = 1500 * time.Millisecond
				cfg := func(server string, idle time.Duration) sessions.Config {
					return sessions.Config{Storage: url, KeyPrefix: prefix, Cluster: cluster, Timeout: timeout,
						IdleEvict: idle, WriteBehind: 10 * time.Millisecond, StorageTimeout: 300 * time.Millisecond,
						OnSessionEnd: rec.hook(server)}
				}
				servers := map[string]*sessions.Manager{
					"A": newManager(t, cfg("A", -1)), // holds its sessions until they time out
					"B": newManager(t, cfg("B", 100*time.Millisecond)),
					"C": newManager(t, cfg("C", 100*time.Millisecond)),
				}
				handler := func(s string) http.Handler { return servers[s].Handler(whoApp()) }
				const perServer = 8
				var whos []string
				var cookies []string
				for _, s := range []string{"A", "B", "C"} {
					for i := range perServer {
						who := fmt.Sprintf("%s%d", s, i)
						u := &browser{}
						if code, body := u.get(handler(s), "/set?v="+who); code != 200 {
							t.Fatalf("set on %s: %d %s", s, code, body)
						}
						whos, cookies = append(whos, who), append(cookies, u.cookie)
					}
				}
				// One user stays active on C through everything below.
				active, onC := &browser{}, handler("C")
				active.get(onC, "/set?v=active")
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Millisecond):
							if code, body := active.get(onC, "/touch"); code != 200 || body != "active" {
								t.Errorf("the active session answered %d %q", code, body)
							}
						}
					}
				}()
				// B restarts (a deploy) and C is replaced by nothing: B's
				// sessions are ended by whoever runs at their deadline.
				time.Sleep(200 * time.Millisecond)
				if err := closeWithin(t, servers["B"], 5*time.Second); err != nil {
					t.Fatalf("closing B: %v", err)
				}
				servers["B"] = newManager(t, cfg("B2", 100*time.Millisecond))
				deadline := time.Now().Add(timeout + 5*time.Second)
				for rec.sessions() < len(whos) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(time.Second) // room for a second report
				close(stop)
				wg.Wait()
				for _, who := range whos {
					if got := rec.of(who); len(got) != 1 {
						t.Errorf("session %s: OnSessionEnd %d times %v, want exactly once", who, len(got), got)
					} else if got[0][len(got[0])-7:] != "timeout" {
						t.Errorf("session %s ended with %q, want a timeout", who, got[0])
					}
				}
				if got := rec.of("active"); len(got) != 0 {
					t.Errorf("the session in use every 200 ms ended: %v", got)
				}
				for _, m := range servers {
					if err := closeWithin(t, m, 5*time.Second); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
				// Nothing left of the ended sessions: no entry, no index
				// record.
				st, err := adapter.Resolve(context.Background(), url, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				for i, ck := range cookies {
					id, _ := sessions.CookieID(ck)
					if _, err := st.Get(context.Background(), adapter.Key(prefix, id)); err == nil {
						t.Errorf("session %s still stored", whos[i])
					}
				}
				lister, ok := st.Store().(driver.ExpiryLister)
				if !ok {
					t.Fatalf("%s store has no ListExpiring", name)
				}
				keys, _, err := lister.ListExpiring(context.Background(), prefix, time.Now().Add(time.Hour), 100)
				if err != nil {
					t.Fatal(err)
				}
				if activeID, _ := sessions.CookieID(active.cookie); len(keys) != 1 || keys[0] != adapter.Key(prefix, activeID) {
					t.Errorf("expiring entries left under %s: %q, want only the active session's", prefix, keys)
				}
			})
		}
	}
}
