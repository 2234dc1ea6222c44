// Package driver defines what a session storage driver implements and how
// it registers. It is for driver authors; application code uses package
// sessions, and a driver's own tests run package conformance, the shared
// suite every bundled driver passes.
//
// A driver is a gocache store (Store) plus any of the optional
// capabilities below, found by type assertion, and an Opener registered
// under a URL scheme so that configuration can name it. The library
// absorbs the stores' differences in one adapter; what it relies on is
// stated here, as a contract: what the library may do, and what a store
// must do.
//
// Every method of a store, basic or optional:
//   - may be called from many goroutines at once;
//   - must honour its context: a cancelled or expired context fails the
//     call and changes nothing, and a deadline bounds the wait on a hung
//     server;
//   - must copy the []byte values it is given and return []byte values
//     the caller owns (the library keeps and reuses them);
//   - reports a failure of the storage as an error; on an error the
//     outcome of a write is unknown (the library writes again, or reads).
//
// A store that wraps another (fault injection, metrics) may forward the
// optional methods and decline one the wrapped store lacks by returning
// ErrSkip: the library then treats the capability as absent.
package driver

import (
	"context"
	"errors"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Opener builds a store from a storage URL. It is what a driver registers
// under its URL scheme.
//
// An Opener must reject an unknown URL option with an error naming it and
// the known ones. It may connect, and should, so that a wrong password
// fails at start; a valid storage that cannot be reached (connection
// refused, a timeout, a file locked by another process) is reported by
// wrapping ErrUnreachable, so that the application starts anyway and the
// library opens the store later. ctx is for dialing purposes only: it
// bounds the opening and is cancelled afterwards, so the store must not
// keep it. The library removes its own option, key_prefix, before the
// Opener sees the URL. If the store has a `Close() error` method, the
// Manager that opened it calls it once, from its own Close.
type Opener func(ctx context.Context, u *url.URL) (Store, error)

// ErrUnreachable is what an Opener wraps when the storage could not be
// reached although its URL and options are valid. Any other Opener error
// is a configuration error: the application's start fails.
var ErrUnreachable = errors.New("sessions: storage unreachable")

// ErrSkip is what an optional method returns to decline its capability
// (a wrapper whose wrapped store lacks it). The library stops calling that
// method on the store and does what it does for a store without it.
var ErrSkip = errors.New("driver: capability declined")

var (
	mu      sync.RWMutex // protects openers
	openers = map[string]Opener{}
)

// Register makes a driver available under a URL scheme (such as "redis"
// for redis://...). Drivers call it from an init function, so a blank
// import of the driver package is enough to use its scheme; schemes are
// case-insensitive. It panics when open is nil or the scheme is already
// registered, as database/sql's Register does: two drivers claiming one
// scheme is a programming error.
func Register(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	if open == nil {
		panic("sessions/driver: Register " + scheme + " with a nil Opener")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := openers[scheme]; dup {
		panic("sessions/driver: Register called twice for scheme " + scheme)
	}
	openers[scheme] = open
}

// Lookup returns the Opener registered under scheme.
func Lookup(scheme string) (Opener, bool) {
	mu.RLock()
	defer mu.RUnlock()
	open, ok := openers[strings.ToLower(scheme)]
	return open, ok
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(openers))
	for s := range openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
