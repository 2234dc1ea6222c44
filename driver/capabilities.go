package driver

import (
	"context"
	"time"
)

// The optional capabilities. A store advertises one by having its method;
// each is a fast path or a guarantee the library uses when present and
// does without when absent (each says how). package conformance checks
// each against the basic methods (cap/... checks).

// CompareAndSwapper is an atomic conditional write. Cluster mode commits
// with it, so that two servers committing one session at once lose
// neither's changes; sticky mode's write-behind with it never replaces a
// version another server stored (a routing flap). Without it, cluster mode
// re-reads just before writing (a narrow race remains) and sticky mode
// writes blindly.
type CompareAndSwapper interface {
	// CompareAndSwap stores value under key, with the given time to live
	// (0: no expiry), only if the current value is byte for byte equal to
	// old; old == nil means "only if key is absent" (an expired entry
	// counts as absent), while a non-nil empty old matches a stored empty
	// value. The comparison and the write must be one atomic step against
	// every other writer, in every process. It reports whether it stored;
	// a failed comparison is (false, nil). On error the outcome is
	// unknown.
	CompareAndSwap(ctx context.Context, key string, old, value []byte, ttl time.Duration) (bool, error)
}

// BatchCompareAndSwapper is CompareAndSwap for many entries in one round
// trip or transaction, for a store that has CompareAndSwapper. Sticky
// mode's write-behind flushes every queued session with it. Without it,
// the library makes one CompareAndSwap call per session, several in
// parallel.
type BatchCompareAndSwapper interface {
	// CompareAndSwapMany performs CompareAndSwap(keys[i], olds[i],
	// values[i], ttl) for every i and reports in swapped[i] whether entry
	// i was stored. Each entry compares and swaps atomically on its own;
	// the batch as a whole need not be atomic. It must accept up to 256
	// entries per call. An error (mismatched slice lengths among them,
	// which must be an error, never a panic) means no entry's outcome is
	// known: any subset may have been stored.
	CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) (swapped []bool, err error)
}

// BatchSetter is many writes in one round trip or transaction (a Redis
// pipeline, one bbolt transaction). Sticky mode's write-behind uses it on
// a store without CompareAndSwapper. Without it, one Set per session.
type BatchSetter interface {
	// SetMany stores values[i] under keys[i], as Set would, each with the
	// time to live ttl (0: none). Mismatched slice lengths are an error.
	// On error any subset may have been stored: the caller writes them
	// all again.
	SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error
}

// KeyLister lists keys by prefix. sessionctl lists and purges sessions
// with it; without it those commands say the storage cannot list.
type KeyLister interface {
	// ListKeys calls fn for each live key that starts with prefix, until
	// fn returns an error, which ListKeys then returns. fn may call the
	// store (Get or Delete the key it was given: sessionctl does), so
	// ListKeys must not hold a lock those calls need. A key present for
	// the whole call is reported exactly once; keys written or deleted
	// meanwhile may or may not be.
	ListKeys(ctx context.Context, prefix string, fn func(key string) error) error
}

// CompareAndDeleter is an atomic conditional delete. The library ends a
// stored session with it, so that the storage, not a guess of each
// server, decides which server reports the end: OnSessionEnd fires only on
// the server whose delete succeeded. Without it, servers that find one
// expired session at once may each report it.
type CompareAndDeleter interface {
	// CompareAndDelete deletes key only if its current value is byte for
	// byte equal to old (an expired entry counts as absent), and reports
	// whether it deleted. The comparison and the delete must be one
	// atomic step against every other writer and deleter, in every
	// process: of any number of concurrent calls with the same key and
	// old, at most one reports true. A missing key is (false, nil). On
	// error the outcome is unknown. A store with a compare-and-swap but no
	// conditional delete may claim by swapping in an empty value, then
	// delete it: the library reads an empty value as absent.
	CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error)
}

// ExpiryLister finds entries about to expire, for a store that has
// CompareAndDeleter and keeps its entries' expiry times in an index. The
// Managers sharing the store list with it on every sweep and claim what
// they find with CompareAndDelete, so that sessions that timed out while
// no server held them (evicted, or written by a process that has exited)
// still fire OnSessionEnd, once. Without it, those ends are missed.
type ExpiryLister interface {
	// ListExpiring returns up to limit live entries (present and not yet
	// expired) whose key starts with prefix and whose time to live ends
	// before the instant before, earliest first, with their values. The
	// index must follow every Set, SetMany, CompareAndSwap(Many), Delete
	// and CompareAndDelete, and must not outlive the entries: the store
	// removes the index records of entries gone (deleted or expired) on
	// its own, even if nobody ever calls ListExpiring.
	ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) (keys []string, values [][]byte, err error)
}
