package sessions_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
	"github.com/sessionstorage/sessions/serializer"
)

func randomID() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// storedValue reads key k of the stored session for id straight from the
// memory store, bypassing every Manager.
func (b *backend) storedValue(t *testing.T, id, k string) (string, bool) {
	t.Helper()
	raw, err := b.mem.Get(context.Background(), adapter.Key("sess:", id))
	if err != nil {
		return "", false
	}
	env, err := serializer.DecodeEnvelope(raw.([]byte))
	if err != nil {
		t.Fatalf("stored entry does not decode: %v", err)
	}
	for _, f := range env.Values {
		if f.Key == k {
			var v any
			if err := serializer.Msgpack.Unmarshal(f.Value, &v); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(v), true
		}
	}
	return "", false
}

func (b *backend) has(id string) bool {
	_, err := b.mem.Get(context.Background(), adapter.Key("sess:", id))
	return err == nil
}

func TestNewSessionIsNotStoredUntilWritten(t *testing.T) {
	b := newBackend(t)
	for _, cluster := range []bool{false, true} {
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: time.Hour})
		c := newClient(t)
		code, _ := c.do(n.h, "/get?k=a")
		if code != http.StatusNotFound || c.cookie != "" {
			t.Fatalf("cluster=%v: reading a new session: status %d, cookie %q; want 404 and no cookie", cluster, code, c.cookie)
		}
		sessions.Flush(n.m) // writes whatever the request queued
		if w := b.fault.Writes(); w != 0 || n.m.Stats().Resident != 0 {
			t.Fatalf("cluster=%v: an unwritten session cost %d storage writes and %d resident sessions", cluster, w, n.m.Stats().Resident)
		}
	}
}

func TestCookieDefaults(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	r := httptest.NewRequest("GET", "/set?k=a&v=1", nil)
	w := httptest.NewRecorder()
	n.h.ServeHTTP(w, r)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("got %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if ck.Name != "session" || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.MaxAge != 0 {
		t.Fatalf("cookie %s: want session=...; Path=/; HttpOnly; Secure; SameSite=Lax and no Max-Age", ck)
	}
	if id := idOf(ck.Value); len(id) != 43 || !regexp.MustCompile(`^\.[0-9a-z]+\.[0-9a-z]+$`).MatchString(ck.Value[43:]) {
		t.Fatalf("cookie value %q: want 43 base64url characters (32 random bytes), then the sticky-mode version .<revision>.<node>", ck.Value)
	}
}

func TestOnSessionStartFiresOnce(t *testing.T) {
	var starts atomic.Int32
	n := newNode(t, newBackend(t), sessions.Config{OnSessionStart: func(s *sessions.Session) {
		if s.ID() == "" {
			t.Error("OnSessionStart got a session without ID")
		}
		starts.Add(1)
	}})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	c.must(n.h, "/set?k=b&v=2", 200)
	c.must(n.h, "/get?k=a", 200)
	if got := starts.Load(); got != 1 {
		t.Fatalf("OnSessionStart fired %d times, want 1", got)
	}
}

func TestMalformedCookiesGetFreshSessionWithoutStorageLookup(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{})
	valid := randomID()
	for name, value := range map[string]string{
		"empty":          "",
		"too long":       valid + "A",
		"too short":      valid[:42],
		"wrong alphabet": valid[:20] + "+/" + valid[22:],
		"non-canonical":  valid[:42] + "B", // last character with padding bits set
		"quoted":         `"` + valid[:41] + `"`,
		"huge":           strings.Repeat("A", 8000),
	} {
		b.fault.ResetCounts()
		r := httptest.NewRequest("GET", "/set?k=a&v=1", nil)
		r.Header.Set("Cookie", "session="+value)
		w := httptest.NewRecorder()
		n.h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("%s cookie: status %d", name, w.Code)
		}
		if g := b.fault.Gets.Load(); g != 0 {
			t.Errorf("%s cookie: %d storage lookups, want none", name, g)
		}
		ck := w.Result().Cookies()
		if len(ck) != 1 || idOf(ck[0].Value) == value || len(idOf(ck[0].Value)) != 43 {
			t.Errorf("%s cookie: want a fresh session with a new ID, got cookies %v", name, ck)
		}
	}
	// A well-formed but unknown ID is looked up once, then replaced.
	b.fault.ResetCounts()
	c := &client{t: t, name: "session", cookie: valid}
	c.must(n.h, "/set?k=a&v=1", 200)
	if g := b.fault.Gets.Load(); g != 1 {
		t.Errorf("unknown ID: %d storage lookups, want 1", g)
	}
	if c.cookie == valid {
		t.Error("unknown ID was adopted; a fresh session must get a new ID (fixation)")
	}
}

func TestUnreadableStoredEntriesStartFreshSession(t *testing.T) {
	good := (&serializer.Envelope{Codec: serializer.MsgpackID, Created: 1, LastAccess: 1,
		Expires: time.Now().Add(time.Hour).UnixMilli(), Revision: 1,
		Values: []serializer.Field{{Key: "a", Value: []byte{0xa1, 'x'}}}}).Marshal()
	other := func(mut func(e *serializer.Envelope)) []byte {
		e, _ := serializer.DecodeEnvelope(append([]byte(nil), good...))
		mut(e)
		return e.Marshal()
	}
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 0x40
	version := append([]byte(nil), good...)
	version[2] = 9
	cases := map[string][]byte{
		"truncated":     good[:len(good)-3],
		"corrupt":       flip,
		"other version": version,
		"unknown codec": other(func(e *serializer.Envelope) { e.Codec = 200 }),
		"other codec":   other(func(e *serializer.Envelope) { e.Codec = serializer.JSONID }),
		"not ours":      []byte("PHPSESSID|a:1:{}"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			for _, cluster := range []bool{false, true} {
				b := newBackend(t)
				n := newNode(t, b, sessions.Config{Cluster: cluster})
				id := randomID()
				if err := b.mem.Set(context.Background(), adapter.Key("sess:", id), data); err != nil {
					t.Fatal(err)
				}
				c := &client{t: t, name: "session", cookie: id}
				c.must(n.h, "/get?k=a", http.StatusNotFound)
				c.must(n.h, "/set?k=b&v=2", 200)
				if c.cookie == id || c.cookie == "" {
					t.Fatalf("cluster=%v: want a fresh session with a new ID", cluster)
				}
				if got := n.m.Stats().CorruptEntries; got != 1 {
					t.Errorf("cluster=%v: CorruptEntries = %d, want 1", cluster, got)
				}
				if got := n.logs.count("unreadable stored session"); got != 1 {
					t.Errorf("cluster=%v: logged %d times, want once:\n%s", cluster, got, n.logs)
				}
			}
		})
	}
}

// An empty stored value is no entry (a store may leave one for a moment
// as the mark of a claimed delete): a fresh session, nothing counted.
func TestEmptyStoredValueIsNoSession(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: cluster})
		id := randomID()
		if err := b.mem.Set(context.Background(), adapter.Key("sess:", id), []byte{}); err != nil {
			t.Fatal(err)
		}
		c := &client{t: t, name: "session", cookie: id}
		c.must(n.h, "/get?k=a", http.StatusNotFound)
		c.must(n.h, "/set?k=b&v=2", 200)
		if c.cookie == id || c.cookie == "" {
			t.Fatalf("cluster=%v: want a fresh session with a new ID", cluster)
		}
		if got := n.m.Stats().CorruptEntries; got != 0 {
			t.Errorf("cluster=%v: CorruptEntries = %d, want 0", cluster, got)
		}
	}
}

// inRequest runs fn with the session of a request made by c to n.
func inRequest(t *testing.T, n *node, c *client, fn func(s *sessions.Session)) {
	t.Helper()
	h := n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn(sessions.FromContext(r.Context()))
	}))
	c.do(h, "/")
}

type node2 struct {
	Name string
	Next *node2
}

func TestSetRejectsUnserializableValues(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	c := newClient(t)
	c.must(n.h, "/set?k=keep&v=1", 200)
	cyclic := &node2{Name: "a"}
	cyclic.Next = &node2{Name: "b", Next: cyclic}
	cyclicMap := map[string]any{}
	cyclicMap["self"] = cyclicMap
	cyclicSlice := make([]any, 1)
	cyclicSlice[0] = cyclicSlice
	cases := []struct {
		name  string
		value any
		typ   string
	}{
		{"func", func() {}, "func()"},
		{"chan", make(chan int), "chan int"},
		{"nil func", (func())(nil), "func()"},
		{"func in struct", struct{ F func() }{}, "struct"},
		{"cyclic pointers", cyclic, "*sessions_test.node2"},
		{"cyclic map", cyclicMap, "map[string]interface {}"},
		{"cyclic slice", cyclicSlice, "[]interface {}"},
	}
	for _, tc := range cases {
		inRequest(t, n, c, func(s *sessions.Session) {
			err := s.Set("bad", tc.value)
			if !errors.Is(err, sessions.ErrUnserializable) {
				t.Fatalf("%s: Set returned %v, want ErrUnserializable", tc.name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, `"bad"`) || !strings.Contains(msg, tc.typ) {
				t.Errorf("%s: error %q should name the key and the type %s", tc.name, msg, tc.typ)
			}
			if keys := strings.Join(s.Keys(), ","); keys != "keep" {
				t.Errorf("%s: session changed: keys %q", tc.name, keys)
			}
		})
	}
	// Shared, acyclic structure is fine.
	shared := &node2{Name: "x"}
	inRequest(t, n, c, func(s *sessions.Session) {
		if err := s.Set("ok", []*node2{shared, shared}); err != nil {
			t.Errorf("a value referencing one pointer twice is not a cycle: %v", err)
		}
	})
}

func TestSetLimits(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{MaxSessionSize: 1000, MaxKeyLength: 8})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	inRequest(t, n, c, func(s *sessions.Session) {
		if err := s.Set("big", strings.Repeat("x", 2000)); !errors.Is(err, sessions.ErrSessionTooLarge) {
			t.Errorf("oversize Set: %v, want ErrSessionTooLarge", err)
		}
		if err := s.Set("muchtoolongkey", 1); !errors.Is(err, sessions.ErrInvalidKey) {
			t.Errorf("long key: %v, want ErrInvalidKey", err)
		}
		if err := s.Set("", 1); !errors.Is(err, sessions.ErrInvalidKey) {
			t.Errorf("empty key: %v, want ErrInvalidKey", err)
		}
		// Replacing a value counts the replacement, not both.
		for i := 0; i < 50; i++ {
			if err := s.Set("v", strings.Repeat("y", 500)); err != nil {
				t.Fatalf("replacing a 500-byte value: %v", err)
			}
		}
		if keys := strings.Join(s.Keys(), ","); keys != "a,v" {
			t.Errorf("keys %q, want a,v", keys)
		}
	})
}

func TestTypedGet(t *testing.T) {
	type cart struct {
		Items []string
		Total int
		When  time.Time
	}
	for _, codec := range []serializer.Codec{serializer.Msgpack, serializer.JSON, serializer.Gob} {
		t.Run(codec.Name(), func(t *testing.T) {
			b := newBackend(t)
			n1 := newNode(t, b, sessions.Config{Codec: codec})
			c := newClient(t)
			when := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			inRequest(t, n1, c, func(s *sessions.Session) {
				must(t, s.Set("cart", cart{Items: []string{"a", "b"}, Total: 7, When: when}))
				must(t, s.Set("n", 42))
			})
			n1.close(t)
			n2 := newNode(t, b, sessions.Config{Codec: codec})
			inRequest(t, n2, c, func(s *sessions.Session) {
				got, ok, err := sessions.Get[cart](s, "cart")
				if err != nil || !ok || got.Total != 7 || len(got.Items) != 2 || !got.When.Equal(when) {
					t.Errorf("Get[cart] after restart = %+v, %v, %v", got, ok, err)
				}
				i, ok, err := sessions.Get[int](s, "n")
				if err != nil || !ok || i != 42 {
					t.Errorf("Get[int] = %v, %v, %v; want 42 (no float64 surprise)", i, ok, err)
				}
				if _, ok, err := sessions.Get[int](s, "missing"); ok || err != nil {
					t.Errorf("missing key: ok=%v err=%v", ok, err)
				}
				if _, ok, err := sessions.Get[int](s, "cart"); !ok || err == nil {
					t.Errorf("wrong type: ok=%v err=%v; want present with an error", ok, err)
				}
			})
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Semantics, sticky mode.

func TestStickyReadIfMissingAfterRestart(t *testing.T) {
	b := newBackend(t)
	n1 := newNode(t, b, sessions.Config{})
	c := newClient(t)
	c.must(n1.h, "/set?k=a&v=1", 200)
	n1.close(t) // a restart: Close drains the write-behind queue
	n2 := newNode(t, b, sessions.Config{WriteBehind: time.Hour})
	if got := c.must(n2.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("after restart: %q, want 1", got)
	}
	// Now resident: an unchanged request does no storage I/O.
	b.fault.ResetCounts()
	c.must(n2.h, "/get?k=a", 200)
	sessions.Flush(n2.m) // writes whatever the request queued
	if g, w := b.fault.Gets.Load(), b.fault.Writes(); g != 0 || w != 0 {
		t.Fatalf("unchanged request on a resident session: %d reads, %d writes; want none", g, w)
	}
}

func TestStickyWriteBehindWithinWindowWithoutClose(t *testing.T) {
	b := newBackend(t)
	n1 := newNode(t, b, sessions.Config{WriteBehind: 50 * time.Millisecond})
	c := newClient(t)
	c.must(n1.h, "/set?k=a&v=1", 200)
	if b.has(c.cookie) {
		t.Fatal("sticky mode wrote synchronously; want write-behind")
	}
	poll.Eventually(t, 2*time.Second, "write-behind flushed", func() bool { return b.has(c.cookie) })
	// A second server (as after kill -9 of the first) reads it.
	n2 := newNode(t, b, sessions.Config{})
	if got := c.must(n2.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("other server: %q", got)
	}
}

func TestStickyWriteBehindCoalesces(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: time.Hour})
	c := newClient(t)
	c.must(n.h, "/incr?k=n", 200)
	sessions.Flush(n.m)
	if w := n.m.Stats().StorageWrites; w != 1 {
		t.Fatalf("first flush: %d writes, want 1", w)
	}
	b.fault.ResetCounts()
	// The changes of one write-behind window, then the window's flush.
	for i := 0; i < 1000; i++ {
		c.must(n.h, "/incr?k=n", 200)
	}
	if w := b.fault.Writes(); w != 0 {
		t.Fatalf("%d storage writes within the write-behind window, want none", w)
	}
	if p := n.m.Stats().PendingWrites; p != 1 {
		t.Fatalf("1000 changes of one session queued %d writes, want 1", p)
	}
	if failed := sessions.Flush(n.m); failed != 0 {
		t.Fatalf("%d writes failed", failed)
	}
	if w, p := b.fault.Writes(), n.m.Stats().PendingWrites; w != 1 || p != 0 {
		t.Fatalf("1000 changes in one window gave %d storage writes and left %d pending; want 1 and 0", w, p)
	}
	if v, _ := b.storedValue(t, c.cookie, "n"); v != "1001" {
		t.Fatalf("stored counter %q, want 1001", v)
	}
}

func TestIdleEvictionThenReload(t *testing.T) {
	b := newBackend(t)
	var ends atomic.Int32
	n := newNode(t, b, sessions.Config{IdleEvict: 40 * time.Millisecond, Timeout: time.Hour, WriteBehind: 10 * time.Millisecond,
		OnSessionEnd: func(*sessions.Session, sessions.EndReason) { ends.Add(1) }})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	poll.Eventually(t, 3*time.Second, "evicted", func() bool { return n.m.Stats().Evicted == 1 && n.m.Stats().Resident == 0 })
	if !b.has(c.cookie) || b.fault.Deletes.Load() != 0 {
		t.Fatal("idle eviction touched storage; it must leave the entry alone")
	}
	if ends.Load() != 0 {
		t.Fatal("idle eviction fired OnSessionEnd")
	}
	gets := b.fault.Gets.Load()
	if got := c.must(n.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("after eviction: %q", got)
	}
	if b.fault.Gets.Load() != gets+1 {
		t.Fatal("reload after eviction did not read storage once")
	}
}

func TestIdleEvictionFlushesDirtyFirst(t *testing.T) {
	b := newBackend(t)
	// The storage is down while the session goes idle: it must stay
	// resident until it is written.
	clk := newClock()
	n := newClockNode(t, b, sessions.Config{IdleEvict: time.Minute, Timeout: time.Hour, WriteBehind: time.Hour,
		StorageTimeout: 20 * time.Millisecond}, clk)
	c := newClient(t)
	b.fault.SetMode(faultstore.Fail)
	c.must(n.h, "/set?k=a&v=1", 200)
	clk.advance(2 * time.Minute)
	clk.tick(1, n) // idle, queued: kept
	if sessions.Flush(n.m) == 0 {
		t.Fatal("a write succeeded while storage fails")
	}
	clk.advance(2 * time.Minute)
	clk.tick(3, n) // idle, its write failed: kept
	if n.m.Stats().Resident != 1 {
		t.Fatal("a session with unsaved changes was evicted")
	}
	b.fault.SetMode(faultstore.Pass)
	if failed := sessions.Flush(n.m); failed != 0 {
		t.Fatalf("%d writes failed after recovery", failed)
	}
	clk.tick(1, n)
	if r := n.m.Stats().Resident; r != 0 {
		t.Fatalf("%d sessions resident after they were written and a sweep ran, want 0", r)
	}
	if v, _ := b.storedValue(t, c.cookie, "a"); v != "1" {
		t.Fatalf("stored %q after eviction, want 1", v)
	}
}

func TestTimeoutEndsResidentSession(t *testing.T) {
	b := newBackend(t)
	type end struct {
		id, a  string
		reason sessions.EndReason
	}
	ends := make(chan end, 10)
	clk := newClock()
	const timeout = time.Hour
	n := newClockNode(t, b, sessions.Config{Timeout: timeout, IdleEvict: -1, WriteBehind: time.Hour,
		OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
			a, _, _ := sessions.Get[string](s, "a")
			ends <- end{s.ID(), a, r}
		}}, clk)
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	id := c.cookie
	sessions.Flush(n.m)
	if !b.has(id) {
		t.Fatal("not stored")
	}
	clk.advance(timeout - time.Second)
	clk.tick(1, n)
	if len(ends) != 0 {
		t.Fatal("OnSessionEnd fired before the deadline")
	}
	clk.advance(2 * time.Second)
	clk.tick(1, n)
	select {
	case e := <-ends:
		if e.id != id || e.a != "1" || e.reason != sessions.EndTimeout {
			t.Fatalf("OnSessionEnd(%+v), want id %s, a=1, timeout", e, id)
		}
	default:
		t.Fatal("OnSessionEnd did not fire at the first sweep past the deadline")
	}
	if b.has(id) { // the end is claimed from storage (CompareAndDelete) before it fires
		t.Fatal("not removed from storage")
	}
	clk.advance(timeout)
	clk.tick(3, n)
	if len(ends) != 0 {
		t.Fatalf("OnSessionEnd fired %d more times", len(ends))
	}
	if n.m.Stats().Resident != 0 {
		t.Fatal("ended session still resident")
	}
	c.must(n.h, "/get?k=a", http.StatusNotFound)
}

func TestTimeoutInStorageFiresOnceAcrossServers(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			b := newBackend(t)
			clk := newClock()
			var ends atomic.Int32
			var gotValue atomic.Value
			const timeout = time.Hour
			cfg := sessions.Config{Cluster: cluster, Timeout: timeout, IdleEvict: time.Minute, WriteBehind: time.Hour,
				OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
					if r == sessions.EndTimeout {
						v, _, _ := sessions.Get[string](s, "a")
						gotValue.Store(v)
					}
					ends.Add(1)
				}}
			n1, n2 := newClockNode(t, b, cfg, clk), newClockNode(t, b, cfg, clk)
			c := newClient(t)
			c.must(n1.h, "/set?k=a&v=1", 200)
			sessions.Flush(n1.m)
			if !b.has(c.cookie) {
				t.Fatal("not stored")
			}
			c.must(n2.h, "/get?k=a", 200)
			clk.advance(2 * time.Minute)
			clk.tick(1, n1, n2) // idle: evicted from both memories, left in storage
			if r1, r2 := n1.m.Stats().Resident, n2.m.Stats().Resident; r1 != 0 || r2 != 0 || ends.Load() != 0 {
				t.Fatalf("after IdleEvict: %d and %d resident, %d ends; want none", r1, r2, ends.Load())
			}
			clk.advance(timeout + timeout/2) // past the deadline and the claims' slack (Timeout/4 at most)
			clk.tick(3, n1, n2)              // both servers' sweeps claim it, concurrently
			if got := ends.Load(); got != 1 {
				t.Fatalf("OnSessionEnd fired %d times over two servers, want 1", got)
			}
			if v, _ := gotValue.Load().(string); v != "1" {
				t.Fatalf("ended session's value %q, want 1", v)
			}
			if b.entries() != 0 {
				t.Fatal("storage still holds the ended session")
			}
		})
	}
}

func TestActiveSessionOutlivesTimeout(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		clk := newClock()
		var ends atomic.Int32
		const timeout, step, span = 10 * time.Minute, 45 * time.Second, 35 * time.Minute
		n := newClockNode(t, b, sessions.Config{Cluster: cluster, Timeout: timeout, IdleEvict: timeout / 4, WriteBehind: time.Hour,
			OnSessionEnd: func(*sessions.Session, sessions.EndReason) { ends.Add(1) }}, clk)
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		sessions.Flush(n.m)
		// A request every step for span (3.5 × Timeout); the sweeper
		// runs after each, and the write-behind window ends.
		for elapsed := time.Duration(0); elapsed < span; elapsed += step {
			clk.advance(step)
			if got := c.must(n.h, "/get?k=a", 200); got != "1" {
				t.Fatalf("cluster=%v: active session lost its data", cluster)
			}
			sessions.Flush(n.m)
			clk.tick(1, n)
		}
		// Unchanged requests refreshed the stored deadline (a touch at most
		// every Timeout/10), so no sweep claimed the stored copy.
		if !b.has(c.cookie) || ends.Load() != 0 {
			t.Fatalf("cluster=%v: an active session expired (stored: %v, %d ends)", cluster, b.has(c.cookie), ends.Load())
		}
		if w := n.m.Stats().StorageWrites; w > uint64(1+span/(timeout/10)+2) {
			t.Fatalf("cluster=%v: %d storage writes for unchanged requests; touches must be throttled to Timeout/10", cluster, w)
		}
	}
}

func TestRenewLeavesNoEntryUnderOldID(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: 10 * time.Millisecond})
		c := newClient(t)
		c.must(n.h, "/set?k=a&v=1", 200)
		old := c.cookie
		poll.Eventually(t, time.Second, "stored", func() bool { return b.has(old) })
		c.must(n.h, "/renew", 200)
		if c.cookie == old || c.cookie == "" {
			t.Fatalf("cluster=%v: Renew did not send a new cookie", cluster)
		}
		if got := c.must(n.h, "/get?k=a", 200); got != "1" {
			t.Fatalf("cluster=%v: data lost by Renew", cluster)
		}
		poll.Eventually(t, time.Second, "old entry gone, new one present", func() bool { return !b.has(old) && b.has(c.cookie) })
		stale := &client{t: t, name: "session", cookie: old}
		stale.must(n.h, "/get?k=a", http.StatusNotFound)
	}
}

func TestInvalidateRemovesEverywhere(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		var reasons []sessions.EndReason
		var mu sync.Mutex
		cfg := sessions.Config{Cluster: cluster, WriteBehind: 10 * time.Millisecond,
			OnSessionEnd: func(s *sessions.Session, r sessions.EndReason) {
				mu.Lock()
				reasons = append(reasons, r)
				mu.Unlock()
			}}
		n1, n2 := newNode(t, b, cfg), newNode(t, b, cfg)
		c := newClient(t)
		c.must(n1.h, "/set?k=a&v=1", 200)
		id := c.cookie
		poll.Eventually(t, time.Second, "stored", func() bool { return b.has(id) })
		c.must(n2.h, "/get?k=a", 200) // resident on both servers
		c.must(n1.h, "/invalidate", 200)
		if c.cookie != "" {
			t.Fatalf("cluster=%v: cookie not deleted", cluster)
		}
		poll.Eventually(t, time.Second, "removed from storage", func() bool { return !b.has(id) })
		stale := &client{t: t, name: "session", cookie: id}
		stale.must(n1.h, "/get?k=a", http.StatusNotFound)
		if cluster {
			stale.must(n2.h, "/get?k=a", http.StatusNotFound)
		}
		mu.Lock()
		if len(reasons) != 1 || reasons[0] != sessions.EndInvalidated {
			t.Fatalf("cluster=%v: OnSessionEnd reasons %v, want [invalidated]", cluster, reasons)
		}
		mu.Unlock()
	}
}

func TestInvalidateThenSetStartsNewSession(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)
	old := c.cookie
	inRequest(t, n, c, func(s *sessions.Session) {
		must(t, s.Invalidate())
		if s.ID() != "" || len(s.Keys()) != 0 {
			t.Fatal("invalidated session not empty")
		}
		must(t, s.Set("guest", "yes"))
	})
	if c.cookie == "" || c.cookie == old {
		t.Fatal("want a new session with a new ID")
	}
	c.must(n.h, "/get?k=a", http.StatusNotFound)
	c.must(n.h, "/get?k=guest", 200)
}

// Semantics, cluster mode.

func TestClusterSeesOtherServersWriteOnNextRequest(t *testing.T) {
	b := newBackend(t)
	n1, n2 := newNode(t, b, sessions.Config{Cluster: true}), newNode(t, b, sessions.Config{Cluster: true})
	c := newClient(t)
	c.must(n1.h, "/set?k=a&v=1", 200)
	if got := c.must(n2.h, "/get?k=a", 200); got != "1" {
		t.Fatalf("n2 sees %q", got)
	}
	c.must(n2.h, "/set?k=a&v=2", 200)
	if got := c.must(n1.h, "/get?k=a", 200); got != "2" {
		t.Fatalf("n1 (which has an older copy in memory) sees %q, want 2", got)
	}
	c.must(n1.h, "/del?k=a", 200)
	c.must(n2.h, "/get?k=a", http.StatusNotFound)
	// An unchanged request: one read, no write.
	b.fault.ResetCounts()
	c.must(n2.h, "/keys", 200)
	if g, w := b.fault.Gets.Load(), b.fault.Writes(); g != 1 || w != 0 {
		t.Fatalf("unchanged cluster request: %d reads, %d writes; want 1 and 0", g, w)
	}
}

func TestClusterCommitsBeforeResponse(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{Cluster: true})
	release := make(chan struct{})
	srv := httptest.NewServer(n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		must(t, sessions.FromContext(r.Context()).Set("cart", "full"))
		http.Redirect(w, r, "/next", http.StatusSeeOther)
		w.(http.Flusher).Flush()
		<-release // the handler is still running while the client reads the status
	})))
	defer srv.Close()
	defer close(release)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var id string
	for _, ck := range resp.Cookies() {
		id = ck.Value
	}
	if v, ok := b.storedValue(t, id, "cart"); !ok || v != "full" {
		t.Fatal("the client read the redirect before the session was in storage")
	}
}

func TestClusterRedirectToOtherServer(t *testing.T) {
	b := newBackend(t)
	n1, n2 := newNode(t, b, sessions.Config{Cluster: true}), newNode(t, b, sessions.Config{Cluster: true})
	c := newClient(t)
	c.must(n1.h, "/redirect?k=msg&v=saved", http.StatusSeeOther)
	if got := c.must(n2.h, "/get?k=msg", 200); got != "saved" {
		t.Fatalf("after redirect to the other server: %q", got)
	}
}

// holdApp sets k=v, then waits for release before returning, so that the
// test can interleave two requests' loads and commits.
func holdApp(loaded chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		loaded <- struct{}{}
		<-release
		if err := s.Set(r.FormValue("k"), r.FormValue("v")); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
}

func TestClusterConcurrentServersNoLostUpdate(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plainStore=%v", plain), func(t *testing.T) {
			b := newBackend(t)
			var st store.StoreInterface = b.fault
			if plain {
				st = b.fault.Plain()
			}
			cfg := sessions.Config{Cluster: true, Store: st}
			n1, n2 := newNode(t, b, cfg), newNode(t, b, cfg)
			c := newClient(t)
			c.must(n1.h, "/set?k=base&v=0", 200)

			run := func(n *node, k, v string) (release chan struct{}, done chan int) {
				loaded, release, done := make(chan struct{}), make(chan struct{}), make(chan int)
				h := n.m.Handler(holdApp(loaded, release))
				go func() {
					code, _ := (&client{t: t, name: "session", cookie: c.cookie}).do(h, "/?k="+k+"&v="+v)
					done <- code
				}()
				<-loaded
				return release, done
			}
			// Different keys: both survive.
			r1, d1 := run(n1, "x", "1")
			r2, d2 := run(n2, "y", "2")
			close(r1)
			<-d1
			close(r2)
			<-d2
			if got := c.must(n1.h, "/keys", 200); got != "base,x,y" {
				t.Fatalf("keys after concurrent writes on two servers: %q, want base,x,y", got)
			}
			// Same key: the last write wins.
			r1, d1 = run(n1, "z", "first")
			r2, d2 = run(n2, "z", "second")
			close(r1)
			<-d1
			close(r2)
			<-d2
			if got := c.must(n1.h, "/get?k=z", 200); got != "second" {
				t.Fatalf("same key: %q, want the later write", got)
			}
		})
	}
}

func TestClusterLogoutIsNeverUndoneByLateWrite(t *testing.T) {
	b := newBackend(t)
	cfg := sessions.Config{Cluster: true}
	n1, n2 := newNode(t, b, cfg), newNode(t, b, cfg)
	c := newClient(t)
	c.must(n1.h, "/set?k=user&v=alice", 200)
	id := c.cookie
	// A slow request on n2 loaded the session before the logout...
	loaded, release, done := make(chan struct{}), make(chan struct{}), make(chan *client)
	h := n2.m.Handler(holdApp(loaded, release))
	go func() {
		late := &client{t: t, name: "session", cookie: id}
		late.do(h, "/?k=cart&v=full")
		done <- late
	}()
	<-loaded
	c.must(n1.h, "/invalidate", 200)
	// ...and writes after it.
	close(release)
	late := <-done
	if b.has(id) {
		t.Fatal("a late write resurrected an invalidated session")
	}
	if late.cookie != id {
		t.Fatal("the late request changed the cookie; only the request that logged out may")
	}
	(&client{t: t, name: "session", cookie: id}).must(n2.h, "/get?k=user", http.StatusNotFound)
}

func TestManyGoroutinesOneSession(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			b := newBackend(t)
			n := newNode(t, b, sessions.Config{Cluster: cluster, WriteBehind: time.Millisecond})
			c := newClient(t)
			c.must(n.h, "/set?k=start&v=1", 200)
			const workers, rounds = 16, 50
			var wg sync.WaitGroup
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					me := &client{t: t, name: "session", cookie: c.cookie}
					for i := 0; i < rounds; i++ {
						me.do(n.h, "/incr?k=c"+strconv.Itoa(g))
						me.do(n.h, "/keys")
						me.do(n.h, "/get?k=start")
					}
				}()
			}
			wg.Wait()
			for g := 0; g < workers; g++ {
				inRequest(t, n, c, func(s *sessions.Session) {
					v, _, err := sessions.Get[int](s, "c"+strconv.Itoa(g))
					if err != nil || v != rounds {
						t.Errorf("counter %d = %d (%v), want %d", g, v, err, rounds)
					}
				})
			}
		})
	}
}

func TestNoCookieWarningWhenCookieWasSent(t *testing.T) {
	n := newNode(t, newBackend(t), sessions.Config{})
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200) // writes its body after Set: the cookie goes out
	if strings.Contains(n.logs.String(), "did not get its cookie") {
		t.Fatalf("false warning:\n%s", n.logs)
	}
	// A session created after the header went out does deserve it.
	late := n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		sessions.FromContext(r.Context()).Set("late", 1)
	}))
	newClient(t).do(late, "/")
	if !strings.Contains(n.logs.String(), "did not get its cookie") {
		t.Fatalf("no warning for a session created after the header:\n%s", n.logs)
	}
}

func TestTypedGetAsAnyAfterReload(t *testing.T) {
	b := newBackend(t)
	n1 := newNode(t, b, sessions.Config{})
	c := newClient(t)
	c.must(n1.h, "/set?k=a&v=hello", 200)
	n1.close(t)
	n2 := newNode(t, b, sessions.Config{})
	inRequest(t, n2, c, func(s *sessions.Session) {
		v, ok, err := sessions.Get[any](s, "a")
		if err != nil || !ok || v != "hello" {
			t.Fatalf("Get[any] after reload = %#v, %v, %v; want \"hello\"", v, ok, err)
		}
	})
}

func TestStickyFlushWritesManySessionsPerCall(t *testing.T) {
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{WriteBehind: 50 * time.Millisecond})
	clients := make([]*client, 300)
	for i := range clients {
		clients[i] = newClient(t)
		clients[i].must(n.h, "/set?k=a&v="+strconv.Itoa(i), 200)
	}
	poll.Eventually(t, 2*time.Second, "all flushed", func() bool { return n.m.Stats().PendingWrites == 0 && b.fault.Writes() >= 300 })
	// 300 sessions in one window: a couple of batch calls (compare-and-swap
	// batches, the store having both), not 300 writes.
	if calls := b.fault.Batches.Load(); calls < 1 || calls > 6 {
		t.Fatalf("300 queued sessions took %d batch calls; want a few", calls)
	}
	// A store with SetMany but no compare-and-swap gets SetMany.
	b2 := newBackend(t)
	n2 := newNode(t, b2, sessions.Config{WriteBehind: 50 * time.Millisecond, Store: setManyOnly{b2.fault.Plain(), b2.fault}})
	for i := 0; i < 300; i++ {
		newClient(t).must(n2.h, "/set?k=a&v=1", 200)
	}
	poll.Eventually(t, 2*time.Second, "all flushed", func() bool { return n2.m.Stats().PendingWrites == 0 && b2.fault.Sets.Load() >= 300 })
	if calls := b2.fault.Batches.Load(); calls < 1 || calls > 6 {
		t.Fatalf("300 queued sessions took %d SetMany calls; want a few", calls)
	}
	for i, c := range clients {
		if v, _ := b.storedValue(t, c.cookie, "a"); v != strconv.Itoa(i) {
			t.Fatalf("session %d stored a=%q", i, v)
		}
	}
}

// setManyOnly is a store with SetMany but no compare-and-swap: the
// faultstore's plain view plus its SetMany.
type setManyOnly struct {
	store.StoreInterface
	f *faultstore.Store
}

func (s setManyOnly) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	return s.f.SetMany(ctx, keys, values, ttl)
}
