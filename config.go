package sessions

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/serializer"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Manager. The zero value is usable: in-process memory
// storage, sticky mode, 30 min timeout, secure cookies.
type Config struct {
	// Storage names where sessions are backed up: a name from Storages,
	// a name given to DefineStorage or RegisterStore, "memory" (the
	// default: in-process, lost on exit), or a URL whose scheme a driver
	// registered, such as "redis://127.0.0.1:6379/0" or
	// "bolt:///var/lib/app/sessions.db" (import the driver package for its
	// scheme). Ignored when Store is set.
	Storage string
	// Storages defines named storages for this Config (LoadConfig fills
	// it from a file's [storages.NAME] tables).
	Storages map[string]StorageConfig
	// Store, when set, is the gocache store to use directly, as
	// database/sql's OpenDB takes a ready connector. The caller owns it:
	// Close does not close it. Several Managers may share one Store; each
	// needs the same KeyPrefix to see the same sessions.
	Store store.StoreInterface
	// KeyPrefix starts every storage key, so sessions never collide with
	// other data in a shared cache. Default: the storage URL's key_prefix
	// option, else "sess:".
	KeyPrefix string

	// Cluster selects cluster mode: storage is authoritative, read on
	// every request and written before the response. False (sticky mode):
	// memory is authoritative, storage is read only on a miss and written
	// behind. See the README's table.
	Cluster bool

	// Timeout ends a session unused this long: it is removed from memory
	// and storage and OnSessionEnd fires. Default 30 min.
	Timeout time.Duration
	// IdleEvict drops a session unused this long from memory only (it is
	// flushed first if it has unsaved changes; it stays in storage and the
	// next request reloads it). Default 5 min; negative: never.
	IdleEvict time.Duration
	// WriteBehind is how long sticky mode waits to coalesce changes
	// before writing a session to storage; it bounds what a crash can
	// lose. Default 100 ms.
	WriteBehind time.Duration
	// StorageTimeout bounds each storage call. Default 2 s.
	StorageTimeout time.Duration

	// Cookie configures the session cookie.
	Cookie CookieConfig
	// Codec encodes values. Default serializer.Msgpack.
	Codec serializer.Codec
	// MaxSessionSize caps the encoded size of one session in bytes; a Set
	// beyond it fails with ErrSessionTooLarge. Default 512 KiB.
	MaxSessionSize int
	// MaxKeyLength caps the length of a value's key. Default 256.
	MaxKeyLength int
	// EncryptionKeys, when set, encrypt and authenticate every stored
	// session (XChaCha20-Poly1305 under a key derived from the first one;
	// keys of 16, 24 or 32 random bytes). One key may seal any number of
	// entries: each gets a random 192-bit nonce. The first key encrypts,
	// all of them decrypt (entries sealed with AES-GCM by earlier versions
	// too): to rotate, put the new key first and drop the old one after
	// Timeout. An entry is bound to its storage key, so one copied under
	// another key does not open. With keys set, unencrypted entries are
	// rejected (read as no session), and without keys, encrypted ones are.
	EncryptionKeys [][]byte

	// OnSessionStart is called once when a new session is first written,
	// on the request's goroutine, after the value is set.
	OnSessionStart func(s *Session)
	// OnSessionEnd is called when a session ends: by Invalidate, on the
	// server that called it, or by timeout, once across all Managers that
	// share the storage, decided by the storage: the server whose
	// conditional delete of the expired entry succeeds calls it — the one
	// holding the session in memory, one whose request reads it after its
	// deadline, or, for a session no server holds (evicted, or written by
	// a process that has exited), the first sweep after the deadline plus
	// StorageTimeout+WriteBehind (a sweep runs every min(Timeout,
	// IdleEvict)/4, at most 30 s). A server that dies between winning and
	// calling it loses that one event. Storages that cannot list expiring
	// entries (memcached, plain gocache stores) miss the third kind; New
	// logs that once. The *Session is read-only; it carries the ID when
	// the ending server held or read the session under it, and no ID when
	// a sweep found it in storage (storage keys do not reveal IDs). Idle
	// eviction is not an end. It must not block for long.
	OnSessionEnd func(s *Session, reason EndReason)

	// Logger receives the library's logs. Default slog.Default().
	Logger *slog.Logger
	// RequireStorageAtStart makes New fail when the storage cannot be
	// reached. By default New starts anyway (a storage outage must not
	// stop an app from starting, nor a crash loop make it worse), logs,
	// and opens the storage in the background: until then sticky mode
	// serves new sessions from memory and queues their writes, and cluster
	// mode answers through ErrorHandler. Configuration errors (a bad URL
	// or option) fail New either way.
	RequireStorageAtStart bool

	// ErrorHandler answers a request whose session cannot be read or saved
	// because storage failed (cluster mode, and sticky mode on a memory
	// miss: err is a *StorageError), whose commit kept conflicting
	// (ErrConflict), or, in cluster mode, whose change could not be saved
	// because the session ended on another server meanwhile (err wraps
	// ErrSessionEnded); also every request after Close (ErrManagerClosed).
	// Default: 503 with Retry-After: 1 and a short plain-text message; 409
	// Conflict for ErrSessionEnded.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Observer, when set, is told of every storage call (its operation,
	// duration and error) and write-behind flush (its size), for latency
	// and batch-size metrics: promsessions.NewObserver makes one for
	// Prometheus. Nil: nothing is timed.
	Observer Observer
	// TracerProvider makes the OpenTelemetry spans of storage work:
	// loading a session, a cluster commit, a write-behind flush, a sweep's
	// claims, each with a child span per storage call. Nil: the global
	// provider (otel.SetTracerProvider); while none is installed, no span
	// is started and tracing costs nothing.
	TracerProvider trace.TracerProvider
}

// CookieConfig configures the session cookie. The defaults are the safe
// ones: HttpOnly, Secure, SameSite=Lax, Path=/, no Max-Age.
type CookieConfig struct {
	// Name of the cookie. Default "session".
	Name string
	// Path of the cookie. Default "/".
	Path string
	// Domain of the cookie. Default: none (host only).
	Domain string
	// SameSite mode. Default http.SameSiteLaxMode.
	SameSite http.SameSite
	// Insecure drops the Secure attribute, for development over plain
	// HTTP on hosts other than localhost.
	Insecure bool
	// AllowScript drops the HttpOnly attribute.
	AllowScript bool
	// Persist gives the cookie a Max-Age of Timeout, so that it outlives
	// the browser session; it is re-sent at most every Timeout/10 while
	// the session is in use.
	Persist bool
}

func (c *Config) setDefaults() error {
	if c.Storage == "" {
		c.Storage = "memory"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, 30*time.Minute)
	def(&c.IdleEvict, 5*time.Minute)
	def(&c.WriteBehind, 100*time.Millisecond)
	def(&c.StorageTimeout, 2*time.Second)
	if c.Timeout < 0 || c.WriteBehind < 0 || c.StorageTimeout < 0 {
		return errors.New("sessions: Timeout, WriteBehind and StorageTimeout must not be negative")
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = "session"
	}
	if !validCookieName(c.Cookie.Name) {
		return fmt.Errorf("sessions: %q is not a valid cookie name", c.Cookie.Name)
	}
	if c.Cookie.Path == "" {
		c.Cookie.Path = "/"
	}
	if c.Cookie.SameSite == 0 {
		c.Cookie.SameSite = http.SameSiteLaxMode
	}
	if c.Codec == nil {
		c.Codec = serializer.Msgpack
	}
	if c.MaxSessionSize <= 0 {
		c.MaxSessionSize = 512 << 10
	}
	if c.MaxKeyLength <= 0 {
		c.MaxKeyLength = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ErrorHandler == nil {
		c.ErrorHandler = defaultErrorHandler
	}
	return nil
}
