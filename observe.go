package sessions

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Observer is told of a Manager's storage calls and write-behind flushes,
// for latency and batch-size metrics (package promsessions has one for
// Prometheus). Set it as Config.Observer; without one, nothing is timed.
// Its methods are called from request and background goroutines at once,
// and must be fast and must not block.
type Observer interface {
	// StorageCall reports one storage call: op is one of get, set,
	// set_many, compare_and_swap, compare_and_swap_many,
	// compare_and_delete, list_expiring, delete; took is how long it
	// took; err is nil when it succeeded (a missing entry is a success).
	StorageCall(op string, took time.Duration, err error)
	// FlushBatch reports one write-behind flush (sticky mode): size
	// operations (writes and deletes) taken from the queue, of which
	// failed were queued again to be retried (Stats.WriteBehindRetries
	// counts them too).
	FlushBatch(size, failed int)
}

// Info describes a Manager for monitoring: what an exporter labels its
// numbers with, and the settings its alerts compare them to.
type Info struct {
	Mode        string // "sticky" or "cluster"
	Storage     string // the storage's name or URL, password hidden, as the logs show it
	WriteBehind time.Duration
	Timeout     time.Duration
	// Observer is Config.Observer (nil if none).
	Observer Observer
}

// Info describes the Manager for monitoring.
func (m *Manager) Info() Info {
	mode := "sticky"
	if m.cfg.Cluster {
		mode = "cluster"
	}
	return Info{Mode: mode, Storage: m.storage.Name(), WriteBehind: m.cfg.WriteBehind,
		Timeout: m.cfg.Timeout, Observer: m.cfg.Observer}
}

// counter is a counter updated on every request: alone on its cache line,
// so that requests on several cores do not slow each other down through
// the counters next to it.
type counter struct {
	atomic.Uint64
	_ [56]byte
}

// tracerName is the instrumentation scope of the Manager's spans.
const tracerName = "github.com/sessionstorage/sessions"

// globalTracerProvider is the global TracerProvider as the otel package
// starts: a no-op that delegates to one installed later. While the global
// provider is still this one, no span is started at all, so that an
// application without tracing pays nothing, not even the context a no-op
// span is stored in.
var globalTracerProvider = defaultTracerProvider()

// defaultTracerProvider returns the global TracerProvider if it is still
// otel's own no-op delegate, nil if a package initialised before this one
// installed a provider already.
func defaultTracerProvider() trace.TracerProvider {
	tp := otel.GetTracerProvider()
	if reflect.TypeOf(tp).String() != "*global.tracerProvider" {
		return nil
	}
	return tp
}

// initTracing picks the Manager's tracer (New).
func (m *Manager) initTracing() {
	tp := m.cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m.tracer = tp.Tracer(tracerName)
	m.traceAttrs = []attribute.KeyValue{
		attribute.String("sessions.mode", m.Info().Mode),
		attribute.String("sessions.storage", m.storage.Name()),
	}
	if m.cfg.Observer != nil {
		m.storage.Observe = m.cfg.Observer.StorageCall
	}
}

// startSpan starts a span of storage work, a child of ctx's (background
// work, whose context carries none, gets a trace of its own). It returns
// ctx and nil when tracing is off: the caller ends a non-nil span with
// endSpan.
func (m *Manager) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if m.cfg.TracerProvider == nil && otel.GetTracerProvider() == globalTracerProvider {
		return ctx, nil
	}
	return m.tracer.Start(ctx, name, trace.WithAttributes(m.traceAttrs...))
}

// endSpan ends a span started by startSpan (nil: nothing to do) with its
// outcome and, when it is recorded, the attributes attrs returns.
func endSpan(sp trace.Span, outcome string, err error, attrs func() []attribute.KeyValue) {
	if sp == nil {
		return
	}
	if sp.IsRecording() {
		sp.SetAttributes(attribute.String("sessions.outcome", outcome))
		if attrs != nil {
			sp.SetAttributes(attrs()...)
		}
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
	}
	sp.End()
}

// load reads a session missing from memory (sticky mode) or, in cluster
// mode, every request's session from storage, in a span of its own, and
// counts the requests it found a session for.
func (m *Manager) load(ctx context.Context, id string, ver version, now time.Time) (*state, error) {
	ctx, sp := m.startSpan(ctx, "sessions.load")
	var st *state
	var err error
	if m.cfg.Cluster {
		st, err = m.loadCluster(ctx, id, now)
	} else {
		st, err = m.loadSticky(ctx, id, ver, now)
	}
	if st != nil {
		m.stats.reqStorage.Add(1)
	}
	if sp != nil {
		outcome := "found"
		switch {
		case errors.Is(err, ErrSessionEnded):
			outcome = "ended"
		case err != nil:
			outcome = "error"
		case st == nil:
			outcome = "none"
		}
		endSpan(sp, outcome, err, nil)
	}
	return st, err
}

// commitOutcome names how a cluster commit ended, for its span.
func commitOutcome(err error) string {
	switch {
	case err == nil:
		return "written"
	case errors.Is(err, ErrConflict):
		return "gave_up"
	case errors.Is(err, ErrSessionEnded):
		return "ended"
	}
	return "error"
}

// decodeCause counts an unreadable entry by cause (decode).
func (m *Manager) countUnreadable(sealed, format bool) {
	switch {
	case sealed:
		m.stats.corruptSeal.Add(1)
	case format:
		m.stats.corruptFormat.Add(1)
	default:
		m.stats.corruptCodec.Add(1)
	}
}
