// Package bolt is a sessions storage driver that keeps entries in a bbolt
// (go.etcd.io/bbolt) file: the embedded, persistent default for a single
// server. Its Store implements gocache's store.StoreInterface, so it can be
// used by the sessions library or on its own.
//
// # URL
//
// Importing the package (a blank import is enough) registers the "bolt" URL
// scheme with the sessions core:
//
//	bolt:///var/lib/app/sessions.db          absolute path
//	bolt://data/sessions.db                  relative to the working directory
//	bolt:data/sessions.db                    the same, opaque form
//	bolt:///var/lib/app/sessions.db?bucket=web&sweep=30s&timeout=2s
//
// In the "bolt://" form everything after the two slashes is the path, so
// bolt://data/sessions.db is the relative path data/sessions.db (the "host"
// part is the first path element), and bolt:///abs/file.db is absolute.
// Percent-escapes in the path are decoded. The parent directory must exist;
// the file is created (mode 0600 by default) when missing.
//
// # Options
//
// Options are URL query parameters; an unknown parameter is an error, so a
// typo never goes unnoticed.
//
//	bucket   top-level bucket holding this store's entries     default "sessions"
//	sweep    interval of the expired-entry sweeper, a Go duration;
//	         "0" or "off" disables it                            default 1m
//	timeout  how long to wait for the file lock held by another
//	         process before failing, a Go duration > 0           default 1s
//	mode     permission bits of a newly created file, octal      default 0600
//
// timeout and mode matter only to the first Open of a file in the process
// (see "Sharing a file" below); bucket and sweep are per store.
//
// # Layout and expiry
//
// The store owns one top-level bucket (Options.Bucket) with two nested
// buckets: "data" maps each key to a 9-byte header (format byte 1, then the
// expiry deadline as big-endian Unix milliseconds, 0 for none) followed by the
// value; "expiry" is an index whose keys are the 8-byte deadline followed by
// the entry key, so expired entries are found without a full scan. Other
// buckets in the file are never touched, so several stores (and the
// application's own data) can share one file.
//
// An entry whose deadline has passed is treated as absent at once by every
// read (Get, GetWithTTL, CompareAndSwap, CompareAndDelete, ListKeys,
// ListExpiring). A background goroutine deletes expired entries and their
// index records every sweep interval, in write transactions of at most
// Options.SweepBatch entries each, until none is left; Sweep does the same
// on demand. Deadlines use the local clock, in milliseconds.
//
// # Sharing a file
//
// bbolt holds an exclusive lock on its file, so a second bbolt.Open of the
// same file in one process would block. Open therefore keeps a process-wide
// registry of the files it opened, by cleaned absolute path (symbolic links
// resolved), with a reference count: several stores (for example several
// session Managers, each with its own bucket or the same one) share one
// *bbolt.DB, and the file is closed when the last of them is closed. A file
// locked by another process makes Open fail after the lock timeout with an
// error that says so and names the ways out, instead of hanging; it wraps
// driver.ErrUnreachable, so a session Manager starting while the
// old process still holds the file (a restart that overlaps) starts anyway
// and opens the file once it is free.
//
// # Capabilities beyond gocache
//
// Store.CompareAndSwap is an atomic conditional write, done in one bbolt
// Update transaction: it stores a value only if the current value equals an
// expected one, or only if the key is absent (an expired entry counts as
// absent). Store.CompareAndSwapMany does many of them, and Store.SetMany
// many writes, in one transaction (one fsync). Store.CompareAndDelete
// deletes an entry only if it still holds an expected value, in one Update
// transaction, so of several servers claiming the same entry exactly one
// succeeds. Store.ListExpiring lists the live entries, with their values,
// whose deadline falls before a given instant, earliest first, by walking
// the expiry index. Store.ListKeys lists the live keys with a given prefix
// in key (byte) order. Store.Sweep removes expired entries now.
// Store.Close stops the sweeper and releases the file.
//
// Values are opaque byte strings: Set accepts []byte or string, Get returns
// a fresh []byte that the caller owns. Tags (store.WithTags) and
// Invalidate are not supported.
package bolt
