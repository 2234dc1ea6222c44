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
			clk := newClock()
			cfg := sessions.Config{Store: st, OnSessionEnd: tc.onEnd, Logger: slogTo(logs), Timeout: time.Hour}
			m, err := sessions.NewWithClock(cfg, clk.now)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // a few sweeps: still once
				clk.advance(time.Hour)
				sessions.Tick(m, clk.now())
			}
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
		clk := newClock()
		var ends atomic.Int32
		const timeout = time.Hour
		n := newClockNode(t, b, sessions.Config{Cluster: cluster, Timeout: timeout, IdleEvict: -1,
			WriteBehind: time.Hour, StorageTimeout: 50 * time.Millisecond,
			OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
				if v, _, _ := sessions.Get[string](s, "a"); v == "1" && r == sessions.EndTimeout {
					ends.Add(1)
				}
			}}, clk)
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		sessions.Flush(n.m)
		if !b.has(c.cookie) {
			t.Fatalf("cluster=%v: not stored", cluster)
		}
		b.fault.SetOpMode(faultstore.OpDelete, faultstore.Fail)
		b.fault.SetOpMode(faultstore.OpGet, faultstore.Fail) // the sweeps' listing too
		clk.advance(timeout + timeout/2)                     // past the deadline and the claims' slack
		clk.tick(3, n)                                       // several sweeps
		if got := ends.Load(); got != 0 {
			t.Fatalf("cluster=%v: %d ends reported while the claim could not be made", cluster, got)
		}
		if !b.has(c.cookie) {
			t.Fatalf("cluster=%v: the entry is gone although every delete failed", cluster)
		}
		b.fault.SetMode(faultstore.Pass)
		b.fault.SetOpMode(faultstore.OpDelete, faultstore.Pass)
		b.fault.SetOpMode(faultstore.OpGet, faultstore.Pass)
		clk.tick(1, n)
		if got := ends.Load(); got != 1 {
			t.Fatalf("cluster=%v: %d ends after a sweep once storage answers, want 1", cluster, got)
		}
		clk.tick(3, n)
		if got := ends.Load(); got != 1 {
			t.Fatalf("cluster=%v: %d ends after more sweeps, want 1", cluster, got)
		}
		if b.has(c.cookie) {
			t.Fatalf("cluster=%v: entry left after its end", cluster)
		}
		c.must(n.h, "/get?k=a", http.StatusNotFound)
	}
}
