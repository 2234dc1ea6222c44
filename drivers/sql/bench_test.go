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

// BenchmarkCompareAndSwapMany compares and swaps batches of 256 sessions
// of about 400 bytes, as sticky mode's write-behind does, and reports
// sessions/s. update: the same 4,096 keys over and over, each against its
// right old value; insert: new keys, "only if absent"; update-single16:
// the same updates as the library makes them without CompareAndSwapMany,
// one CompareAndSwap per session, 16 at a time (with 16 idle connections
// kept: database/sql's default of 2 would have most calls open a new
// connection, which measures PostgreSQL's connection set-up instead).
func BenchmarkCompareAndSwapMany(b *testing.B) {
	const batch, size, sets = 256, 400, 16
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
			// Two versions of each session, alternately written.
			version := func(v int) [][]byte {
				values := make([][]byte, batch)
				for i := range values {
					values[i] = make([]byte, size)
					for j := range values[i] {
						values[i][j] = byte(j*31 + i + v)
					}
				}
				return values
			}
			versions := [2][][]byte{version(0), version(1)}
			nils := make([][]byte, batch)
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
			// prepare stores sets batches of sessions at version 0.
			prepare := func(b *testing.B, s *Store) [sets][]string {
				var ks [sets][]string
				for i := range ks {
					ks[i] = keys()
					if err := s.SetMany(ctx, ks[i], versions[0], 30*time.Minute); err != nil {
						b.Fatal(err)
					}
				}
				return ks
			}
			check := func(b *testing.B, swapped []bool) {
				for _, ok := range swapped {
					if !ok {
						b.Fatal("a compare-and-swap against the right old value failed")
					}
				}
			}
			b.Run("update", func(b *testing.B) {
				s := open(b)
				ks := prepare(b, s)
				i := 0
				for b.Loop() {
					cur := (i / sets) % 2
					swapped, err := s.CompareAndSwapMany(ctx, ks[i%sets], versions[cur], versions[1-cur], 30*time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					check(b, swapped)
					i++
				}
				report(b)
			})
			b.Run("insert", func(b *testing.B) {
				s := open(b)
				for b.Loop() {
					swapped, err := s.CompareAndSwapMany(ctx, keys(), nils, versions[0], 30*time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					check(b, swapped)
				}
				report(b)
			})
			b.Run("update-single16", func(b *testing.B) {
				s := open(b)
				s.DB().SetMaxIdleConns(16)
				ks := prepare(b, s)
				i := 0
				swapped := make([]bool, batch)
				errs := make([]error, batch)
				for b.Loop() {
					cur := (i / sets) % 2
					k, olds, values := ks[i%sets], versions[cur], versions[1-cur]
					for start := 0; start < batch; start += 16 {
						var wg sync.WaitGroup
						for j := start; j < start+16; j++ {
							wg.Add(1)
							go func() {
								defer wg.Done()
								swapped[j], errs[j] = s.CompareAndSwap(ctx, k[j], olds[j], values[j], 30*time.Minute)
							}()
						}
						wg.Wait()
					}
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
					check(b, swapped)
					i++
				}
				report(b)
			})
		})
	}
}
