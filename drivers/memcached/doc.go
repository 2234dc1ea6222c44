// Package memcached is a sessions storage driver for memcached, built over
// gocache's memcache store (github.com/eko/gocache/store/memcache/v4) and
// github.com/bradfitz/gomemcache/memcache.
//
// # Use with your own client
//
//	client := memcache.New("10.0.0.1:11211", "10.0.0.2:11211")
//	st := memcached.New(client, memcached.WithMaxItem(4<<20)) // if the servers run with -I 4m
//
// New never closes the client's connections; that stays the caller's job.
//
// # URLs
//
// Importing the package (a blank import is enough) registers the
// "memcached" URL scheme with the sessions core:
//
//	memcached://host[:port][,host[:port]...][?options]
//	memcached://10.0.0.1:11211,10.0.0.2:11211?timeout=500ms&max_idle=8&max_item=1048576
//	memcached://[::1]:11211?addr=[::1]:11212
//
// The servers are listed comma-separated in the host part; the port
// defaults to 11211. Keys are spread over the servers by gomemcache's
// choice (CRC32 of the key modulo the number of servers), so every client
// must list the same servers in the same order. Go's URL parser limits the
// host part: an IPv6 address must be in brackets and can only be the first
// server there, and the text after the host part's last colon must be a
// port number, so if any server there has a port the last one needs one
// too (memcached://h1:11211,h2 is refused; write h2:11211). The addr=
// option has no such limits.
// User information and a path are errors (memcached's text protocol has no
// authentication and no databases). Open resolves every host and sends a
// version command to every server, so a wrong address fails at once. When
// a server cannot be reached (connection refused, no answer within
// timeout, a host name that does not resolve) the error wraps
// driver.ErrUnreachable; a bad URL or option, or a server that
// answers but not as memcached, does not.
//
// # Options
//
// Options are query parameters; an unknown one is an error that lists the
// known ones ("unknown option foo; known: addr, max_idle, max_item, timeout"),
// and a value that cannot be read is an error naming the option.
//
//	timeout    connect, read and write timeout of every round trip, a         default 500ms
//	           positive Go duration
//	max_idle   idle connections kept per server                               default 2
//	max_item   the servers' item size limit in bytes (memcached -I)           default 1048576
//	addr       one more server host[:port], repeatable                        default none
//
// Raise max_idle toward the peak number of concurrent requests: a call
// that finds no idle connection dials a new one.
//
// # Timeouts
//
// gomemcache takes no context, so the sessions library's
// Config.StorageTimeout cannot reach it: the timeout option alone bounds
// each call to a hung or unreachable server (about timeout per round trip;
// CompareAndSwap of an existing item makes two, CompareAndDelete up to
// three, and both check the context between them). Set timeout no higher than StorageTimeout (default 2 s),
// or a request may wait on memcached longer than StorageTimeout promises.
//
// # Capabilities
//
// Store embeds gocache's *memcachestore.MemcacheStore, so it is a
// store.StoreInterface (GetType "memcached"), and adds CompareAndSwap:
// memcached's add when the key must be absent, otherwise gets, a byte
// comparison and cas with the item's CAS id, which the server refuses if
// the item changed in between.
//
// It also adds CompareAndDelete, with which the servers sharing the store
// decide which one reports a session's end. memcached has no conditional
// delete, so the claim is gets, a byte comparison and cas of the item to
// an empty value with a one-second expiration (only one of concurrent
// claimers' cas succeeds), then a plain delete, best effort. Until the
// delete or the expiration removes it, a reader may see an empty value
// under the key, which the sessions library reads as absent; an empty
// value is therefore never claimed.
//
// There is no ListKeys and no ListExpiring: memcached cannot list keys
// reliably (lru_crawler metadump is per server, best effort, and may miss
// or repeat items), so the library falls back to what it does without
// those capabilities.
//
// # Quirks handled by the driver
//
//   - TTLs are whole seconds: the driver rounds up (gocache truncates, so a
//     500 ms TTL became 0, which memcached reads as "never expire"). Items
//     therefore live up to one second longer than asked.
//   - memcached reads an expiration over 30 days as an absolute Unix time;
//     the driver sends longer TTLs as now + TTL (gocache sent the number of
//     seconds, a date in 1970, so the item expired at once). This relies on
//     the servers' clocks agreeing with the client's. TTLs ending after
//     January 2038 (a 32-bit time) are an error.
//   - Items are limited in size (1 MiB by default, memcached -I). The
//     driver refuses a write whose key + value + 64 bytes of overhead
//     exceeds max_item with an error naming the size and the limit and
//     matching ErrTooLarge, before sending it.
//   - gomemcache takes no context: every method checks ctx.Err() before
//     each call to the server; a call then lasts at most about the timeout
//     (see Timeouts), whatever the context's deadline.
//     A dead server gives errors, not hangs; the client dials again once it
//     is back.
//   - gocache's Set panics on a value that is not []byte and every method on
//     a key that is not a string; the driver returns errors instead and
//     accepts string values too. Keys must still be at most 250 bytes
//     without spaces or control characters (gomemcache's ErrMalformedKey).
//   - Get returns []byte. A miss is store.NotFound wrapping
//     memcache.ErrCacheMiss; deleting a missing key is not an error.
//     GetWithTTL always reports a TTL of 0 (memcached does not tell).
//     Clear is flush_all on every server; the library never calls it.
package memcached
