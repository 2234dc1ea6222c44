package driver

import "github.com/eko/gocache/lib/v4/store"

// Store is the basic contract: a gocache store (module
// github.com/eko/gocache/lib/v4). Of its methods the library relies on
// these, and only as stated:
//
//   - Get(ctx, key) returns the bytes last stored under the string key, as
//     []byte or string, or an error matching errors.Is(err,
//     &store.NotFound{}) (store.NotFoundWithCause) when the key is absent
//     or expired. The library never stores an empty value, and reads one
//     as absent.
//   - Set(ctx, key, value, options...) stores a []byte value under a
//     string key with the time to live of store.WithExpiration (none when
//     zero or absent), replacing any entry; with
//     store.WithSynchronousSet a following Get sees the write.
//   - Delete(ctx, key) removes the entry; deleting a missing key is not
//     an error.
//   - GetType() names the store kind in messages.
//
// The library never calls Invalidate or Clear (on Redis and memcached
// they flush the whole server), and never needs GetWithTTL or tags.
type Store = store.StoreInterface
