package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestClusterStateReloadIntervalOption(t *testing.T) {
	for suffix, want := range map[string]time.Duration{
		"":                                     DefaultClusterStateReloadInterval,
		"&cluster_state_reload_interval=250ms": 250 * time.Millisecond,
		"&cluster_state_reload_interval=3":     3 * time.Second,
		"&cluster_state_reload_interval=1m":    time.Minute,
	} {
		raw := "redis://127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001" + suffix
		c, _, err := clientFromURL(mustParse(t, raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		if got := c.(*goredis.ClusterClient).Options().ClusterStateReloadInterval; got != want {
			t.Errorf("%s: ClusterStateReloadInterval = %v, want %v", raw, got, want)
		}
		c.Close()
	}
	for raw, want := range map[string]string{
		"redis://127.0.0.1:7000?cluster=true&cluster_state_reload_interval=0":     `option cluster_state_reload_interval="0": want a positive duration`,
		"redis://127.0.0.1:7000?cluster=true&cluster_state_reload_interval=-1s":   `option cluster_state_reload_interval="-1s"`,
		"redis://127.0.0.1:7000?cluster=true&cluster_state_reload_interval=often": `option cluster_state_reload_interval="often"`,
		"redis://127.0.0.1:7000?cluster_state_reload_interval=1s":                 "unknown option cluster_state_reload_interval",
		"redis://127.0.0.1:7000?master_name=m&cluster_state_reload_interval=1s":   "unknown option cluster_state_reload_interval",
	} {
		c, _, err := clientFromURL(mustParse(t, raw))
		if err == nil {
			c.Close()
			t.Errorf("%s: no error", raw)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to say %q", raw, err, want)
		}
	}
}

// clusterKeys returns n keys per master of the cluster, and the master of
// each.
func clusterKeys(t *testing.T, cc *goredis.ClusterClient, prefix string, n int) (keys []string, master map[string]string) {
	t.Helper()
	ctx := context.Background()
	master = map[string]string{}
	per := map[string]int{}
	for i := 0; len(keys) < n*testservers.RedisClusterNodes && i < 100*n; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		addr := m.Options().Addr
		if per[addr] < n {
			per[addr]++
			keys = append(keys, k)
			master[k] = addr
		}
	}
	if len(keys) != n*testservers.RedisClusterNodes {
		t.Fatalf("keys on %v", per)
	}
	return keys, master
}

// A master that lost its script cache (a restart, or a replica just
// promoted: scripts are not replicated) answers NOSCRIPT: only its entries
// are run again, so the swaps that landed on the other masters report
// true.
func TestClusterCompareAndSwapManyNoScriptOnOneNode(t *testing.T) {
	t.Parallel()
	cl := testservers.RedisCluster(t)
	s := openURL(t, cl.URL())
	cc := s.Client().(*goredis.ClusterClient)
	ctx := context.Background()
	keys, master := clusterKeys(t, cc, "sess:noscript:", 5)
	olds, v1, v2 := make([][]byte, len(keys)), make([][]byte, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		v1[i], v2[i] = []byte(k+"=1"), []byte(k+"=2")
	}
	if got, err := s.CompareAndSwapMany(ctx, keys, olds, v1, time.Minute); err != nil || strings.Contains(fmt.Sprint(got), "false") {
		t.Fatalf("first CompareAndSwapMany: %v, %v", got, err)
	}
	flushed := cl.Nodes()[0].Addr()
	node := goredis.NewClient(&goredis.Options{Addr: flushed})
	defer node.Close()
	if err := node.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.CompareAndSwapMany(ctx, keys, v1, v2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if !got[i] {
			t.Errorf("%s (on %s; the flushed master is %s): swapped = false, want true", k, master[k], flushed)
		}
		if v, err := getBytes(t, s, k); err != nil || string(v) != string(v2[i]) {
			t.Errorf("%s: %q, %v, want %q", k, v, err, v2[i])
		}
	}
}

// With a master dead, batch calls that touch it fail at once, before
// sending anything, and single calls for its keys too, while the other
// masters' keys are written; when it is back, its keys are written again.
func TestClusterDeadNodeFailsFast(t *testing.T) {
	t.Parallel()
	cl := testservers.RedisCluster(t)
	s := openURL(t, cl.URL())
	cc := s.Client().(*goredis.ClusterClient)
	ctx := context.Background()
	keys, master := clusterKeys(t, cc, "sess:dead:", 5)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = []byte(k)
	}
	if err := s.SetMany(ctx, keys, vals, time.Minute); err != nil {
		t.Fatal(err)
	}
	var victim *testservers.Server
	for _, n := range cl.Nodes() {
		if n.Addr() != masterOfIndex(t, cc) {
			victim = n
			break
		}
	}
	victim.Kill(t)

	// The first call finds the node dead (dialing with go-redis's
	// retries); the next ones fail at once.
	call := func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := s.CompareAndSwapMany(cctx, keys, vals, vals, time.Minute)
		return err
	}
	start := time.Now()
	err := call()
	t.Logf("first batch after the kill: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if err == nil {
		t.Fatal("CompareAndSwapMany with a master dead: no error")
	}
	for range 5 {
		start := time.Now()
		err := call()
		if d := time.Since(start); d > 100*time.Millisecond || !errors.Is(err, ErrNodeUnreachable) {
			t.Errorf("CompareAndSwapMany with a master known dead: %v after %v, want ErrNodeUnreachable at once", err, d)
		}
		start = time.Now()
		err = s.SetMany(ctx, keys, vals, time.Minute)
		if d := time.Since(start); d > 100*time.Millisecond || !errors.Is(err, ErrNodeUnreachable) {
			t.Errorf("SetMany with a master known dead: %v after %v, want ErrNodeUnreachable at once", err, d)
		}
	}
	// Single commands: go-redis may retry them for retryFor after the
	// last refused dial (the slot may have moved); then they fail at once.
	time.Sleep(retryFor)
	for i, k := range keys {
		start := time.Now()
		ok, err := s.CompareAndSwap(ctx, k, vals[i], vals[i], time.Minute)
		d := time.Since(start)
		if master[k] == victim.Addr() {
			if !errors.Is(err, ErrNodeUnreachable) || d > 100*time.Millisecond {
				t.Errorf("%s on the dead master: %v, %v after %v, want ErrNodeUnreachable at once", k, ok, err, d)
			}
		} else if !ok || err != nil {
			t.Errorf("%s on a live master: %v, %v", k, ok, err)
		}
	}

	victim.Restart(t) // empty, with its slots (nodes.conf)
	var last error
	if !poll.Until(10*time.Second, func() bool {
		last = s.SetMany(ctx, keys, vals, time.Minute)
		return last == nil
	}) {
		t.Fatalf("the master is back, but SetMany still fails: %v", last)
	}
	if got, err := s.CompareAndSwapMany(ctx, keys, vals, vals, time.Minute); err != nil || strings.Contains(fmt.Sprint(got), "false") {
		t.Fatalf("CompareAndSwapMany after the restart: %v, %v", got, err)
	}
}

func masterOfIndex(t *testing.T, cc *goredis.ClusterClient) string {
	t.Helper()
	m, err := cc.MasterForKey(context.Background(), ExpiryIndexKey)
	if err != nil {
		t.Fatal(err)
	}
	return m.Options().Addr
}
