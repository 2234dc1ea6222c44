package adapter

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The operations Storage.Observe is told of, one per method below. A call
// is observed once, as a whole: the fallbacks it takes inside (a re-read
// and a write for a store without CompareAndSwap, Set calls for a store
// without SetMany) are part of it.
const (
	OpGet                = "get"
	OpSet                = "set"
	OpSetMany            = "set_many"
	OpCompareAndSwap     = "compare_and_swap"
	OpCompareAndSwapMany = "compare_and_swap_many"
	OpCompareAndDelete   = "compare_and_delete"
	OpListExpiring       = "list_expiring"
	OpDelete             = "delete"
)

// Ops lists every operation, for exporters that prepare one series each.
var Ops = []string{OpGet, OpSet, OpSetMany, OpCompareAndSwap, OpCompareAndSwapMany, OpCompareAndDelete, OpListExpiring, OpDelete}

// spanNames are the names of the storage calls' spans, by operation.
var spanNames = map[string]string{
	OpGet:                "sessions.storage.get",
	OpSet:                "sessions.storage.set",
	OpSetMany:            "sessions.storage.set_many",
	OpCompareAndSwap:     "sessions.storage.compare_and_swap",
	OpCompareAndSwapMany: "sessions.storage.compare_and_swap_many",
	OpCompareAndDelete:   "sessions.storage.compare_and_delete",
	OpListExpiring:       "sessions.storage.list_expiring",
	OpDelete:             "sessions.storage.delete",
}

// call is one observed storage call.
type call struct {
	s     *Storage
	op    string
	start time.Time
	span  trace.Span // nil: not traced
}

// observed reports whether a call on ctx is observed: a hook is set, or
// ctx carries a span being recorded (the storage call becomes its child).
// Neither: the call costs nothing more, not even a clock read.
func (s *Storage) observed(ctx context.Context) bool {
	return s.Observe != nil || trace.SpanFromContext(ctx).IsRecording()
}

func (s *Storage) begin(ctx context.Context, op string) (context.Context, call) {
	c := call{s: s, op: op}
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		ctx, c.span = parent.TracerProvider().Tracer("github.com/sessionstorage/sessions").Start(ctx, spanNames[op],
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("sessions.op", op)))
	}
	if s.Observe != nil {
		c.start = time.Now()
	}
	return ctx, c
}

// end reports the call's outcome; ErrNotFound is a success.
func (c call) end(err error) {
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if c.s.Observe != nil {
		c.s.Observe(c.op, time.Since(c.start), err)
	}
	if c.span != nil {
		if err != nil {
			c.span.RecordError(err)
			c.span.SetStatus(codes.Error, err.Error())
		}
		c.span.End()
	}
}

// Get returns the stored bytes, or ErrNotFound.
func (s *Storage) Get(ctx context.Context, key string) ([]byte, error) {
	if !s.observed(ctx) {
		return s.get(ctx, key)
	}
	ctx, c := s.begin(ctx, OpGet)
	v, err := s.get(ctx, key)
	c.end(err)
	return v, err
}

// Set writes value with a time to live (0: none).
func (s *Storage) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if !s.observed(ctx) {
		return s.set(ctx, key, value, ttl)
	}
	ctx, c := s.begin(ctx, OpSet)
	err := s.set(ctx, key, value, ttl)
	c.end(err)
	return err
}

// SetMany writes a batch: in one call where the store can (HasBatch),
// else Concurrency Set calls at a time.
func (s *Storage) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	if !s.observed(ctx) {
		return s.setMany(ctx, keys, values, ttl)
	}
	ctx, c := s.begin(ctx, OpSetMany)
	if c.span != nil {
		c.span.SetAttributes(attribute.Int("sessions.batch_size", len(keys)))
	}
	err := s.setMany(ctx, keys, values, ttl)
	c.end(err)
	return err
}

// CompareAndSwap writes value only if the entry still holds old (nil:
// absent). Stores without the capability get a re-read then a write: right
// unless another writer slips in between the two calls.
func (s *Storage) CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error) {
	if !s.observed(ctx) {
		return s.compareAndSwap(ctx, key, old, value, ttl)
	}
	ctx, c := s.begin(ctx, OpCompareAndSwap)
	ok, err := s.compareAndSwap(ctx, key, old, value, ttl)
	if c.span != nil {
		c.span.SetAttributes(attribute.Bool("sessions.swapped", ok))
	}
	c.end(err)
	return ok, err
}

// CompareAndSwapMany performs CompareAndSwap per entry: in one call where
// the store can, else Concurrency calls at a time. errs[i] is entry i's
// error (all the same when the batch call failed). It is observed as
// failed when any entry failed.
func (s *Storage) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) (swapped []bool, errs []error) {
	if !s.observed(ctx) {
		return s.compareAndSwapMany(ctx, keys, olds, values, ttl)
	}
	ctx, c := s.begin(ctx, OpCompareAndSwapMany)
	swapped, errs = s.compareAndSwapMany(ctx, keys, olds, values, ttl)
	var err error
	for _, e := range errs {
		if e != nil {
			err = e
			break
		}
	}
	if c.span != nil {
		n := 0
		for _, ok := range swapped {
			if ok {
				n++
			}
		}
		c.span.SetAttributes(attribute.Int("sessions.batch_size", len(keys)), attribute.Int("sessions.swapped_count", n))
	}
	c.end(err)
	return swapped, errs
}

// CompareAndDelete deletes key if it still holds old, reporting whether
// this call deleted it: of concurrent calls, at most one wins, where the
// store has CompareAndDelete. Without it the entry is deleted and every
// caller wins.
func (s *Storage) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if !s.observed(ctx) {
		return s.compareAndDelete(ctx, key, old)
	}
	ctx, c := s.begin(ctx, OpCompareAndDelete)
	ok, err := s.compareAndDelete(ctx, key, old)
	if c.span != nil {
		c.span.SetAttributes(attribute.Bool("sessions.deleted", ok))
	}
	c.end(err)
	return ok, err
}

// ListExpiring lists entries under prefix whose time to live ends before
// before (the store must have ExpiryLister: CanListExpiring).
func (s *Storage) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	if !s.observed(ctx) {
		return s.listExpiring(ctx, prefix, before, limit)
	}
	ctx, c := s.begin(ctx, OpListExpiring)
	keys, values, err := s.listExpiring(ctx, prefix, before, limit)
	if c.span != nil {
		c.span.SetAttributes(attribute.Int("sessions.listed", len(keys)))
	}
	c.end(err)
	return keys, values, err
}

// Delete removes key; deleting a missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if !s.observed(ctx) {
		return s.delete(ctx, key)
	}
	ctx, c := s.begin(ctx, OpDelete)
	err := s.delete(ctx, key)
	c.end(err)
	return err
}
