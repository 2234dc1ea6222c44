package testservers_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	redisdriver "github.com/sessionstorage/sessions/drivers/redis"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// TestRedisSentinelFailover starts a Sentinel deployment, writes through
// the driver's Sentinel URL, kills the master and checks that the Sentinels
// promote a replica holding the data and that the same Store writes again.
// It is not parallel so that it can check for leaked goroutines.
func TestRedisSentinelFailover(t *testing.T) {
	leaks := append(testservers.LeakCheckOptions(), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, leaks...) }) // after the deployment's cleanup
	goredis.SetLogger(quietLogger{})                     // the dials to the dead master

	t0 := time.Now()
	dep := testservers.RedisSentinel(t)
	t.Logf("started 1 master, %d replicas, %d sentinels in %v",
		len(dep.Replicas()), len(dep.Sentinels()), time.Since(t0).Round(time.Millisecond))
	if len(dep.Replicas()) != 2 || len(dep.Sentinels()) != 3 {
		t.Fatalf("%d replicas, %d sentinels", len(dep.Replicas()), len(dep.Sentinels()))
	}
	u, err := url.Parse(dep.URL())
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query()["addr"]; u.Host != dep.Sentinels()[0].Addr() || len(got) != 2 ||
		got[0] != dep.Sentinels()[1].Addr() || got[1] != dep.Sentinels()[2].Addr() ||
		u.Query().Get("master_name") != testservers.RedisSentinelMasterName {
		t.Fatalf("URL() = %s", dep.URL())
	}

	ctx := context.Background()
	s, err := redisdriver.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Client().(*goredis.Client); !ok {
		t.Fatalf("client is a %T, want the *redis.Client of a failover client", s.Client())
	}
	for _, sn := range dep.Sentinels() {
		if got := masterAddr(t, sn); got != dep.Master().Addr() {
			t.Fatalf("sentinel %s reports master %s, want %s", sn.Addr(), got, dep.Master().Addr())
		}
	}
	if err := s.Set(ctx, "before", []byte("v1"), store.WithExpiration(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Both replicas have the write before the master dies.
	if n, err := s.Client().Do(ctx, "WAIT", 2, 5000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2: %d, %v", n, err)
	}

	dep.Master().Kill(t)
	t0 = time.Now()
	var lastErr error
	for {
		if time.Since(t0) > 15*time.Second {
			t.Fatalf("no write through %s within 15 s of killing the master; last error: %v\n%s",
				dep.URL(), lastErr, dep.Sentinels()[0].LogTail(3000))
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		lastErr = s.Set(cctx, "after", []byte("v2"), store.WithExpiration(time.Minute))
		cancel()
		if lastErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("write succeeded %v after the master was killed", time.Since(t0).Round(time.Millisecond))
	// The Sentinel that ran the failover tells the others in its next
	// hellos: wait until all agree on a replica.
	replicas := map[string]bool{}
	for _, r := range dep.Replicas() {
		replicas[r.Addr()] = true
	}
	for {
		addrs := map[string]bool{}
		for _, sn := range dep.Sentinels() {
			addrs[masterAddr(t, sn)] = true
		}
		var promoted string
		for a := range addrs {
			promoted = a
		}
		if len(addrs) == 1 && replicas[promoted] {
			t.Logf("all sentinels report replica %s as the master %v after the kill", promoted, time.Since(t0).Round(time.Millisecond))
			break
		}
		if time.Since(t0) > 15*time.Second {
			t.Fatalf("15 s after the kill the sentinels report masters %v; want one of the replicas %v (old master %s)",
				addrs, replicas, dep.Master().Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k, want := range map[string]string{"before": "v1", "after": "v2"} {
		v, err := s.Get(ctx, k)
		if str, _ := v.(string); err != nil || str != want {
			t.Errorf("Get(%s) after the failover: %q, %v; want %q", k, v, err, want)
		}
	}
}

// masterAddr asks a Sentinel for the master's address.
func masterAddr(t *testing.T, sentinel *testservers.Server) string {
	t.Helper()
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinel.Addr()})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(context.Background(), testservers.RedisSentinelMasterName).Result()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(a[0], a[1])
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
