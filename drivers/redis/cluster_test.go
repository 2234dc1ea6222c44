package redis

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	cl := testservers.RedisCluster(t)
	s := openURL(t, cl.URL()+"&read_timeout=2s")
	if _, ok := s.Client().(*goredis.ClusterClient); !ok {
		t.Fatalf("client is a %T, want *redis.ClusterClient", s.Client())
	}
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		// Many keys land on every master.
		perNode := map[string]int{}
		for i := range 300 {
			k := fmt.Sprintf("sess:rt:%d", i)
			v := []byte(k + "\x00\xff")
			if err := s.Set(ctx, k, v, store.WithExpiration(time.Minute)); err != nil {
				t.Fatal(err)
			}
			got, err := getBytes(t, s, k)
			if err != nil || string(got) != string(v) {
				t.Fatalf("%s: %q, %v", k, got, err)
			}
			node, err := s.Client().(*goredis.ClusterClient).MasterForKey(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			perNode[node.Options().Addr]++
		}
		if len(perNode) != testservers.RedisClusterNodes {
			t.Errorf("keys on %d masters (%v), want %d", len(perNode), perNode, testservers.RedisClusterNodes)
		}
		if _, err := s.Get(ctx, "sess:rt:none"); !errors.Is(err, &store.NotFound{}) {
			t.Errorf("missing key: %v", err)
		}
		for i := range 300 {
			if err := s.Delete(ctx, fmt.Sprintf("sess:rt:%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		for _, k := range []string{"sess:cas:a", "sess:cas:b", "sess:cas:c"} { // different slots
			testCompareAndSwap(t, s, k)
		}
	})

	t.Run("CompareAndSwapRace", func(t *testing.T) {
		testCompareAndSwapRace(t, s, "sess:cas:race")
	})

	t.Run("ListKeys", func(t *testing.T) {
		testListKeys(t, s)
	})
}
