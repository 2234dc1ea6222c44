// Package sessions keeps web sessions in process memory and backs them up
// to a named storage — Redis, memcached, a bbolt file, SQL, or any gocache
// store — so that a session survives a restart, a crash, or a load balancer
// moving the user to another server.
//
// A Manager owns the sessions of an application: create it with New, wrap
// handlers with Manager.Handler, read the request's session with
// FromContext, and Close the Manager on shutdown:
//
//	m, err := sessions.New(sessions.Config{Storage: "redis://127.0.0.1:6379/0"})
//	...
//	http.Handle("/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		s := sessions.FromContext(r.Context())
//		n, _, _ := sessions.Get[int](s, "visits")
//		s.Set("visits", n+1)
//	})))
//
// In sticky mode (the default) memory is authoritative: a request finds its
// session in memory, changes are written behind, coalesced per session,
// and storage is read only on a miss. In cluster mode (Config.Cluster)
// storage is authoritative: every request reads it, and a changed session
// is written before the response is committed, merging concurrent changes
// key by key. docs/modes.md in the repository compares the two.
//
// Concurrent requests of one session share its data, but each has its own
// *Session: only the request that created, renewed (Renew, at login) or
// invalidated (Invalidate, at logout) a session changes its cookie, and a
// request whose session was renewed or ended by another request meanwhile
// sees an ended session (ErrSessionEnded) instead of writing into it. For
// counters and carts, Update is a read-modify-write that loses no
// concurrent update.
//
// Storages are named by URL (each driver package registers its scheme), by
// a name defined in Config.Storages or with DefineStorage, or handed over
// as a gocache store in Config.Store. Values are encoded when they are Set
// (an unstorable value fails there, naming the key) and decoded lazily into
// the caller's type by Get.
package sessions
