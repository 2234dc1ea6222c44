package sessions

import (
	"errors"

	"github.com/sessionstorage/sessions/driver"
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
	// ErrSessionEnded: the session this request started under was renewed
	// by another request, invalidated, or timed out while the request ran
	// (or this is the read-only copy OnSessionEnd receives). The call
	// changed nothing and started no new session. In cluster mode a change
	// that could not be saved because the session ended on another server
	// reaches the ErrorHandler with this error (409 by default).
	ErrSessionEnded = errors.New("sessions: the session ended while this request ran")
)

// ErrManagerClosed is returned, and given to the ErrorHandler, once Close
// has been called.
var ErrManagerClosed = errors.New("sessions: manager closed")

// ErrConflict: a cluster commit or an Update kept losing compare-and-swap
// races against other servers writing the same session; nothing was
// saved. It reaches the ErrorHandler (503 by default: a retry may pass).
var ErrConflict = errors.New("sessions: too many concurrent writes to one session")

// ErrStorageUnreachable is what New returns, with
// Config.RequireStorageAtStart, when the storage could not be reached
// although its URL and options are valid (a driver's Opener wraps it:
// driver.ErrUnreachable). Without that option New starts anyway and opens
// the storage in the background.
var ErrStorageUnreachable = driver.ErrUnreachable

// ErrResponseAborted is what the handler's Write (and Hijack) return
// after a failed commit (cluster mode) replaced the handler's response
// with the ErrorHandler's: the session could not be saved, so the
// response the handler meant was not sent.
var ErrResponseAborted = errors.New("sessions: response replaced by the error handler: the session could not be saved")

// StorageError is a failed storage call as the ErrorHandler and the
// methods that return it report it: the operation ("read", "write",
// "delete", "list", "renew", "invalidate"), the storage's name (passwords
// hidden), and the driver's error, which errors.Is and errors.As reach
// (context.DeadlineExceeded when StorageTimeout passed).
type StorageError struct {
	Op      string
	Storage string
	Err     error
}

func (e *StorageError) Error() string {
	return "sessions: storage " + e.Storage + ": " + e.Op + " failed: " + e.Err.Error()
}

func (e *StorageError) Unwrap() error { return e.Err }
