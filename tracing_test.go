package sessions_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTraceClusterConflict: a cluster commit that conflicted once is one
// "sessions.commit" span, a child of the request's span, with
// sessions.conflicts 1 and outcome written, over the storage calls it made
// (compare_and_swap, get, compare_and_swap); the request's load is a
// "sessions.load" span over its get.
func TestTraceClusterConflict(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	store := memory.New(memory.Options{})
	t.Cleanup(func() { store.Close() }) // after the Managers' Close
	newManager := func(tp *sdktrace.TracerProvider) *sessions.Manager {
		cfg := sessions.Config{Store: store, Cluster: true, Logger: slogTo(&logBuffer{}), Cookie: sessions.CookieConfig{Insecure: true}}
		if tp != nil {
			cfg.TracerProvider = tp
		}
		m, err := sessions.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		return m
	}
	a, b := newManager(nil), newManager(tp) // only b traces
	serveA := func(cookie *http.Cookie, h func(s *sessions.Session)) *http.Cookie {
		r := httptest.NewRequest("GET", "/", nil)
		if cookie != nil {
			r.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(sessions.FromContext(r.Context())) })).ServeHTTP(w, r)
		if c := w.Result().Cookies(); len(c) > 0 {
			return c[0]
		}
		return cookie
	}
	cookie := serveA(nil, func(s *sessions.Session) { s.Set("n", 1) })

	ctx, reqSpan := tp.Tracer("test").Start(context.Background(), "request")
	r := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
	r.AddCookie(cookie)
	w := httptest.NewRecorder()
	b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveA(cookie, func(s *sessions.Session) { s.Set("from", "a") }) // stored first: b's write conflicts
		sessions.FromContext(r.Context()).Set("from-b", "b")
	})).ServeHTTP(w, r)
	reqSpan.End()
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if got := b.Stats().Conflicts; got != 1 {
		t.Fatalf("conflicts = %d, want 1", got)
	}

	spans := rec.Ended()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	one := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		if len(byName[name]) != 1 {
			t.Fatalf("%d spans %q, want 1; all: %v", len(byName[name]), name, names(spans))
		}
		return byName[name][0]
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value
		}
		return m
	}
	req, load, commit := one("request"), one("sessions.load"), one("sessions.commit")
	for _, s := range []sdktrace.ReadOnlySpan{load, commit} {
		if s.Parent().SpanID() != req.SpanContext().SpanID() {
			t.Errorf("%s: parent %v, want the request's span", s.Name(), s.Parent().SpanID())
		}
		at := attrs(s)
		if at["sessions.mode"].AsString() != "cluster" || at["sessions.storage"].AsString() != "memory store" {
			t.Errorf("%s: attributes %v", s.Name(), at)
		}
	}
	if at := attrs(load); at["sessions.outcome"].AsString() != "found" {
		t.Errorf("load: outcome %v", at["sessions.outcome"])
	}
	if at := attrs(commit); at["sessions.conflicts"].AsInt64() != 1 || at["sessions.outcome"].AsString() != "written" {
		t.Errorf("commit: attributes %v", at)
	}
	// The storage calls, children of the spans that made them, in order.
	var loadOps, commitOps []string
	for _, s := range spans {
		switch s.Parent().SpanID() {
		case load.SpanContext().SpanID():
			loadOps = append(loadOps, attrs(s)["sessions.op"].AsString())
		case commit.SpanContext().SpanID():
			commitOps = append(commitOps, attrs(s)["sessions.op"].AsString())
		}
	}
	if len(loadOps) != 1 || loadOps[0] != "get" {
		t.Errorf("load's storage calls: %v, want [get]", loadOps)
	}
	want := []string{"compare_and_swap", "get", "compare_and_swap"}
	if len(commitOps) != len(want) || commitOps[0] != want[0] || commitOps[1] != want[1] || commitOps[2] != want[2] {
		t.Errorf("commit's storage calls: %v, want %v", commitOps, want)
	}
	if s := byName["sessions.storage.compare_and_swap"]; len(s) != 2 || attrs(s[0])["sessions.swapped"].AsBool() || !attrs(s[1])["sessions.swapped"].AsBool() {
		t.Errorf("compare_and_swap spans: swapped should be false then true")
	}
	if len(spans) != 7 {
		t.Errorf("%d spans: %v; want request, load, get, commit, compare_and_swap, get, compare_and_swap", len(spans), names(spans))
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
