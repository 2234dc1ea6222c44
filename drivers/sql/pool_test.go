package sqlstore

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// A store under 64 goroutines of reads and writes never has more
// connections open than its pool allows, counted by the server itself.
func TestPoolCapsServerConnections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *testservers.Server
		query string // count of this store's connections on the server
	}{
		{"postgres", testservers.Postgres, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pooltest'"},
		{"mariadb", testservers.MariaDB, "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"},
	} {
		for _, cap := range []int{4, DefaultMaxOpenConns} {
			t.Run(fmt.Sprintf("%s/max_open_conns=%d", tc.name, cap), func(t *testing.T) {
				srv := tc.start(t)
				u, err := url.Parse(srv.URL())
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				if cap != DefaultMaxOpenConns {
					q.Set("max_open_conns", fmt.Sprint(cap))
				}
				if tc.name == "postgres" {
					q.Set("application_name", "pooltest")
				}
				q.Set("table", fmt.Sprintf("pool%d", time.Now().UnixNano()))
				u.RawQuery = q.Encode()
				ctx := context.Background()
				s, err := Open(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				// The monitor: its own connection, outside the store's pool.
				mon, err := Open(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				defer mon.Close()
				mon.db.SetMaxOpenConns(1)
				count := func() int {
					var n int
					if err := mon.db.QueryRowContext(ctx, tc.query).Scan(&n); err != nil {
						t.Error(err)
					}
					return n
				}
				var peak atomic.Int64
				stop := make(chan struct{})
				var mwg sync.WaitGroup
				mwg.Add(1)
				go func() {
					defer mwg.Done()
					for {
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
						if n := int64(count()); n > peak.Load() {
							peak.Store(n)
						}
					}
				}()
				var wg sync.WaitGroup
				for g := 0; g < 64; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 40; i++ {
							key := fmt.Sprintf("k%d-%d", g, i%4)
							if err := s.Set(ctx, key, []byte("v")); err != nil {
								t.Error(err)
								return
							}
							if _, err := s.Get(ctx, key); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(stop)
				mwg.Wait()
				// The monitor's own connection is counted by MariaDB's
				// processlist filter out; PostgreSQL's by application name
				// (both pools share it: subtract the monitor's one).
				limit := int64(cap)
				if tc.name == "postgres" {
					limit++ // the monitor's connection has the same name
				}
				if p := peak.Load(); p == 0 || p > limit {
					t.Fatalf("peak of %d connections on the server; the pool allows %d", p, cap)
				}
				t.Logf("peak %d connections (pool of %d)", peak.Load(), cap)
			})
		}
	}
}
