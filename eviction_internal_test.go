package sessions

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/poll"
)

// newSweepTestManager returns a Manager whose own sweeper never finds
// anything idle (its clock stays at start) and a way to file stored,
// clean, idle sessions straight into its memory tier. Its sweeper still
// ticks, every 30 s (IdleEvict/4, at most 30 s), and may rebuild a map
// (shrink): a test that runs longer (a loaded machine) may see that.
func newSweepTestManager(t *testing.T) (m *Manager, start time.Time, add func(n int) []string) {
	t.Helper()
	start = time.Now()
	m, err := newManager(Config{IdleEvict: 4 * time.Minute, Timeout: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func() time.Time { return start })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	next := 0
	add = func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			next++
			st := &state{m: m, id: "s" + strconv.Itoa(next)}
			st.ready.Store(true)
			st.storedAccess.Store(start.UnixMilli())
			st.lastAccess.Store(start.UnixNano())
			m.ram.insert(st.id, st)
			ids[i] = st.id
		}
		return ids
	}
	return m, start, add
}

// After a mass eviction each shard's map is rebuilt to its new size (a Go
// map never gives memory back); a shard that kept over 1/shrinkRatio of
// its peak keeps its map.
func TestSweepRebuildsShrunkMaps(t *testing.T) {
	m, start, add := newSweepTestManager(t)
	add(ramShards * shrinkMin * 3 / 2)
	for i := range m.ram.shards {
		if sh := &m.ram.shards[i]; sh.peak < shrinkMin {
			t.Skipf("shard %d peaked at %d entries, under shrinkMin", i, sh.peak)
		}
	}
	m.sweep(start.Add(5 * time.Minute))
	for i := range m.ram.shards {
		if sh := &m.ram.shards[i]; len(sh.m) != 0 || sh.peak != 0 {
			t.Fatalf("shard %d after evicting everything: %d entries, peak %d; want a rebuilt, empty map", i, len(sh.m), sh.peak)
		}
	}
	if got := m.Stats().Evicted; got != ramShards*shrinkMin*3/2 {
		t.Fatalf("evicted %d", got)
	}

	// Half of the sessions stay (used later): no rebuild.
	add(ramShards * shrinkMin * 3 / 2)
	later := start.Add(6 * time.Minute)
	for i := range m.ram.shards {
		sh := &m.ram.shards[i]
		n := 0
		for _, st := range sh.m {
			if n++; n%2 == 0 {
				st.lastAccess.Store(later.UnixNano())
			}
		}
	}
	peaks := make([]int, ramShards)
	for i := range m.ram.shards {
		peaks[i] = m.ram.shards[i].peak
	}
	m.sweep(later.Add(-30 * time.Second))
	for i := range m.ram.shards {
		if sh := &m.ram.shards[i]; sh.peak != peaks[i] || len(sh.m) != peaks[i]/2 {
			t.Fatalf("shard %d kept %d of %d entries, peak now %d; want half kept and the map not rebuilt",
				i, len(sh.m), peaks[i], sh.peak)
		}
	}
}

// A shard whose lock a reader holds is passed over while the sweeper
// works on the others, then waited for; its sessions go once the reader
// lets go.
func TestSweepPassesOverHeldShard(t *testing.T) {
	m, start, add := newSweepTestManager(t)
	ids := add(ramShards * sweepBatch)
	held := m.ram.shard(ids[0])
	inHeld := 0
	for _, id := range ids {
		if m.ram.shard(id) == held {
			inHeld++
		}
	}
	held.mu.RLock()
	done := make(chan struct{})
	go func() { m.sweep(start.Add(5 * time.Minute)); close(done) }()
	if !poll.Until(5*time.Second, func() bool { return m.stats.evicted.Load() >= uint64(len(ids)-inHeld) }) {
		held.mu.RUnlock()
		t.Fatalf("evicted %d of the %d sessions in shards nobody holds", m.stats.evicted.Load(), len(ids)-inHeld)
	}
	select {
	case <-done:
		held.mu.RUnlock()
		t.Fatal("the sweep finished while a reader held a shard with idle sessions")
	// The sweep runs on a real goroutine: it gets real time to (wrongly) finish.
	case <-time.After(20 * time.Millisecond):
	}
	held.mu.RUnlock()
	<-done
	if got := m.stats.evicted.Load(); got != uint64(len(ids)) {
		t.Fatalf("evicted %d of %d", got, len(ids))
	}
}
