package sessions_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessionstorage/sessions"
)

// discardWriter is the cheapest http.ResponseWriter, so that the
// benchmarks below measure the middleware, not the recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkMiddleware measures what the middleware adds to a request whose
// session is in memory (sticky mode): compare with the bare handler.
func BenchmarkMiddleware(b *testing.B) {
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
	m, err := sessions.New(sessions.Config{Logger: slogTo(&logBuffer{})})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(b.Context())
	// One session, made through the middleware.
	rec := httptest.NewRecorder()
	m.Handler(write).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	cookie := rec.Result().Cookies()[0]
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare-read", read}, // no session: FromContext is nil, methods are no-ops
		{"read", m.Handler(read)},
		{"write", m.Handler(write)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(cookie)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h) // each response starts with no header, as on a server
				bc.h.ServeHTTP(w, r)
			}
		})
	}
}
