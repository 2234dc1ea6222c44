package promsessions_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/promsessions"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkObserved measures a read and a write request through the
// middleware (the session in memory; cluster mode: over the memory
// driver) plain, with the Prometheus collector registered, and with a
// recording tracer (spans made, not exported): docs/performance.md has
// the ratios.
func BenchmarkObserved(b *testing.B) {
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		sessions.Get[int](s, "visits")
		sessions.Get[string](s, "user")
		w.WriteHeader(200)
	})
	write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		n, _, _ := sessions.Get[int](s, "visits")
		s.Set("visits", n+1)
		s.Set("user", "alice")
		w.WriteHeader(200)
	})
	for _, mode := range []string{"sticky", "cluster"} {
		for _, variant := range []string{"plain", "collector", "tracer"} {
			store := memory.New(memory.Options{})
			cfg := sessions.Config{Store: store, Cluster: mode == "cluster", Logger: quiet}
			switch variant {
			case "collector":
				cfg.Observer = promsessions.NewObserver()
			case "tracer":
				tp := sdktrace.NewTracerProvider()
				defer tp.Shutdown(context.Background())
				cfg.TracerProvider = tp
			}
			m, err := sessions.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if variant == "collector" {
				prometheus.NewRegistry().MustRegister(promsessions.New(m))
			}
			rec := httptest.NewRecorder()
			m.Handler(write).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			cookie := rec.Result().Cookies()[0]
			for _, bc := range []struct {
				name string
				h    http.Handler
			}{{"read", m.Handler(read)}, {"write", m.Handler(write)}} {
				b.Run(mode+"-"+bc.name+"/"+variant, func(b *testing.B) {
					r := httptest.NewRequest("GET", "/", nil)
					r.AddCookie(cookie)
					w := &discardWriter{h: http.Header{}}
					b.ReportAllocs()
					for b.Loop() {
						clear(w.h)
						bc.h.ServeHTTP(w, r)
					}
				})
			}
			m.Close(context.Background())
			store.Close()
		}
	}
}
