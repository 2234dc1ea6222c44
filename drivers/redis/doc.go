// Package redis is a sessions storage driver for Redis (and compatible
// servers such as Valkey and KeyDB), built over gocache's redis store
// (github.com/eko/gocache/store/redis/v4) and a go-redis v9
// redis.UniversalClient, so standalone servers, Sentinel-managed masters and
// Redis Cluster all work.
//
// # Use with your own client
//
//	client := redis.NewClient(&redis.Options{Addr: "localhost:6379"}) // or NewFailoverClient, NewClusterClient, NewUniversalClient
//	st := redisdriver.New(client)
//
// New never closes the client; closing it stays the caller's job.
//
// # URLs
//
// Importing the package (a blank import is enough) registers the "redis" and
// "rediss" URL schemes with the sessions core. Open builds the client from
// the URL, sends a PING bounded by the context so that a wrong address or
// password fails at once, and owns the client (Store.Close closes it).
// When the deployment cannot be reached (connection refused, a timeout, a
// server still loading) the error wraps driver.ErrUnreachable;
// a bad URL or option, a wrong password, database or master name, or a
// TLS certificate failure does not.
//
//	redis://[user:password@]host[:port][/db][?options]        plain TCP
//	rediss://[user:password@]host[:port][/db][?options]       TLS (minimum TLS 1.2, server name = host)
//
// The host defaults to localhost and the port to 6379; db (default 0) may
// also be given as the option db=N. Passwords are replaced by "xxxxx" in
// every error message.
//
// Sentinel: the option master_name selects a failover client (go-redis's
// ParseFailoverURL). The host and every addr= option are Sentinel
// addresses; the user information authenticates to the Sentinels, and the
// options username= and password= to the master:
//
//	redis://sentinel1:26379/0?master_name=mymaster&addr=sentinel2:26379&addr=sentinel3:26379&password=secret
//
// Cluster: cluster=true selects a cluster client (go-redis's
// ParseClusterURL). The host and every addr= option are seed nodes; the
// rest of the topology is discovered. Redis Cluster has only database 0, so
// a path other than /0 is an error:
//
//	redis://user:secret@node1:6379?cluster=true&addr=node2:6379&addr=node3:6379
//
// # Options
//
// Options are query parameters. An option that does not apply to the
// selected mode is an error that lists the ones that do ("unknown option
// foo; known in standalone mode: ..."), so a typo never goes unnoticed.
// Durations are Go durations ("500ms", "3s") or whole seconds ("3"); 0 or a
// negative value disables a timeout. Unset options keep go-redis's
// defaults, shown here, except context_timeout_enabled. A value that
// cannot be read is an error naming the option.
//
// The driver's own, in every mode:
//
//	cluster                  true: Redis Cluster client                         default false
//	master_name              Sentinel master name; selects the Sentinel mode    default unset
//	addr                     one more Sentinel or cluster seed address
//	                         (host:port), repeatable; only with master_name or
//	                         cluster=true
//	context_timeout_enabled  a call's context deadline bounds its socket I/O    default true
//	                         (go-redis's ContextTimeoutEnabled)
//	cluster_state_reload_interval                                               default 1s
//	                         Cluster only: the slot layout is reloaded when it
//	                         is older than this (go-redis's
//	                         ClusterStateReloadInterval, whose own default is
//	                         60s); a positive duration
//
// With context_timeout_enabled (the default) every call ends by its
// context's deadline, so the sessions library's Config.StorageTimeout
// bounds each storage call even when a server hangs. With
// context_timeout_enabled=false go-redis ignores deadlines during socket
// reads and writes and a hung server holds each call for read_timeout or
// write_timeout (5 s by default), however short StorageTimeout is.
//
// go-redis's, in every mode:
//
//	client_name                 CLIENT SETNAME on each connection                default none
//	protocol                    RESP version, 2 or 3                             default 3
//	dial_timeout                connect timeout                                  default 5s
//	read_timeout                socket read timeout                              default 5s
//	write_timeout               socket write timeout                             default read_timeout
//	max_retries                 retries of a failed command (-1: none)           default 3
//	min_retry_backoff           shortest back-off between retries                default 10ms
//	max_retry_backoff           longest back-off between retries                 default 1s
//	pool_size                   connections per node                             default 10 per CPU
//	pool_timeout                wait for a free connection                       default read_timeout + 1s
//	pool_fifo                   FIFO instead of LIFO pool                        default false
//	min_idle_conns              idle connections kept open                       default 0
//	max_idle_conns              idle connections at most                         default 0 (no limit)
//	max_active_conns            connections at most                              default 0 (no limit)
//	max_concurrent_dials        dials in parallel at most                        default pool_size
//	conn_max_idle_time          close connections idle this long                 default 30m
//	conn_max_lifetime           close connections this old                       default none
//	conn_max_lifetime_jitter    random spread of conn_max_lifetime               default none
//	pipeline_pool_size, pipeline_read_buffer_size, pipeline_write_buffer_size     go-redis pipeline pool tuning
//
// Standalone only: db (database number), idle_timeout and max_conn_age
// (older names of conn_max_idle_time and conn_max_lifetime). Standalone and
// Sentinel over rediss: skip_verify=true disables certificate checks.
// Sentinel only: db, username, password (the master's credentials),
// dialer_retries, dialer_retry_timeout, disableIdentity, identitySuffix, unstable_resp3; route_by_latency,
// route_randomly, replica_only and use_disconnected_replicas are rejected
// because sessions must be written to the master. Cluster only:
// max_redirects (default 3), read_only, route_by_latency,
// route_by_latency_tolerance, route_randomly (reads from replicas may be
// stale), dialer_retries, dialer_retry_timeout, failing_timeout_seconds.
//
// # Cluster failovers
//
// When a Redis Cluster master dies, its replica takes over once the other
// masters agree it is down (about twice cluster-node-timeout). The dead
// master answers "connection refused", never MOVED, so a go-redis cluster
// client keeps sending the slots' commands to it until it reloads the slot
// layout, by default every 60 s. A Cluster client made by Open therefore:
//
//   - reloads the layout when it is older than cluster_state_reload_interval
//     (1 s by default) and at once, in the background, whenever a node fails
//     (a refused or broken connection, CLUSTERDOWN, TRYAGAIN, MASTERDOWN,
//     LOADING, READONLY), so commands reach the promoted replica within
//     about 200 ms of the promotion;
//   - fails commands for a node that refused a connection at once, with an
//     error matching ErrNodeUnreachable, instead of dialing it again with
//     go-redis's dial retries and back-offs, until a probe (every 25 ms to
//     1 s) connects to it again; go-redis does not retry that error;
//   - checks, before sending a batch (CompareAndSwapMany, SetMany), that no
//     key of it (the expiry index included) lives on such a node: a batch
//     that would touch one fails before anything is written, so that the
//     sessions library writes the other entries one by one and a dead
//     master delays only its own sessions.
//
// The first commands to a master just killed still take go-redis's dial
// retries (dialer_retries, 5 by default, dialer_retry_timeout apart: about
// half a second) before failing. A client given to New is left as it is.
//
// # Capabilities
//
// Store embeds gocache's *redisstore.RedisStore, so it is a
// store.StoreInterface with GetType "redis", and adds:
//
//   - CompareAndSwap: an atomic conditional write in one round trip, a Lua
//     script run with EVALSHA that falls back to EVAL (after a server
//     restart, say). TTLs are in milliseconds, rounded up.
//   - CompareAndSwapMany and SetMany: many writes in one pipeline. A
//     master that answers NOSCRIPT (restarted, or a replica just promoted:
//     Redis does not replicate its script cache) gets its entries sent
//     again with EVAL; the entries of other masters, which ran, are not.
//   - ListKeys: SCAN MATCH <prefix>* COUNT 1000, with the prefix's glob
//     characters escaped; on a cluster every master is scanned (on a Ring
//     every shard). Keys come in no particular order, each once.
//   - CompareAndDelete: an atomic conditional delete, a Lua script on the
//     one key (so it works on a cluster).
//   - ListExpiring: the entries about to expire, from the expiry index.
//
// # The expiry index
//
// Every write with a time to live (Set with store.WithExpiration, SetMany,
// CompareAndSwap, CompareAndSwapMany) records the entry's expiry time in
// the sorted set "sessions-expiry-index" (ExpiryIndexKey; member: the
// entry's key, score: Unix milliseconds by the clock of the server holding
// the set), which ListExpiring reads. Writes without a time to live,
// Delete and CompareAndDelete remove the key's record. Set and SetMany
// send the record in the same pipeline as the write; CompareAndSwap(Many)
// after a successful swap, one more round trip, because on a cluster the
// index lives in its own slot (all its updates go to that one master).
// The set cleans up after itself, with nobody calling ListExpiring: each
// update drops the records whose time is past and makes the set expire
// (PEXPIREAT) just after its latest record, so when the last entry
// expires or is deleted, the set is gone too. ListExpiring also removes
// the records of entries found missing, and moves those of entries found
// to live longer to their real expiry time, each only if its score is
// still the one it read. It checks each entry's PTTL, so it never reports
// an entry that lives past the requested instant, but two servers writing
// one key with different TTLs at the same moment can leave the record of
// the other write (a later time than the entry's: the entry may expire
// unlisted). The scripts read TIME before writing, which needs Redis 5 or
// newer.
//
// # Quirks of the gocache store, absorbed by the sessions core
//
// Get returns a string, not []byte. A miss is store.NotFound wrapping
// redis.Nil. GetWithTTL costs two round trips. Clear is FLUSHALL: it wipes
// every database of the server (every master of a cluster); the sessions
// library never calls it or Invalidate. Context cancellation and deadlines
// are honoured by go-redis for every call (deadlines during socket I/O only
// with context_timeout_enabled, the default).
package redis
