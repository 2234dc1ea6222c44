package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"testing"
	"time"

	"github.com/sessionstorage/sessions"
)

// BenchmarkWriteBehind measures sticky mode's write-behind under a burst:
// 100,000 new sessions, each changed once through the middleware as fast
// as one goroutine can, over each storage. It reports
//
//	sessions/s      sessions stored per second, from the first request
//	                until the queue is empty
//	drain-s         seconds from the last request until the queue is
//	                empty: the loss window at the end of the burst
//	max-lag-s       the largest Stats().WriteBehindLag seen during the run
//	close-s         seconds Close takes with 100,000 sessions unwritten
//	                (WriteBehind of an hour, so nothing flushed before)
//
// Run it alone: go test -run '^$' -bench WriteBehind -benchtime 1x .
func BenchmarkWriteBehind(b *testing.B) {
	const n = 100_000
	type target struct {
		name string
		url  func() (string, error)
	}
	for _, tg := range []target{
		{"memory", func() (string, error) { return "memory", nil }},
		{"redis", func() (string, error) { return redisURL(dbWriteBehind) }},
		{"bolt", func() (string, error) { return boltURL(fmt.Sprintf("writebehind-%d.db", time.Now().UnixNano())), nil }},
		{"postgres", func() (string, error) {
			if servers.postgresErr != nil {
				return "", servers.postgresErr
			}
			return servers.postgres.URL(), nil
		}},
	} {
		b.Run(tg.name, func(b *testing.B) {
			url, err := tg.url()
			if err != nil {
				b.Skip(err)
			}
			prefix := fmt.Sprintf("wb%d:", time.Now().UnixNano())
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			set := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := sessions.FromContext(r.Context())
				s.Set("user", userValue)
				s.Set("visits", 1)
			})
			for b.Loop() {
				m, err := sessions.New(sessions.Config{Storage: url, KeyPrefix: prefix, WriteBehind: 100 * time.Millisecond, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				h := m.Handler(set)
				var maxLag time.Duration
				start := time.Now()
				for i := 0; i < n; i++ {
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
					if i%1000 == 0 {
						maxLag = max(maxLag, m.Stats().WriteBehindLag)
					}
				}
				last := time.Now()
				for m.Stats().PendingWrites > 0 {
					maxLag = max(maxLag, m.Stats().WriteBehindLag)
					time.Sleep(time.Millisecond)
				}
				done := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if err := m.Close(ctx); err != nil {
					b.Fatal(err)
				}
				cancel()

				// Close with everything still queued.
				m2, err := sessions.New(sessions.Config{Storage: url, KeyPrefix: prefix + "close:", WriteBehind: time.Hour, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				h2 := m2.Handler(set)
				for i := 0; i < n; i++ {
					h2.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
				}
				closeStart := time.Now()
				ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
				if err := m2.Close(ctx); err != nil {
					b.Fatal(err)
				}
				cancel()
				closeTook := time.Since(closeStart)

				b.ReportMetric(n/done.Sub(start).Seconds(), "sessions/s")
				b.ReportMetric(done.Sub(last).Seconds(), "drain-s")
				b.ReportMetric(maxLag.Seconds(), "max-lag-s")
				b.ReportMetric(closeTook.Seconds(), "close-s")
			}
		})
	}
}
