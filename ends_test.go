package sessions_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
	"github.com/sessionstorage/sessions/internal/poll"
)

// New says once, at start, that OnSessionEnd will miss sessions that time
// out while no server holds them, when the storage cannot list expiring
// entries; not otherwise.
func TestWarnsWhenStorageCannotListExpiring(t *testing.T) {
	onEnd := func(*sessions.Session, sessions.EndReason) {}
	for _, tc := range []struct {
		name  string
		plain bool
		onEnd func(*sessions.Session, sessions.EndReason)
		want  int
	}{
		{"cannot list, OnSessionEnd set", true, onEnd, 1},
		{"cannot list, no OnSessionEnd", true, nil, 0},
		{"can list", false, onEnd, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			var st store.StoreInterface = b.fault
			if tc.plain {
				st = b.fault.Plain()
			}
			logs := &logBuffer{}
			cfg := sessions.Config{Store: st, OnSessionEnd: tc.onEnd, Logger: slogTo(logs), Timeout: 200 * time.Millisecond}
			m := mustNew(t, cfg)
			time.Sleep(120 * time.Millisecond) // a few sweeps: still once
			if err := m.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := logs.count("cannot list expiring entries"); got != tc.want {
				t.Fatalf("logged %d times, want %d:\n%s", got, tc.want, logs)
			}
		})
	}
}

// A timed-out session whose claim fails (storage failing at its deadline)
// is not reported then; a later sweep claims it from storage once the
// storage answers, and reports it once.
func TestEndClaimedLaterWhenStorageFailsAtDeadline(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		var ends atomic.Int32
		n := newNode(t, b, sessions.Config{Cluster: cluster, Timeout: 300 * time.Millisecond, IdleEvict: -1,
			WriteBehind: 5 * time.Millisecond, StorageTimeout: 50 * time.Millisecond,
			OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
				if v, _, _ := sessions.Get[string](s, "a"); v == "1" && r == sessions.EndTimeout {
					ends.Add(1)
				}
			}})
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		poll.Eventually(t, time.Second, "stored", func() bool { return b.has(c.cookie) })
		b.fault.SetOpMode(faultstore.OpDelete, faultstore.Fail)
		b.fault.SetOpMode(faultstore.OpGet, faultstore.Fail) // the sweeps' listing too
		time.Sleep(500 * time.Millisecond)                   // past the deadline, several sweeps
		if got := ends.Load(); got != 0 {
			t.Fatalf("cluster=%v: %d ends reported while the claim could not be made", cluster, got)
		}
		if !b.has(c.cookie) {
			t.Fatalf("cluster=%v: the entry is gone although every delete failed", cluster)
		}
		b.fault.SetMode(faultstore.Pass)
		b.fault.SetOpMode(faultstore.OpDelete, faultstore.Pass)
		b.fault.SetOpMode(faultstore.OpGet, faultstore.Pass)
		poll.Eventually(t, 3*time.Second, "the end claimed once storage answers", func() bool { return ends.Load() > 0 })
		time.Sleep(200 * time.Millisecond)
		if got := ends.Load(); got != 1 {
			t.Fatalf("cluster=%v: %d ends, want 1", cluster, got)
		}
		if b.has(c.cookie) {
			t.Fatalf("cluster=%v: entry left after its end", cluster)
		}
		c.must(n.h, "/get?k=a", http.StatusNotFound)
	}
}
