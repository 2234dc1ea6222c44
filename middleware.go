package sessions

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
	"unsafe"
)

type contextKey struct{}

// sessionContext is the request context carrying its session: a
// context.WithValue without the separate allocation.
type sessionContext struct {
	context.Context
	s *Session
}

// Value returns the session for the library's key, else asks the parent.
func (c *sessionContext) Value(key any) any {
	if key == (contextKey{}) {
		return c.s
	}
	return c.Context.Value(key)
}

// FromContext returns the session of the request whose context ctx is,
// inside a handler wrapped by Manager.Handler; nil elsewhere (the methods of
// a nil *Session are safe to call).
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(contextKey{}).(*Session)
	return s
}

// Handler wraps next so that every request carries its session, available
// through FromContext(r.Context()).
//
// The session comes from the cookie: a missing, malformed or unknown cookie
// gives a new, empty session (a malformed one costs no storage lookup). The
// response carries a Set-Cookie when the session was created, renewed or
// invalidated. In cluster mode a changed session is written to storage
// before the response is committed — on the handler's first WriteHeader,
// Write or Flush, or when it returns — so a redirect's next request, on any
// server, sees the change. When storage fails, the request is answered by
// Config.ErrorHandler instead (cluster mode; sticky mode only when the
// session is not in memory).
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.closed.Load() {
			m.cfg.ErrorHandler(w, r, ErrManagerClosed)
			return
		}
		incoming, ver := m.cookieID(r)
		var st *state
		var now time.Time
		if incoming != "" {
			now = m.now()
			var err error
			if st, err = m.acquire(r.Context(), incoming, ver, now); err != nil {
				m.stats.reqFailed.Add(1)
				m.cfg.ErrorHandler(w, r, err)
				return
			}
		}
		if st == nil {
			m.stats.reqNew.Add(1) // acquire counted the others
		}
		// One allocation carries the wrapped writer, the request's
		// session handle and the context.
		rw := &responseWriter{ResponseWriter: w, m: m, incoming: incoming, incomingVer: ver}
		h := &rw.sess
		h.m = m
		if st != nil {
			h.first = binding{st, incoming}
			h.firstUsed, h.pinned = true, true
			h.bound.Store(&h.first)
			m.touch(st, now)
		}
		rw.ctx = sessionContext{Context: r.Context(), s: h}
		rw.r = r.WithContext(&rw.ctx)
		defer h.release() // even if the handler panics
		next.ServeHTTP(rw, rw.r)
		rw.finish()
	})
}

// release unpins the request's session when its handler is done.
func (h *Session) release() {
	h.mu.Lock()
	if h.pinned {
		st, _ := h.cur()
		h.m.release(st)
		h.pinned = false
	}
	h.finished = true
	h.mu.Unlock()
}

// touch records a use of st; in sticky mode it also queues a rewrite when
// the stored access time is due for a refresh, so that storage does not
// expire an active session.
func (m *Manager) touch(st *state, now time.Time) {
	st.lastAccess.Store(now.UnixNano())
	m.refreshIfDue(st, now.UnixNano())
}

// refreshIfDue queues a rewrite of st (sticky mode) when its stored copy's
// access time is Timeout/10 or more before now (Unix ns): the stored
// deadline follows the session's use.
func (m *Manager) refreshIfDue(st *state, now int64) {
	if m.cfg.Cluster || st.queued.Load() {
		return
	}
	if stored := st.storedAccess.Load(); stored != 0 && now/int64(time.Millisecond)-stored >= m.touchEvery.Milliseconds() {
		m.enqueue(st)
	}
}

// cookieID returns the session ID and version from the request's cookie
// if it is well-formed, else "". It does not allocate.
func (m *Manager) cookieID(r *http.Request) (id string, ver version) {
	name := m.cfg.Cookie.Name
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := part[len(name)+1:]
				if id, ver, ok := parseCookie(v); ok {
					return id, ver
				}
			}
		}
	}
	return "", version{}
}

// responseWriter commits the session (cluster mode) and sets the cookie
// just before the response header goes out.
type responseWriter struct {
	http.ResponseWriter
	m           *Manager
	r           *http.Request // the request as the handler sees it
	ctx         sessionContext
	sess        Session // the request's handle
	incoming    string  // the well-formed session ID the request carried
	incomingVer version // the version it carried
	sent        string  // the ID the response's Set-Cookie carried
	prepared    bool
	aborted     bool
}

// prepare runs once, before the header is written. It reports whether the
// handler's response may proceed.
func (w *responseWriter) prepare() bool {
	if w.prepared {
		return !w.aborted
	}
	w.prepared = true
	if w.m.cfg.Cluster {
		if err := w.m.commit(w.r.Context(), &w.sess); err != nil {
			w.aborted = true
			if errors.Is(err, ErrSessionEnded) {
				w.m.log.Info("sessions: a change to a session that ended meanwhile was not saved", "path", w.r.URL.Path)
			} else {
				level := slog.LevelError
				if se := (*StorageError)(nil); errors.As(err, &se) {
					level = slog.LevelDebug // the storage's failure is reported once, not per request
				}
				w.m.log.Log(w.r.Context(), level, "sessions: session not saved; answering with the error handler", "err", err)
				// Keep memory consistent with storage: the next request reloads.
				if st, id := w.sess.cur(); st != nil {
					w.m.ram.remove(id, st)
				}
			}
			w.m.cfg.ErrorHandler(w.ResponseWriter, w.r, err)
			return false
		}
	}
	w.setCookie()
	return true
}

// setCookie decides, in one place, what the response says about the
// session cookie, from what this request did: it sends the ID only if this
// request created, renewed or (sticky mode, where the cookie carries the
// session's version) changed the session, a deletion only if this request
// invalidated the session and started no new one, and otherwise nothing —
// whatever other requests did to the session meanwhile.
func (w *responseWriter) setCookie() {
	h := &w.sess
	m := w.m
	h.mu.Lock()
	b, live := h.bound.Load(), false
	var st *state
	var id string
	var ver version
	if b != nil {
		st, id = b.st, b.id
		st.mu.Lock()
		live = h.liveLocked(b)
		if live && !m.cfg.Cluster {
			ver = version{st.revision, m.node}
			if len(st.dirty) > 0 {
				ver.rev++ // the revision its next write stores
			}
		}
		st.mu.Unlock()
	}
	created, renewed, invalidated, wrote := h.created, h.renewed, h.invalidated, h.wrote
	h.mu.Unlock()

	var line string
	switch {
	case live && (created || renewed),
		// A change: the browser learns the session's new version (not
		// again for more changes within one write-behind window).
		live && wrote && !m.cfg.Cluster && (id != w.incoming || ver != w.incomingVer):
		line = m.cookieLine(id, ver)
	case invalidated && st == nil && w.incoming != "":
		w.sent = ""
		w.addCookieHeader(m.cookieDelete)
		return
	case live && id == w.incoming && w.refreshPersistentCookie(st):
		line = m.cookieLine(id, w.incomingVer)
	default:
		return
	}
	if m.cfg.Cookie.Persist {
		st.cookieSent.Store(m.now().UnixMilli())
	}
	w.sent = id
	w.addCookieHeader(line)
}

// cookieLine is the Set-Cookie line for id at version ver, built in one
// allocation.
func (m *Manager) cookieLine(id string, ver version) string {
	name := m.cfg.Cookie.Name
	b := make([]byte, 0, len(name)+1+idLen+24+len(m.cookieAttrs))
	b = append(b, name...)
	b = append(b, '=')
	b = appendCookieValue(b, id, ver)
	b = append(b, m.cookieAttrs...)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// addCookieHeader adds a Set-Cookie header line, and the headers that
// keep caches from storing it (one allocation when the response has none
// of the three yet).
func (w *responseWriter) addCookieHeader(line string) {
	hd := w.Header()
	_, a := hd["Set-Cookie"]
	_, b := hd["Vary"]
	_, c := hd["Cache-Control"]
	if a || b || c {
		hd["Set-Cookie"] = append(hd["Set-Cookie"], line)
		hd["Vary"] = append(hd["Vary"], "Cookie")
		hd["Cache-Control"] = append(hd["Cache-Control"], `no-cache="Set-Cookie"`)
		return
	}
	v := []string{line, "Cookie", `no-cache="Set-Cookie"`}
	// Each gets a slice of capacity 1: an Add later copies, never
	// writing into its neighbour.
	hd["Set-Cookie"], hd["Vary"], hd["Cache-Control"] = v[0:1:1], v[1:2:2], v[2:3:3]
}

// refreshPersistentCookie reports whether a persistent cookie (Max-Age)
// should be sent again although the ID did not change: at most every
// Timeout/10, so that an active user's cookie does not expire under them.
func (w *responseWriter) refreshPersistentCookie(st *state) bool {
	if !w.m.cfg.Cookie.Persist {
		return false
	}
	now := w.m.now().UnixMilli()
	last := st.cookieSent.Load()
	return now-last >= w.m.touchEvery.Milliseconds() && st.cookieSent.CompareAndSwap(last, now)
}

// finish runs after the handler returned.
func (w *responseWriter) finish() {
	if !w.prepared {
		w.prepare()
		return
	}
	if w.aborted {
		return
	}
	if w.m.cfg.Cluster {
		// Changes made after the header went out: save them, though the
		// client can no longer be told of a failure.
		if err := w.m.commit(w.r.Context(), &w.sess); err != nil {
			w.m.log.Error("sessions: change made after the response started was not saved", "err", err)
		}
	}
	h := &w.sess
	h.mu.Lock()
	_, id := h.cur()
	late := (h.created || h.renewed) && id != w.sent
	h.mu.Unlock()
	if late {
		w.m.log.Warn("sessions: session created or renewed after the response header was written; the client did not get its cookie",
			"path", w.r.URL.Path)
	}
}

// WriteHeader commits the session, sets the cookie, then writes the header.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: not the response yet
		return
	}
	if w.prepare() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write commits the session and sets the cookie before the first byte.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.prepare() {
		return 0, ErrResponseAborted
	}
	return w.ResponseWriter.Write(b)
}

// Flush commits the session before flushing.
func (w *responseWriter) Flush() {
	if w.prepare() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack commits the session before handing over the connection.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.prepare() {
		return nil, nil, ErrResponseAborted
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController access to the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
