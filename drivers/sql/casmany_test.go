package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func casMany(t *testing.T, s *Store, keys []string, olds, values [][]byte, ttl time.Duration) []bool {
	t.Helper()
	swapped, err := s.CompareAndSwapMany(context.Background(), keys, olds, values, ttl)
	if err != nil {
		t.Fatalf("CompareAndSwapMany of %d entries: %v", len(keys), err)
	}
	if len(swapped) != len(keys) {
		t.Fatalf("CompareAndSwapMany of %d entries reported %d outcomes", len(keys), len(swapped))
	}
	return swapped
}

// testCASManySemantics: expired rows count as absent, nil and empty olds
// differ, TTLs, repeated keys, errors.
func testCASManySemantics(t *testing.T, b backend) {
	s, table := b.open(t, "sweep=off")
	ctx := context.Background()
	if b.dialect == SQLite && !s.sqliteReturning {
		t.Fatal("the linked SQLite is older than 3.35: the batched statements are not tested")
	}
	if got := casMany(t, s, nil, nil, nil, 0); len(got) != 0 {
		t.Fatalf("empty batch: %v", got)
	}

	mustSet(t, s, "x:expired-nil", []byte("stale"), store.WithExpiration(20*time.Millisecond))
	mustSet(t, s, "x:expired-old", []byte("stale"), store.WithExpiration(20*time.Millisecond))
	mustSet(t, s, "x:empty-nil", []byte{})
	mustSet(t, s, "x:empty-empty", []byte{})
	mustSet(t, s, "x:empty-other", []byte{})
	mustSet(t, s, "x:live-nil", []byte("live"))
	mustSet(t, s, "x:live-right", []byte("live"), store.WithExpiration(time.Hour))
	mustSet(t, s, "x:live-wrong", []byte("live"))
	mustSet(t, s, "x:nil-value", []byte("live"))
	time.Sleep(40 * time.Millisecond)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		keys []string
		olds [][]byte
		want []bool
	}{
		{"expired and absent", time.Hour,
			[]string{"x:expired-nil", "x:expired-old", "x:absent-nil", "x:absent-empty", "x:absent-old"},
			[][]byte{nil, []byte("stale"), nil, {}, []byte("x")},
			[]bool{true, false, true, false, false}},
		{"empty and nil olds", 0,
			[]string{"x:empty-nil", "x:empty-empty", "x:empty-other", "x:live-nil", "x:live-right", "x:live-wrong"},
			[][]byte{nil, {}, []byte("x"), nil, []byte("live"), []byte("liv")},
			[]bool{false, true, false, false, true, false}},
	} {
		values := make([][]byte, len(tc.keys))
		for i, k := range tc.keys {
			values[i] = []byte("new " + k)
		}
		got := casMany(t, s, tc.keys, tc.olds, values, tc.ttl)
		for i, k := range tc.keys {
			if got[i] != tc.want[i] {
				t.Errorf("%s: %s swapped = %v, want %v", tc.name, k, got[i], tc.want[i])
			}
			v, ttl, err := s.GetWithTTL(ctx, k)
			switch {
			case tc.want[i] && (err != nil || !bytes.Equal(v.([]byte), values[i])):
				t.Errorf("%s: %s = %v, %v after a swap", tc.name, k, v, err)
			case tc.want[i] && tc.ttl == 0 && ttl != 0, tc.want[i] && tc.ttl != 0 && (ttl <= tc.ttl-time.Minute || ttl > tc.ttl):
				t.Errorf("%s: %s has ttl %v, want %v", tc.name, k, ttl, tc.ttl)
			case !tc.want[i] && err == nil && bytes.HasPrefix(v.([]byte), []byte("new")):
				t.Errorf("%s: %s written though not swapped", tc.name, k)
			}
		}
	}
	// An entry that lost is not written: the expired row is still there,
	// still expired.
	wantNotFound(t, s, "x:absent-old")
	// A nil value is stored as empty.
	if got := casMany(t, s, []string{"x:nil-value", "x:nil-new"}, [][]byte{[]byte("live"), nil}, [][]byte{nil, nil}, 0); !got[0] || !got[1] {
		t.Fatalf("nil values: %v", got)
	}
	wantEntries(t, s, []string{"x:nil-value", "x:nil-new"}, [][]byte{{}, {}}, 0)

	// A key given more than once: as single calls in order.
	got := casMany(t, s,
		[]string{"d:a", "d:b", "d:a", "d:a", "d:b"},
		[][]byte{nil, []byte("x"), []byte("a1"), nil, nil},
		[][]byte{[]byte("a1"), []byte("b1"), []byte("a2"), []byte("a3"), []byte("b2")}, 0)
	if want := []bool{true, false, true, false, true}; !equalBools(got, want) {
		t.Fatalf("repeated keys: %v, want %v", got, want)
	}
	wantEntries(t, s, []string{"d:a", "d:b"}, [][]byte{[]byte("a2"), []byte("b2")}, 0)

	// Errors: no outcome, nothing stored.
	before := rows(t, s, table)
	for name, call := range map[string]func() ([]bool, error){
		"mismatched olds": func() ([]bool, error) {
			return s.CompareAndSwapMany(ctx, []string{"e:1", "e:2"}, [][]byte{nil}, [][]byte{nil, nil}, 0)
		},
		"mismatched values": func() ([]bool, error) {
			return s.CompareAndSwapMany(ctx, []string{"e:1"}, [][]byte{nil}, nil, 0)
		},
		"bad key": func() ([]bool, error) {
			return s.CompareAndSwapMany(ctx, []string{"e:1", "bad\xff"}, [][]byte{nil, nil}, [][]byte{nil, nil}, 0)
		},
		"empty key": func() ([]bool, error) {
			return s.CompareAndSwapMany(ctx, []string{"e:1", ""}, [][]byte{nil, nil}, [][]byte{nil, nil}, 0)
		},
		"negative ttl": func() ([]bool, error) {
			return s.CompareAndSwapMany(ctx, []string{"e:1"}, [][]byte{nil}, [][]byte{nil}, -time.Second)
		},
	} {
		if got, err := call(); err == nil || got != nil || !strings.HasPrefix(err.Error(), "sqlstore: ") {
			t.Errorf("%s: %v, %v; want nil and an error", name, got, err)
		}
	}
	if n := rows(t, s, table); n != before {
		t.Fatalf("failed calls changed the row count: %d -> %d", before, n)
	}
	_ = s.Close()
	if got, err := s.CompareAndSwapMany(ctx, []string{"e:1"}, [][]byte{nil}, [][]byte{nil}, 0); got != nil || !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, %v", got, err)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// casOps builds n compare-and-swaps over keys prefix+NNNNN (not in key
// order) and the state before them: a mix of winners and losers of every
// kind. Call setup(s) to create that state.
func casOps(prefix string, n, valueSize int) (keys []string, olds, values [][]byte, setup func(t *testing.T, s *Store)) {
	keys = make([]string, n)
	olds, values = make([][]byte, n), make([][]byte, n)
	type pre struct {
		key   string
		value []byte
		ttl   time.Duration
	}
	var pres []pre
	for i := range n {
		j := (i * 7919) % n
		k := fmt.Sprintf("%s%05d", prefix, j)
		cur := fmt.Appendf(bytes.Repeat([]byte{byte(j)}, (j*13)%valueSize), "cur%d", j)
		keys[i], values[i] = k, fmt.Appendf(bytes.Repeat([]byte{byte(j + 1)}, (j*17)%valueSize), "new%d", j)
		switch j % 10 {
		case 0: // present, right old
			pres, olds[i] = append(pres, pre{k, cur, 0}), cur
		case 1: // present, wrong old
			pres, olds[i] = append(pres, pre{k, cur, 0}), append(cur[:len(cur):len(cur)], 'x')
		case 2: // present, "only if absent"
			pres = append(pres, pre{k, cur, 0})
		case 3: // absent, "only if absent"
		case 4: // absent, old given
			olds[i] = cur
		case 5: // expired, "only if absent"
			pres = append(pres, pre{k, cur, time.Millisecond})
		case 6: // expired, old given
			pres, olds[i] = append(pres, pre{k, cur, time.Millisecond}), cur
		case 7: // empty, empty old
			pres, olds[i] = append(pres, pre{k, []byte{}, 0}), []byte{}
		case 8: // empty, "only if absent"
			pres = append(pres, pre{k, []byte{}, 0})
		case 9: // present with a TTL, right old
			pres, olds[i] = append(pres, pre{k, cur, time.Hour}), cur
		}
	}
	setup = func(t *testing.T, s *Store) {
		t.Helper()
		for _, p := range pres {
			var opts []store.Option
			if p.ttl > 0 {
				opts = append(opts, store.WithExpiration(p.ttl))
			}
			mustSet(t, s, p.key, p.value, opts...)
		}
		time.Sleep(5 * time.Millisecond) // the 1 ms entries expire
	}
	return keys, olds, values, setup
}

// crossCheck runs the operations as one CompareAndSwapMany on one table
// and as single CompareAndSwap calls on another, from the same state, and
// compares outcomes and contents.
func crossCheck(t *testing.T, batch, single *Store, n, valueSize int, ttl time.Duration) {
	t.Helper()
	keys, olds, values, setup := casOps("c:", n, valueSize)
	setup(t, batch)
	setup(t, single)
	swapped := casMany(t, batch, keys, olds, values, ttl)
	ctx := context.Background()
	wins := 0
	for i, k := range keys {
		want, err := single.CompareAndSwap(ctx, k, olds[i], values[i], ttl)
		if err != nil {
			t.Fatal(err)
		}
		if swapped[i] != want {
			t.Errorf("%s (case %d): CompareAndSwapMany %v, CompareAndSwap %v", k, i*7919%n%10, swapped[i], want)
		}
		if want {
			wins++
		}
		bv, bttl, berr := batch.GetWithTTL(ctx, k)
		sv, sttl, serr := single.GetWithTTL(ctx, k)
		if (berr == nil) != (serr == nil) || berr == nil && !bytes.Equal(bv.([]byte), sv.([]byte)) {
			t.Errorf("%s: after the batch %v (%v), after single calls %v (%v)", k, bv, berr, sv, serr)
		}
		if (bttl == 0) != (sttl == 0) || (bttl-sttl).Abs() > time.Minute {
			t.Errorf("%s: ttl after the batch %v, after single calls %v", k, bttl, sttl)
		}
	}
	if wins == 0 || wins == n {
		t.Fatalf("%d of %d entries won: want a mix", wins, n)
	}
}

// testCASManyCrossCheck: 1,000 entries (several chunks) and sizes around
// the chunk bounds and PostgreSQL's padding agree with single calls.
func testCASManyCrossCheck(t *testing.T, b backend) {
	for _, n := range []int{1000, 2, 255, 256, 257, 332, 333, 512, 513} {
		batch, _ := b.open(t, "sweep=off")
		single, _ := b.open(t, "sweep=off")
		crossCheck(t, batch, single, n, 700, time.Hour)
		if t.Failed() {
			t.Fatalf("with %d entries", n)
		}
	}
	// Chunks cut by size: 40 entries of up to 100 KiB.
	batch, _ := b.open(t, "sweep=off")
	single, _ := b.open(t, "sweep=off")
	crossCheck(t, batch, single, 40, 100<<10, 0)
}

// testCASManyPerEntry: the path of SQLite older than 3.35 (single calls)
// agrees too.
func testCASManyPerEntry(t *testing.T, b backend) {
	batch, _ := b.open(t, "sweep=off")
	single, _ := b.open(t, "sweep=off")
	batch.sqliteReturning = false
	crossCheck(t, batch, single, 100, 300, time.Hour)
}

// testCASManyCancel: a cancelled context fails the call with no outcome
// and changes nothing, before it starts and while it waits for a lock.
func testCASManyCancel(t *testing.T, b backend) {
	// SQLite waits for a lock in its busy handler, which ignores the
	// context: there the call fails when busy_timeout ends.
	s, _ := b.open(t, "sweep=off")
	if b.dialect == SQLite {
		s, _ = b.open(t, "sweep=off&busy_timeout=300ms")
	}
	keys, olds, values, setup := casOps("k:", 300, 100)
	setup(t, s)
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if v, err := s.Get(context.Background(), k); err == nil {
				m[k] = string(v.([]byte))
			}
		}
		return m
	}
	before := snapshot()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := s.CompareAndSwapMany(ctx, keys, olds, values, 0); got != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v, %v", got, err)
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a call with a cancelled context changed entries")
	}
	if strings.Contains(b.url, ":memory:") {
		return // one connection: no other can hold a lock
	}
	// Another connection holds a lock the batch needs: cancel while it
	// waits.
	tx, err := s.DB().BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	lock := fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = 'k:00000'", s.q.table, s.dialect.quote("expires_at"), s.dialect.quote("expires_at"), s.dialect.quote("key"))
	if _, err := tx.Exec(lock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		got, err := s.CompareAndSwapMany(ctx, keys, olds, values, 0)
		if got != nil {
			err = fmt.Errorf("outcomes %v reported with error %v", got, err)
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the lock (not an assertion)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a call cancelled while waiting for a lock succeeded")
	} else if b.dialect == SQLite && !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Fatalf("waiting for a lock: %v", err)
	} else if b.dialect != SQLite && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "cancel") {
		t.Fatalf("cancelled while waiting for a lock: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a call cancelled while waiting for a lock changed entries")
	}
	// Afterwards the store works.
	single, _ := b.open(t, "sweep=off")
	crossCheck(t, s, single, 50, 100, 0)
}

// testCASManyRace: workers race with batches over the same keys and the
// same expected values: of each key exactly one wins, and the stored
// value is the winner's. Rounds race for absent, expired and present
// keys; the batches list the keys in different orders.
func testCASManyRace(t *testing.T, b backend) {
	s, _ := b.open(t, "sweep=off")
	ctx := context.Background()
	const workers, n, rounds = 4, 40, 6
	keys := make([]string, n)
	cur := make([][]byte, n) // nil: absent or expired
	for i := range keys {
		keys[i] = fmt.Sprintf("r:%03d", i)
	}
	for round := range rounds {
		if round%3 == 1 { // expired
			for i, k := range keys {
				mustSet(t, s, k, []byte("stale"), store.WithExpiration(time.Millisecond))
				cur[i] = nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		results := make([][]bool, workers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ks := make([]string, n)
				olds, values := make([][]byte, n), make([][]byte, n)
				for j := range n {
					i := (j*(w+1)*7 + w) % n // each worker its own order
					if w%2 == 1 {
						i = n - 1 - j
					}
					ks[j], olds[j], values[j] = keys[i], cur[i], fmt.Appendf(nil, "r%d-w%d-%s", round, w, keys[i])
				}
				<-start
				got, err := s.CompareAndSwapMany(ctx, ks, olds, values, time.Hour)
				if err != nil {
					t.Errorf("round %d worker %d: %v", round, w, err)
					return
				}
				res := make([]bool, n)
				for j, k := range ks {
					var i int
					fmt.Sscanf(k, "r:%03d", &i)
					res[i] = got[j]
				}
				results[w] = res
			}()
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		for i, k := range keys {
			winner := -1
			for w := range workers {
				if results[w][i] {
					if winner >= 0 {
						t.Fatalf("round %d: %s won by workers %d and %d", round, k, winner, w)
					}
					winner = w
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody won %s", round, k)
			}
			cur[i] = fmt.Appendf(nil, "r%d-w%d-%s", round, winner, k)
			if got := mustGet(t, s, k); !bytes.Equal(got, cur[i]) {
				t.Fatalf("round %d: %s holds %q, the winner wrote %q", round, k, got, cur[i])
			}
		}
	}
}

// TestMariaDBCASManyInsertedMeanwhile: keys absent when the batch locked
// its rows but inserted by another writer before its INSERT are taken
// one by one: a live one is lost, an expired one taken over, and the
// other absent keys are still inserted.
func TestMariaDBCASManyInsertedMeanwhile(t *testing.T) {
	srv := testservers.SharedMariaDB(t)
	s, table := backend{dialect: MySQL, url: srv.URL(), schema: srv.DB()}.open(t, "sweep=off")
	ctx := context.Background()
	testHookMySQLLocked = func() {
		testHookMySQLLocked = nil
		// Another connection, autocommit: the batch holds no lock on
		// absent keys.
		for _, row := range []struct {
			key string
			exp int64
		}{{"m:live", nowMS() + 3600_000}, {"m:expired", nowMS() - 1}} {
			if _, err := s.DB().ExecContext(ctx, "INSERT INTO "+table+" (`key`, `value`, `expires_at`) VALUES (?, 'other', ?)", row.key, row.exp); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { testHookMySQLLocked = nil })
	keys := []string{"m:a", "m:expired", "m:live", "m:z"}
	values := [][]byte{[]byte("a"), []byte("e"), []byte("l"), []byte("z")}
	got := casMany(t, s, keys, make([][]byte, len(keys)), values, 0)
	if want := []bool{true, true, false, true}; !equalBools(got, want) {
		t.Fatalf("swapped %v, want %v", got, want)
	}
	wantEntries(t, s, []string{"m:a", "m:expired", "m:z"}, [][]byte{[]byte("a"), []byte("e"), []byte("z")}, 0)
	if got := mustGet(t, s, "m:live"); string(got) != "other" {
		t.Fatalf("the live row inserted meanwhile was overwritten: %q", got)
	}
}
