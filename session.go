package sessions

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Session is one request's view of its session. FromContext returns it
// inside a handler wrapped by Manager.Handler; it is safe for concurrent use
// by the goroutines of that request.
//
// Concurrent requests of one session on one server share its data, but each
// has its own *Session, which records what this request did: only the
// request that created, renewed or invalidated a session changes its cookie.
// When another request renews or invalidates the session, or it times out,
// while this one runs, this *Session sees an ended session: reads find
// nothing, and Set, Delete and Renew return ErrSessionEnded and change
// nothing.
//
// A Session that was never written to has no ID, is not kept in memory or
// storage, and sends no cookie; the first Set gives it an ID and makes it
// exist. Values are encoded by the Manager's codec at Set time, so what
// Get returns after a restart is what the codec preserves; mutating a value
// after Set (say, appending to a stored slice) is not saved until you Set
// it again.
//
// Methods on a nil *Session do not panic: reads find nothing and writes
// return ErrNoSession.
type Session struct {
	m *Manager

	// bound is the session this request uses and the ID the request holds
	// it by; nil until one is loaded or started. When st.id moves on (a
	// Renew by another request) or st ends, this handle sees an ended
	// session. A binding is immutable once stored; it changes (under mu)
	// when this request starts, renews or invalidates its session.
	bound atomic.Pointer[binding]
	first binding // the first binding, allocated with the handle

	mu        sync.Mutex // protects following fields
	firstUsed bool
	// pinned: st.users counts this request, so st stays resident.
	pinned bool
	// What this request did, for the cookie: see responseWriter.setCookie.
	created, renewed, invalidated bool
	// wrote: this request changed st (cluster mode reports a change lost
	// to an end elsewhere).
	wrote bool
	// readOnly: the copy OnSessionEnd receives.
	readOnly bool
	// finished: the request's handler returned; a session started after
	// that (by a goroutine it left running) is not pinned.
	finished bool
}

// binding is a request's session and the ID the request holds it by.
type binding struct {
	st *state
	id string
}

// liveLocked reports whether this request may use b.st: it is still the
// session under the ID the request holds it by, and not ended. The caller
// holds b.st.mu.
func (s *Session) liveLocked(b *binding) bool {
	return s.readOnly || (!b.st.ended && b.st.id == b.id)
}

// cur returns the request's session and ID (nil, "" for none).
func (s *Session) cur() (*state, string) {
	if b := s.bound.Load(); b != nil {
		return b.st, b.id
	}
	return nil, ""
}

// bind makes st, under id, the request's session (nil: none); s.mu held.
func (s *Session) bind(st *state, id string) {
	switch {
	case st == nil:
		s.bound.Store(nil)
	case !s.firstUsed:
		s.firstUsed = true
		s.first = binding{st, id}
		s.bound.Store(&s.first)
	default:
		s.bound.Store(&binding{st, id})
	}
}

// view locks the state this request may read and returns it, or nil (with
// nothing locked) when there is none.
func (s *Session) view() *state {
	b := s.bound.Load()
	if b == nil {
		return nil
	}
	b.st.mu.Lock()
	if !s.liveLocked(b) {
		b.st.mu.Unlock()
		return nil
	}
	return b.st
}

func (s *Session) unview(st *state) { st.mu.Unlock() }

// ID returns the session ID, the value of the session cookie; "" for a
// session that has not been written yet or has ended.
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	st := s.view()
	if st == nil {
		return ""
	}
	defer s.unview(st)
	_, id := s.cur()
	return id
}

// CreatedAt returns when the session was first written (zero before).
func (s *Session) CreatedAt() time.Time {
	if s == nil {
		return time.Time{}
	}
	st := s.view()
	if st == nil {
		return time.Time{}
	}
	defer s.unview(st)
	if st.created == 0 {
		return time.Time{}
	}
	return time.UnixMilli(st.created)
}

// LastAccess returns when a request last used the session on this server.
func (s *Session) LastAccess() time.Time {
	if s == nil {
		return time.Time{}
	}
	st := s.view()
	if st == nil {
		return time.Time{}
	}
	defer s.unview(st)
	return time.Unix(0, st.lastAccess.Load())
}

// Get returns the value under key, decoded into the codec's natural Go
// types if it was not set in this process (msgpack: int64, float64,
// map[string]any ...). Prefer the typed Get[T]. ok is false when the key is
// absent or the value cannot be decoded untyped (then the reason is logged).
func (s *Session) Get(key string) (value any, ok bool) {
	if s == nil {
		return nil, false
	}
	st := s.view()
	if st == nil {
		return nil, false
	}
	defer s.unview(st)
	e, ok := st.values[key]
	if !ok {
		return nil, false
	}
	if e.val != notDecoded {
		return e.val, true
	}
	var v any
	if err := s.m.codec.Unmarshal(e.raw, &v); err != nil {
		s.m.log.Warn("sessions: cannot decode value untyped; use sessions.Get[T]", "key", key, "err", err)
		return nil, false
	}
	e.val = v
	st.values[key] = e
	return v, true
}

// Get returns the value under key as a T. ok reports whether the key is
// present; err is non-nil when it is present but does not decode as a T (the
// stored value is left as it is). A value set in this process as a T comes
// back as is, without decoding.
func Get[T any](s *Session, key string) (value T, ok bool, err error) {
	var zero T
	if s == nil {
		return zero, false, nil
	}
	st := s.view()
	if st == nil {
		return zero, false, nil
	}
	defer s.unview(st)
	e, ok := st.values[key]
	if !ok {
		return zero, false, nil
	}
	if e.val != notDecoded {
		if v, isT := e.val.(T); isT {
			return v, true, nil
		}
	}
	var v T
	if err := s.m.codec.Unmarshal(e.raw, &v); err != nil {
		return zero, true, fmt.Errorf("sessions: value %q does not decode as %T: %w", key, zero, err)
	}
	e.val = v
	st.values[key] = e
	return v, true, nil
}

// Keys returns the keys present, sorted.
func (s *Session) Keys() []string {
	if s == nil {
		return nil
	}
	st := s.view()
	if st == nil {
		return nil
	}
	keys := make([]string, 0, len(st.values))
	for k := range st.values {
		keys = append(keys, k)
	}
	s.unview(st)
	sort.Strings(keys)
	return keys
}

// Set stores value under key. The value is encoded at once: a value the
// codec cannot store (a func, a chan, a cyclic structure) fails here with
// ErrUnserializable naming the key and type, and the session is unchanged;
// so does a change that would exceed Config.MaxSessionSize
// (ErrSessionTooLarge) or a bad key (ErrInvalidKey). The first Set of a new
// session gives it its ID. A Set on a session that ended while this request
// ran returns ErrSessionEnded.
func (s *Session) Set(key string, value any) error {
	if s == nil {
		return ErrNoSession
	}
	if err := s.m.checkKey(key); err != nil {
		return err
	}
	if err := checkSerializable(value); err != nil {
		return fmt.Errorf("%w: Set(%q) with a %T: %v", ErrUnserializable, key, value, err)
	}
	raw, err := s.m.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("%w: Set(%q) with a %T: %v", ErrUnserializable, key, value, err)
	}
	return s.change(key, func(st *state) error { return st.putLocked(key, raw, value) })
}

// putLocked sets key to an encoded value, within MaxSessionSize.
func (st *state) putLocked(key string, raw []byte, value any) error {
	old, had := st.values[key]
	size := st.size + len(raw)
	if had {
		size -= len(old.raw)
	} else {
		size += len(key) + fieldOverhead
	}
	if size > st.m.cfg.MaxSessionSize {
		return fmt.Errorf("%w: Set(%q) would make it %d bytes, over the limit of %d", ErrSessionTooLarge, key, size, st.m.cfg.MaxSessionSize)
	}
	st.values[key] = entry{raw: raw, val: value}
	st.size = size
	return nil
}

// Delete removes key; deleting a missing key does nothing. It returns
// ErrSessionEnded, and does nothing, when the session ended while this
// request ran.
func (s *Session) Delete(key string) error {
	if s == nil {
		return ErrNoSession
	}
	return s.change(key, func(st *state) error {
		old, had := st.values[key]
		if !had {
			return errNoChange
		}
		delete(st.values, key)
		st.size -= len(key) + fieldOverhead + len(old.raw)
		return nil
	})
}

// errNoChange: a change function found nothing to do.
var errNoChange = errors.New("no change")

// change applies fn to the session under its lock and marks key dirty,
// starting a new session first if this request has none (only when fn
// will change it: a Delete on no session is a no-op).
func (s *Session) change(key string, fn func(st *state) error) error {
	s.mu.Lock()
	if s.readOnly {
		s.mu.Unlock()
		return fmt.Errorf("%w: the session passed to OnSessionEnd is read-only", ErrSessionEnded)
	}
	b, started := s.bound.Load(), false
	var st *state
	if b == nil {
		st = s.m.newState()
		started = true
	} else {
		st = b.st
	}
	st.mu.Lock()
	if !started && !s.liveLocked(b) {
		st.mu.Unlock()
		s.mu.Unlock()
		return fmt.Errorf("%w: it was renewed, invalidated or timed out by another request", ErrSessionEnded)
	}
	if err := fn(st); err != nil {
		st.mu.Unlock()
		s.mu.Unlock()
		if err == errNoChange {
			return nil
		}
		return err
	}
	if started {
		s.m.startLocked(st)
		s.bind(st, st.id)
		s.pinned, s.created = !s.finished, true
		if s.pinned {
			st.users.Store(1)
		}
	}
	st.markDirtyLocked(key)
	s.wrote = true
	st.mu.Unlock()
	if started {
		s.m.ram.insert(st.id, st)
	}
	s.mu.Unlock()
	s.m.changed(s, st, started)
	return nil
}

// Renew gives the session a new ID and keeps its data; the old ID stops
// working at once, on every server, including for requests that are
// running under it (they see an ended session). Call it when privileges
// change, such as at login, to defeat session fixation. The response
// carries the new cookie. Renewing a session that was never written does
// nothing.
//
// Failure: in cluster mode the new entry is written and the old one
// removed before Renew returns; if either storage call fails, Renew
// returns the error and the session keeps its ID, its data and its cookie,
// as if Renew had not been called. In sticky mode Renew does not fail on
// storage: the change is in memory at once and written behind, retried
// until storage takes it. It returns ErrSessionEnded if the session ended
// while this request ran.
func (s *Session) Renew() error {
	if s == nil {
		return ErrNoSession
	}
	return s.m.renew(s)
}

// Invalidate ends the session: its data is removed from memory and storage,
// OnSessionEnd fires, and the response deletes the cookie. This *Session is
// then empty and new: a later Set starts a new session with a new ID (log
// out, then continue as a guest). Invalidating a session that ended while
// this request ran does the same, without an end event or a cookie change.
//
// Failure: in cluster mode the stored entry is deleted before Invalidate
// returns; if that fails, Invalidate returns the error and nothing
// changed: no end event, same ID, same cookie, same data. In sticky mode
// Invalidate does not fail on storage: the session is gone from memory at
// once, no request can load it again, and the storage delete is retried
// until storage takes it.
func (s *Session) Invalidate() error {
	if s == nil {
		return ErrNoSession
	}
	return s.m.invalidate(s)
}
