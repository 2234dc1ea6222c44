package sessions

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/serializer"
)

// Errors a Session reports. They are wrapped with detail; test with errors.Is.
var (
	// ErrUnserializable: Set was given a value the codec cannot store (a
	// func, a chan, a cyclic value, ...). The session is unchanged.
	ErrUnserializable = errors.New("sessions: value cannot be stored")
	// ErrSessionTooLarge: the Set would make the encoded session larger
	// than Config.MaxSessionSize. The session is unchanged.
	ErrSessionTooLarge = errors.New("sessions: session too large")
	// ErrInvalidKey: a key longer than Config.MaxKeyLength, or empty.
	ErrInvalidKey = errors.New("sessions: invalid key")
	// ErrNoSession: a method was called on a nil *Session, which is what
	// FromContext returns outside Manager.Handler.
	ErrNoSession = errors.New("sessions: no session (is the handler wrapped by Manager.Handler?)")
	ErrSessionEnded = errors.New("sessions: session ended")
)

// Session is one user's data. It is safe for concurrent use: concurrent
// requests of one user on one server share one *Session.
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

	// commitMu serialises storage writes of this session on this server
	// (cluster commits, write-behind flushes), held across the I/O.
	commitMu sync.Mutex

	mu       sync.Mutex
	id       string // "" until the session is first written
	key      string // storage key, derived from id
	values   map[string]entry
	size     int               // encoded size of values, roughly as stored
	dirty    map[string]uint64 // keys changed since the last store → change seq
	seq      uint64
	created  int64 // Unix ms
	revision uint64
	base     []byte // cluster mode: the stored bytes this copy is based on
	// storedAccess is the LastAccess (Unix ms) of the latest stored
	// envelope, 0 while the session has never been stored; a touch is due when it falls
	// Timeout/10 behind. Written under mu, read without it.
	storedAccess atomic.Int64

	lastAccess atomic.Int64 // Unix ns
	cookieSent atomic.Int64 // Unix ms of the last persistent cookie sent
	queued     atomic.Bool  // in the write-behind queue
	ended      atomic.Bool  // timed out: OnSessionEnd has fired
}

type entry struct {
	raw []byte // the codec's encoding
	val any    // the decoded value, or notDecoded
}

// notDecoded marks an entry whose value has not been decoded yet (nil is a
// value like any other).
type notDecodedType struct{}

var notDecoded any = notDecodedType{}

// ID returns the session ID, the value of the session cookie; "" for a
// session that has not been written yet.
func (s *Session) ID() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// CreatedAt returns when the session was first written (zero before).
func (s *Session) CreatedAt() time.Time {
	if s == nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created == 0 {
		return time.Time{}
	}
	return time.UnixMilli(s.created)
}

// LastAccess returns when a request last used the session on this server.
func (s *Session) LastAccess() time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Unix(0, s.lastAccess.Load())
}

// Get returns the value under key, decoded into the codec's natural Go
// types if it was not set in this process (msgpack: int64, float64,
// map[string]any ...). Prefer the typed Get[T]. ok is false when the key is
// absent or the value cannot be decoded untyped (then the reason is logged).
func (s *Session) Get(key string) (value any, ok bool) {
	if s == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.values[key]
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
	s.values[key] = e
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
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.values[key]
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
	s.values[key] = e
	return v, true, nil
}

// Set stores value under key. The value is encoded at once: a value the
// codec cannot store (a func, a chan, a cyclic structure) fails here with
// ErrUnserializable naming the key and type, and the session is unchanged;
// so does a change that would exceed Config.MaxSessionSize
// (ErrSessionTooLarge) or a bad key (ErrInvalidKey). The first Set of a new
// session gives it its ID.
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
	s.mu.Lock()
	old, had := s.values[key]
	size := s.size + len(raw)
	if had {
		size -= len(old.raw)
	} else {
		size += len(key) + fieldOverhead
	}
	if size > s.m.cfg.MaxSessionSize {
		s.mu.Unlock()
		return fmt.Errorf("%w: Set(%q) would make it %d bytes, over the limit of %d", ErrSessionTooLarge, key, size, s.m.cfg.MaxSessionSize)
	}
	started := s.startLocked()
	s.values[key] = entry{raw: raw, val: value}
	s.size = size
	s.markDirtyLocked(key)
	s.mu.Unlock()
	s.m.changed(s, started)
	return nil
}

// Delete removes key; deleting a missing key does nothing.
func (s *Session) Delete(key string) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	old, had := s.values[key]
	if !had {
		s.mu.Unlock()
		return nil
	}
	delete(s.values, key)
	s.size -= len(key) + fieldOverhead + len(old.raw)
	s.markDirtyLocked(key)
	s.mu.Unlock()
	s.m.changed(s, false)
	return nil
}

// Keys returns the keys present, sorted.
func (s *Session) Keys() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	sort.Strings(keys)
	return keys
}

// Renew gives the session a new ID and keeps its data; the entry under the
// old ID is removed from memory and storage. Call it when privileges change,
// such as at login, to defeat session fixation. The response carries the
// new cookie. In cluster mode the storage work happens before Renew
// returns, and its error is returned; in sticky mode it is written behind.
// Renewing a session that was never written does nothing.
func (s *Session) Renew() error {
	if s == nil {
		return ErrNoSession
	}
	return s.m.renew(s)
}

// Invalidate ends the session: its data is removed from memory and storage,
// OnSessionEnd fires, and the response deletes the cookie. The *Session is
// then empty and new: a later Set starts a new session with a new ID (log
// out, then continue as a guest). In cluster mode the storage delete happens
// before Invalidate returns, and its error is returned; in sticky mode it is
// written behind.
func (s *Session) Invalidate() error {
	if s == nil {
		return ErrNoSession
	}
	return s.m.invalidate(s)
}

// fieldOverhead approximates the envelope bytes around one value.
const fieldOverhead = 4

// startLocked gives a new session its identity. It reports whether it did,
// so that the caller fires OnSessionStart once the lock is released.
func (s *Session) startLocked() bool {
	if s.id != "" {
		return false
	}
	s.id = newID()
	s.key = storageKey(s.m.cfg.KeyPrefix, s.id)
	s.created = s.m.now().UnixMilli()
	s.ended.Store(false)
	return true
}

func (s *Session) markDirtyLocked(key string) {
	s.seq++
	if s.dirty == nil {
		s.dirty = make(map[string]uint64)
	}
	s.dirty[key] = s.seq
}

// resetLocked turns s into a new, empty, unwritten session.
func (s *Session) resetLocked() {
	s.id, s.key = "", ""
	s.values = make(map[string]entry)
	s.size, s.dirty, s.revision, s.created = 0, nil, 0, 0
	s.base = nil
	s.storedAccess.Store(0)
}

// envelopeLocked encodes the whole session as it is now, stamped with
// the given access time, as the next revision.
func (s *Session) envelopeLocked(now time.Time) []byte {
	env := serializer.Envelope{
		Codec:      s.m.codec.ID(),
		Created:    s.created,
		LastAccess: now.UnixMilli(),
		Expires:    now.Add(s.m.cfg.Timeout).UnixMilli(),
		Revision:   s.revision + 1,
		Values:     make([]serializer.Field, 0, len(s.values)),
	}
	for k, e := range s.values {
		env.Values = append(env.Values, serializer.Field{Key: k, Value: e.raw})
	}
	if s.m.sealer != nil {
		return s.m.sealer.Seal(env.Marshal(), []byte(s.key))
	}
	return env.Marshal()
}

// storedLocked records a successful write of data, an envelope made by
// envelopeLocked at access time now when the change counter was at seq.
func (s *Session) storedLocked(data []byte, now time.Time, seq uint64, keepBase bool) {
	s.revision++
	s.storedAccess.Store(now.UnixMilli())
	if keepBase {
		s.base = data
	}
	for k, v := range s.dirty {
		if v <= seq {
			delete(s.dirty, k)
		}
	}
	if len(s.dirty) == 0 {
		s.dirty = nil // most sessions are clean most of the time
	}
}

// adoptLocked makes s reflect a stored envelope (read at request start, or
// after losing a compare-and-swap) while keeping this server's uncommitted
// changes on top: the key-level merge of cluster mode.
func (s *Session) adoptLocked(env *serializer.Envelope, data []byte) {
	values := make(map[string]entry, len(env.Values)+len(s.dirty))
	size := 0
	for _, f := range env.Values {
		values[f.Key] = entry{raw: f.Value, val: notDecoded}
		size += len(f.Key) + fieldOverhead + len(f.Value)
	}
	for k := range s.dirty {
		old, had := values[k]
		if had {
			size -= len(k) + fieldOverhead + len(old.raw)
		}
		if e, ok := s.values[k]; ok {
			values[k] = e
			size += len(k) + fieldOverhead + len(e.raw)
		} else {
			delete(values, k)
		}
	}
	s.values, s.size = values, size
	s.revision = env.Revision
	s.created = env.Created
	s.storedAccess.Store(env.LastAccess)
	s.base = data
}

// checkSerializable rejects what no codec can store before the codec sees
// it: funcs, chans, unsafe pointers and cyclic values (which would make
// msgpack and gob recurse until the stack overflows).
func checkSerializable(v any) error {
	switch v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, []byte, time.Time, time.Duration, []string, []int, map[string]string:
		return nil
	}
	return walkValue(reflect.ValueOf(v), map[uintptr]bool{}, 0)
}

const maxDepth = 10000

func walkValue(v reflect.Value, onPath map[uintptr]bool, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch v.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("contains a %s", v.Type())
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() <= reflect.Complex128 {
			return nil // slice of scalars: cannot hold anything bad
		}
		p := v.Pointer()
		if v.Kind() == reflect.Slice {
			// A slice is a cycle only if an element leads back to it; key
			// on its array plus length so that sub-slices don't collide.
			p ^= uintptr(v.Len()) << 48
		}
		if onPath[p] {
			return fmt.Errorf("contains a cycle through a %s", v.Type())
		}
		onPath[p] = true
		defer delete(onPath, p)
		switch v.Kind() {
		case reflect.Pointer:
			return walkValue(v.Elem(), onPath, depth+1)
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				if err := walkValue(it.Key(), onPath, depth+1); err != nil {
					return err
				}
				if err := walkValue(it.Value(), onPath, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		fallthrough
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if err := walkValue(v.Index(i), onPath, depth+1); err != nil {
				return err
			}
		}
	case reflect.Interface:
		if !v.IsNil() {
			return walkValue(v.Elem(), onPath, depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := t.Field(i)
			// Codecs skip unexported fields and fields tagged "-".
			if !f.IsExported() || f.Tag.Get("msgpack") == "-" || f.Tag.Get("json") == "-" {
				continue
			}
			if err := walkValue(v.Field(i), onPath, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// stored reports whether an entry for the
// session's key has been written (or read) in storage.
func (s *Session) stored() bool { return s.storedAccess.Load() != 0 }
