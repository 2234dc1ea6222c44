package conformance

import (
	"fmt"
	"sync"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
)

// Checks of how sessions end: the storage decides which server reports
// each end, so that OnSessionEnd fires once across all Managers.

// endLog records the OnSessionEnd calls of several Managers, by the value
// of the "who" key each test session holds.
type endLog struct {
	mu    sync.Mutex
	ends  map[string][]string // who → "manager:reason" per call
	total int
}

func (l *endLog) hook(manager string) func(*sessions.Session, sessions.EndReason) {
	return func(s *sessions.Session, reason sessions.EndReason) {
		who, _, _ := sessions.Get[string](s, "who")
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ends == nil {
			l.ends = map[string][]string{}
		}
		l.ends[who] = append(l.ends[who], manager+":"+reason.String())
		l.total++
	}
}

func (l *endLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *endLog) of(who string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ends[who]...)
}

// leftovers returns what remains in storage of the sessions with the given
// cookies, and of the prefix if the store can list.
func leftovers(c *C, st store.StoreInterface, prefix string, cookies []string) []string {
	var left []string
	for _, ck := range cookies {
		if stored(st, prefix, ck) {
			left = append(left, "the entry of cookie "+ck[:8]+"…")
		}
	}
	if l, ok := st.(driver.KeyLister); ok {
		err := l.ListKeys(bg(), prefix, func(k string) error {
			left = append(left, "listed key "+k)
			return nil
		})
		if err != nil {
			c.Errorf("ListKeys: %v", err)
		}
	}
	if l, ok := st.(driver.ExpiryLister); ok {
		keys, _, err := l.ListExpiring(bg(), prefix, time.Now().Add(1000*time.Hour), 100)
		if err != nil {
			c.Errorf("ListExpiring: %v", err)
		}
		for _, k := range keys {
			left = append(left, "expiring entry "+k)
		}
	}
	return left
}

func checkEndsOnce(c *C, h *Harness) {
	st := newStore(c, h)
	if _, ok := st.(driver.ExpiryLister); !ok {
		c.Skipf("store has no ListExpiring: a session that times out while no server holds it (evicted, or its server restarted) ends without OnSessionEnd")
	}
	r := h.TTLResolution
	timeout := max(8*r, 800*time.Millisecond)
	for _, cluster := range []bool{false, true} {
		p := ns()
		log := &endLog{}
		cfg := func(name string, idle time.Duration) sessions.Config {
			return sessions.Config{KeyPrefix: p, Cluster: cluster, Timeout: timeout, IdleEvict: idle,
				StorageTimeout: 500 * time.Millisecond, OnSessionEnd: log.hook(name)}
		}
		// A holds its sessions in memory until they time out; B evicts
		// them at once and is closed (a restart) before their deadline;
		// C starts after B is gone.
		a := startManager(c, st, cfg("A", -1))
		b := startManager(c, st, cfg("B", 10*time.Millisecond))
		const perServer = 6
		var users []*user
		var whos []string
		for i := range 2 * perServer {
			srv, name := a, "A"
			if i%2 == 1 {
				srv, name = b, "B"
			}
			u := &user{}
			who := fmt.Sprintf("%s%d", name, i)
			u.must(c, srv, "/set?k=who&v="+who, 200)
			users, whos = append(users, u), append(whos, who)
		}
		var cookies []string
		for _, u := range users {
			cookies = append(cookies, u.cookie)
		}
		if !poll.Until(5*time.Second, func() bool {
			for _, ck := range cookies {
				if !stored(st, p, ck) {
					return false
				}
			}
			return true
		}) {
			c.Fatalf("cluster=%v: sessions not stored within 5 s", cluster)
		}
		// One logout: an end of its own, and no timeout end after it.
		users[0].must(c, a, "/invalidate", 200)
		b.closeNow(c)
		cm := startManager(c, st, cfg("C", 10*time.Millisecond))
		all := len(whos)
		if !poll.Until(timeout+5*time.Second, func() bool { return log.count() >= all }) {
			c.Errorf("cluster=%v: %d of %d sessions' ends were reported within Timeout + 5 s", cluster, log.count(), all)
		}
		time.Sleep(time.Second) // room for a second report
		for i, who := range whos {
			got := log.of(who)
			want := "timeout"
			if i == 0 {
				want = "invalidated"
			}
			switch {
			case len(got) == 0:
				c.Errorf("cluster=%v: the session of %s ended without OnSessionEnd (its server %s; Managers A and C were running past its deadline)", cluster, who, who[:1])
			case len(got) > 1:
				c.Errorf("cluster=%v: OnSessionEnd fired %d times for the session of %s: %v; want once across all Managers: claim each end with CompareAndDelete", cluster, len(got), who, got)
			default:
				if reason := got[0][2:]; reason != want {
					c.Errorf("cluster=%v: the session of %s ended with reason %s, want %s", cluster, who, reason, want)
				}
			}
		}
		if left := leftovers(c, st, p, cookies); len(left) > 0 {
			c.Errorf("cluster=%v: after every session ended, storage still holds: %v", cluster, left)
		}
		a.closeNow(c)
		cm.closeNow(c)
	}
}

func checkEndsOnceConcurrent(c *C, h *Harness) {
	st := newStore(c, h)
	if _, ok := st.(driver.CompareAndDeleter); !ok {
		c.Skipf("store has no CompareAndDelete: requests on several servers that find one expired session each fire OnSessionEnd")
	}
	r := h.TTLResolution
	// The entry stays claimable for Timeout after its deadline (its storage
	// TTL is 2×Timeout): long enough that a loaded machine oversleeping
	// cannot let the storage drop it before the requests below.
	timeout := max(8*r, 2*time.Second)
	for _, cluster := range []bool{false, true} {
		p := ns()
		log := &endLog{}
		// StorageTimeout of 30 s: the sweeps' claims wait that long past
		// the deadline, so the requests below are the ones that find it.
		cfg := func(name string) sessions.Config {
			return sessions.Config{KeyPrefix: p, Cluster: cluster, Timeout: timeout, IdleEvict: 10 * time.Millisecond,
				StorageTimeout: 30 * time.Second, OnSessionEnd: log.hook(name)}
		}
		a, b := startManager(c, st, cfg("A")), startManager(c, st, cfg("B"))
		u := &user{}
		u.must(c, a, "/set?k=who&v=one", 200)
		cookie := u.cookie
		if !poll.Until(5*time.Second, func() bool { return stored(st, p, cookie) }) {
			c.Fatalf("cluster=%v: session not stored within 5 s", cluster)
		}
		if !poll.Until(5*time.Second, func() bool { return a.m.Stats().Resident == 0 || cluster }) {
			c.Fatalf("cluster=%v: session not idle-evicted", cluster)
		}
		time.Sleep(timeout + 2*r)
		var wg sync.WaitGroup
		for i := range 4 {
			srv := a
			if i%2 == 1 {
				srv = b
			}
			c.goSafe(&wg, func() {
				(&user{cookie: cookie}).do(srv, "/get?k=who")
			})
		}
		wg.Wait()
		if got := log.of("one"); len(got) != 1 {
			c.Errorf("cluster=%v: 4 concurrent requests on 2 Managers found one expired session: OnSessionEnd fired %d times (%v), want exactly once: the storage decides with CompareAndDelete", cluster, len(got), got)
		}
		if stored(st, p, cookie) {
			c.Errorf("cluster=%v: the expired session's entry is still stored after requests found it", cluster)
		}
		a.closeNow(c)
		b.closeNow(c)
	}
}
