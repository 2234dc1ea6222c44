package sessions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/sessionstorage/sessions/drivers/memory" // the default storage, memory://
	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/serializer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Stats are a Manager's counters since New.
type Stats struct {
	Resident      int // sessions in memory
	PendingWrites int // write-behind operations not yet acknowledged
	// WriteBehindLag is the age of the oldest change not yet acknowledged
	// by storage (sticky mode): what a crash would lose right now. It
	// stays under WriteBehind unless storage cannot keep up or fails.
	WriteBehindLag time.Duration
	StorageReads   uint64 // storage Get calls
	StorageWrites  uint64 // storage writes acknowledged
	StorageDeletes uint64 // storage deletes acknowledged
	StorageErrors  uint64 // failed storage calls
	CorruptEntries uint64 // stored entries that could not be read as a session (each counted and logged once)
	Conflicts      uint64 // cluster commits that had to merge another server's write
	Evicted        uint64 // sessions dropped from memory for idleness
	Ended          uint64 // sessions ended (timeout or Invalidate)
	// Repersisted counts sessions queued to be written again because
	// storage failed and recovered, and may have lost them (sticky mode).
	Repersisted uint64

	// Requests by how the Handler found their session at request start;
	// every request is counted once (except after Close).
	RequestsMemory  uint64 // found in memory, no storage read of its own (sticky mode)
	RequestsStorage uint64 // read from storage: a memory miss (sticky mode); every request with a session (cluster mode)
	RequestsNew     uint64 // no session: no cookie, or an unknown, ended or unreadable one
	RequestsFailed  uint64 // the session could not be read (storage failed, or the request was cancelled): ErrorHandler
	Created         uint64 // sessions started (their first Set)
	// EndedTimeout and EndedInvalidated split Ended by EndReason.
	EndedTimeout, EndedInvalidated uint64
	// CorruptEntries by cause: the entry could not be opened
	// (EncryptionKeys: another key, tampered with, or sealed and
	// unsealed mixed up), is not an envelope this version reads
	// (corrupt, truncated, another format), or was written with another
	// codec.
	CorruptSealed, CorruptFormat, CorruptCodec uint64
	// WriteBehindRetries counts write-behind operations queued again after
	// a failed write or delete (sticky mode); each is retried with backoff.
	WriteBehindRetries uint64
	// ConflictGiveUps counts cluster commits and Updates that gave up
	// with ErrConflict after repeated conflicts.
	ConflictGiveUps uint64
	// EndClaimsWon and EndClaimsLost count claims of timed-out sessions'
	// ends (a CompareAndDelete of the stored copy): won fires OnSessionEnd
	// here, lost means another Manager claimed it or the entry changed.
	EndClaimsWon, EndClaimsLost uint64
}

// Manager keeps sessions in memory and backs them up to a storage. Create
// it with New, wrap handlers with Handler, and Close it on shutdown. It is
// safe for concurrent use.
type Manager struct {
	cfg     Config
	storage *adapter.Storage
	codec   serializer.Codec
	sealer  *serializer.Sealer // nil: entries are not encrypted
	log     *slog.Logger
	ram     ram
	wb      writeBehind

	touchEvery time.Duration
	storeTTL   time.Duration

	stop chan struct{}
	// flushCtx is the context of background storage writes; Close cancels
	// it when its own deadline passes.
	flushCtx    context.Context
	cancelFlush context.CancelFunc
	wg          sync.WaitGroup
	closed      atomic.Bool

	storageDown atomic.Bool
	health      healthLog
	// markerWritten: this Manager's alive marker is in storage (sticky
	// mode; see writeMarker).
	markerWritten atomic.Bool
	// outages counts storage failures seen (each run of failed calls
	// once): a stored copy read or written before the latest one may have
	// been lost by the storage since.
	outages atomic.Uint64
	// node tells this Manager's changes from other servers' in the
	// versions session cookies carry (sticky mode). Immutable.
	node uint32
	// cookieAttrs follows "name=value" in a Set-Cookie line (Path,
	// Domain, Max-Age, HttpOnly, Secure, SameSite); cookieDelete is the
	// whole line that deletes the cookie. Immutable.
	cookieAttrs, cookieDelete string
	// lastTick is when the sweeper last ran (Unix ns, by now).
	lastTick   atomic.Int64
	unreadable keySet        // unreadable entries reported so far
	repersist  repersistWalk // sticky mode: rewrite resident sessions after an outage
	refused    keySet        // entries whose writes failed, reported so far

	// now is the clock every deadline is judged by; tests replace it.
	now func() time.Time

	stats struct {
		reads, writes, deletes, errors, corrupt, conflicts, evicted, ended, repersisted atomic.Uint64
		// Counted on every request: a cache line each (observe.go).
		reqMemory, reqStorage, reqNew, reqFailed counter
		created, endedTimeout, endedInvalidated  atomic.Uint64
		corruptSeal, corruptFormat, corruptCodec atomic.Uint64
		giveUps, claimsWon, claimsLost           atomic.Uint64
	}

	// tracer makes the spans of storage work; traceAttrs are every
	// span's mode and storage (observe.go). Immutable.
	tracer     trace.Tracer
	traceAttrs []attribute.KeyValue
}

// New validates cfg, fills in defaults, opens the storage and starts the
// Manager's background work. Close releases it.
func New(cfg Config) (*Manager, error) { return newManager(cfg, time.Now) }

func newManager(cfg Config, now func() time.Time) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, codec: cfg.Codec, log: cfg.Logger, stop: make(chan struct{}), now: now}
	if c, ok := serializer.ByID(m.codec.ID()); ok && reflect.TypeOf(c) != reflect.TypeOf(m.codec) {
		return nil, fmt.Errorf("sessions: codec %s uses id %d, reserved for the library's %s codec", m.codec.Name(), m.codec.ID(), c.Name())
	}
	if len(cfg.EncryptionKeys) > 0 {
		sealer, err := serializer.NewSealer(cfg.EncryptionKeys...)
		if err != nil {
			return nil, fmt.Errorf("sessions: EncryptionKeys: %w", err)
		}
		m.sealer = sealer
	}
	var unreachable error
	if cfg.Store != nil {
		m.storage = adapter.New(fmt.Sprintf("%s store", cfg.Store.GetType()), cfg.Store, false)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.StorageTimeout*5)
		st, err := adapter.Resolve(ctx, cfg.Storage, cfg.Storages)
		cancel()
		if err != nil && (st == nil || cfg.RequireStorageAtStart) {
			return nil, err
		}
		unreachable = err // valid but not reachable: start, open it later
		m.storage = st
	}
	if m.cfg.KeyPrefix == "" {
		m.cfg.KeyPrefix = cmp.Or(m.storage.KeyPrefix(), "sess:")
	}
	m.initTracing()
	m.ram.init()
	m.wb.init()
	m.flushCtx, m.cancelFlush = context.WithCancel(context.Background())
	m.lastTick.Store(now().UnixNano())
	for m.node == 0 {
		m.node = mrand.Uint32()
	}
	m.cookieAttrs, m.cookieDelete = cookieLines(m.cfg)
	m.touchEvery = cfg.Timeout / 10
	// Stored entries outlive their deadline (kept in the envelope and
	// checked on every load) by Timeout, so that the sweeps' claims
	// (claimExpired) find every entry between its deadline and its
	// storage expiry, and a storage's time to live frees it when no
	// server runs at all.
	m.storeTTL = 2 * cfg.Timeout
	if unreachable == nil {
		m.warnIfEndsUnseen()
	}
	if unreachable != nil {
		m.log.Error("sessions: storage unreachable at start; opening it in the background meanwhile (sticky mode serves new sessions from memory, cluster mode answers with the ErrorHandler)",
			"storage", m.storage.Name(), "err", unreachable)
		m.storageDown.Store(true)
		m.outages.Add(1)
		m.health.startFailing(m.now())
		m.wg.Add(1)
		go m.openLater()
	}
	m.wg.Add(1)
	go m.sweepLoop()
	if !cfg.Cluster {
		m.wg.Add(1)
		go m.flushLoop()
	}
	mode := "sticky"
	if cfg.Cluster {
		mode = "cluster"
	}
	m.log.Info("sessions: started", "storage", m.storage.Name(), "mode", mode,
		"timeout", cfg.Timeout, "idle_evict", cfg.IdleEvict, "write_behind", cfg.WriteBehind,
		"codec", m.codec.Name(), "key_prefix", m.cfg.KeyPrefix, "encrypted", m.sealer != nil)
	return m, nil
}

func validCookieName(name string) bool {
	return name != "" && !strings.ContainsAny(name, " \t\r\n;,=\"()<>@:\\/[]?{}") && isASCIIPrintable(name)
}

func isASCIIPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// cookieLines returns what follows "name=value" in the session's
// Set-Cookie lines, and the line that deletes the cookie, as net/http
// writes them.
func cookieLines(cfg Config) (attrs, deletion string) {
	c := cfg.Cookie
	ck := http.Cookie{Name: c.Name, Value: "v", Path: c.Path, Domain: c.Domain,
		Secure: !c.Insecure, HttpOnly: !c.AllowScript, SameSite: c.SameSite}
	if c.Persist {
		ck.MaxAge = int((cfg.Timeout + time.Second - 1) / time.Second)
	}
	attrs = strings.TrimPrefix(ck.String(), c.Name+"=v")
	ck.Value, ck.MaxAge = "", -1
	return attrs, ck.String()
}

// defaultErrorHandler answers 503 with Retry-After, so clients and
// balancers retry instead of treating the server as broken; and 409 for a
// change lost because the session ended meanwhile (retrying cannot help).
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrSessionEnded) {
		http.Error(w, "The session ended while this request ran; its changes were not saved.", http.StatusConflict)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "Session storage unavailable, please retry shortly.", http.StatusServiceUnavailable)
}

func (m *Manager) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > m.cfg.MaxKeyLength {
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalidKey, len(key), m.cfg.MaxKeyLength)
	}
	return nil
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Resident:       m.ram.len(),
		PendingWrites:  m.wb.len(),
		WriteBehindLag: m.wb.lag(),
		StorageReads:   m.stats.reads.Load(),
		StorageWrites:  m.stats.writes.Load(),
		StorageDeletes: m.stats.deletes.Load(),
		StorageErrors:  m.stats.errors.Load(),
		CorruptEntries: m.stats.corrupt.Load(),
		Conflicts:      m.stats.conflicts.Load(),
		Evicted:        m.stats.evicted.Load(),
		Ended:          m.stats.ended.Load(),
		Repersisted:    m.stats.repersisted.Load(),

		RequestsMemory:     m.stats.reqMemory.Load(),
		RequestsStorage:    m.stats.reqStorage.Load(),
		RequestsNew:        m.stats.reqNew.Load(),
		RequestsFailed:     m.stats.reqFailed.Load(),
		Created:            m.stats.created.Load(),
		EndedTimeout:       m.stats.endedTimeout.Load(),
		EndedInvalidated:   m.stats.endedInvalidated.Load(),
		CorruptSealed:      m.stats.corruptSeal.Load(),
		CorruptFormat:      m.stats.corruptFormat.Load(),
		CorruptCodec:       m.stats.corruptCodec.Load(),
		WriteBehindRetries: m.wb.requeued.Load(),
		ConflictGiveUps:    m.stats.giveUps.Load(),
		EndClaimsWon:       m.stats.claimsWon.Load(),
		EndClaimsLost:      m.stats.claimsLost.Load(),
	}
}

// Close stops the Manager: requests get ErrManagerClosed through the
// ErrorHandler, pending write-behind changes are written (retrying until
// ctx is done), background goroutines stop, and a storage the Manager
// opened from a URL is closed. It returns an error if changes remain
// unwritten when ctx ends; give it a deadline. Calling Close again returns
// ErrManagerClosed.
func (m *Manager) Close(ctx context.Context) error {
	if m.closed.Swap(true) {
		return ErrManagerClosed
	}
	close(m.stop)
	// A flush in progress may be waiting on a slow storage: it gets until
	// ctx ends, then its calls are cancelled (what they held is queued
	// again and reported below).
	stopped := make(chan struct{})
	go func() { m.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		m.cancelFlush()
		<-stopped
	}
	m.cancelFlush()
	err := m.drain(ctx)
	if cerr := m.storage.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// decode parses a stored entry. An entry this program cannot read (corrupt,
// truncated, another format version or codec) is logged with the reason,
// counted, and reported as nil: the caller starts a fresh session.
func (m *Manager) decode(key string, data []byte) *serializer.Envelope {
	plain, err := data, error(nil)
	if m.sealer != nil {
		plain, err = m.sealer.Open(data, []byte(key))
	}
	sealErr := err != nil
	var env *serializer.Envelope
	if err == nil {
		env, err = serializer.DecodeEnvelope(plain)
	}
	formatErr := err != nil && !sealErr
	if err == nil && env.Codec != m.codec.ID() {
		name := "unknown"
		if c, ok := serializer.ByID(env.Codec); ok {
			name = c.Name()
		}
		err = fmt.Errorf("written with codec %d (%s), this server uses %s", env.Codec, name, m.codec.Name())
	}
	if err != nil {
		if !m.unreadable.first(key) {
			return nil // reported already: a client keeps sending its cookie
		}
		m.stats.corrupt.Add(1)
		m.countUnreadable(sealErr, formatErr)
		m.log.Warn("sessions: unreadable stored session ignored; a fresh session starts", "key", key, "bytes", len(data), "reason", err)
		return nil
	}
	return env
}

// openLater opens a storage that was unreachable when New ran, retrying
// with backoff until it opens or the Manager closes.
func (m *Manager) openLater() {
	defer m.wg.Done()
	backoff := min(m.cfg.StorageTimeout, time.Second)
	retry := time.NewTimer(backoff)
	defer retry.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-retry.C:
		}
		ctx, cancel := context.WithTimeout(m.flushCtx, m.cfg.StorageTimeout*5)
		st, err := m.storage.Reopen(ctx)
		cancel()
		if err == nil {
			m.storage.Opened(st)
			m.log.Info("sessions: storage opened", "storage", m.storage.Name())
			m.health.failing.Store(false) // said so: no "recovered" line
			m.warnIfEndsUnseen()
			m.storageOK()
			m.wb.signal()
			return
		}
		if !errors.Is(err, ErrStorageUnreachable) {
			m.log.Error("sessions: opening the storage failed; retrying", "storage", m.storage.Name(), "err", err)
		}
		backoff = min(2*backoff, maxBackoff)
		retry.Reset(backoff)
	}
}

// keySet remembers up to keySetMax keys (then starts over), so that what
// is logged per key is logged about once.
type keySet struct {
	mu   sync.Mutex // protects keys
	keys map[string]struct{}
}

const keySetMax = 4096

// first reports whether key is new to the set, and adds it.
func (k *keySet) first(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, seen := k.keys[key]; seen {
		return false
	}
	if k.keys == nil || len(k.keys) >= keySetMax {
		k.keys = make(map[string]struct{})
	}
	k.keys[key] = struct{}{}
	return true
}
