package sqlstore

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// BenchmarkSetMany writes batches of 256 sessions of about 400 bytes, as
// write-behind does, and reports sessions/s. insert: every batch new keys;
// update: the same 4,096 keys over and over; parallel4: inserts from 4
// goroutines at once.
func BenchmarkSetMany(b *testing.B) {
	const batch, size = 256, 400
	for _, db := range []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"postgres", func(b *testing.B) string { return testservers.SharedPostgres(b).URL() }},
		{"mariadb", func(b *testing.B) string { return testservers.SharedMariaDB(b).URL() }},
		{"sqlite", func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "b.db") }},
	} {
		b.Run(db.name, func(b *testing.B) {
			raw := db.url(b)
			value := make([]byte, size)
			for i := range value {
				value[i] = byte(i * 31)
			}
			values := make([][]byte, batch)
			for i := range values {
				values[i] = value
			}
			open := func(b *testing.B) *Store {
				u, err := url.Parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				q := u.Query()
				q.Set("table", fmt.Sprintf("bench%d", tableSeq.Add(1)))
				q.Set("sweep", "off")
				u.RawQuery = q.Encode()
				s, err := Open(context.Background(), u)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				return s
			}
			var seq atomic.Int64
			keys := func() []string {
				base := seq.Add(1) * batch
				k := make([]string, batch)
				for i := range k {
					k[i] = fmt.Sprintf("sess:%043d", base+int64(i))
				}
				return k
			}
			report := func(b *testing.B) {
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "sessions/s")
			}
			ctx := context.Background()
			b.Run("insert", func(b *testing.B) {
				s := open(b)
				for b.Loop() {
					if err := s.SetMany(ctx, keys(), values, 30*time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
			b.Run("update", func(b *testing.B) {
				s := open(b)
				var sets [16][]string
				for i := range sets {
					sets[i] = keys()
					if err := s.SetMany(ctx, sets[i], values, 30*time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				i := 0
				for b.Loop() {
					if err := s.SetMany(ctx, sets[i%len(sets)], values, 30*time.Minute); err != nil {
						b.Fatal(err)
					}
					i++
				}
				report(b)
			})
			b.Run("parallel4", func(b *testing.B) {
				s := open(b)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if err := s.SetMany(ctx, keys(), values, 30*time.Minute); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				report(b)
			})
		})
	}
}
