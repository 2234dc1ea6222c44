package sessions

import (
	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/internal/adapter"
)

// StorageConfig defines a named storage: a driver URL plus options, which
// are added to the URL's query (so {URL: "redis://h:6379/0", Options:
// {"pool_size": "20"}} means redis://h:6379/0?pool_size=20). Each driver
// documents its options and rejects unknown ones. One option belongs to
// the library and works with every driver: key_prefix, the default
// Config.KeyPrefix of Managers using the storage, so that applications
// sharing one server each get their own namespace from the storage's
// definition alone.
type StorageConfig = adapter.Config

// DefineStorage defines a named storage process-wide: Config.Storage may
// then name it, as an application server's admin console defines a
// storage once for every application. It panics if the name is already
// defined or registered, or looks like a URL.
func DefineStorage(name string, sc StorageConfig) { adapter.DefineStorage(name, sc) }

// RegisterStore makes a ready gocache store available process-wide under a
// name, for Config.Storage. Managers using it share it and do not close
// it. It panics if the name is already defined or registered, or looks
// like a URL.
func RegisterStore(name string, st store.StoreInterface) { adapter.RegisterStore(name, st) }
