// Package testservers starts real database and cache servers for tests:
// redis-server, memcached, PostgreSQL and MariaDB. There are no mocks and no
// containers: each server is started from the binary installed on the
// machine, listens on a free port on 127.0.0.1 only, keeps its data and log in
// a private temporary directory, and is stopped (and the directory removed)
// when the test finishes.
//
// # Starting a server
//
// The per-test constructors start a private instance that belongs to one test
// and is stopped by t.Cleanup:
//
//	srv := testservers.Postgres(t)
//	conn, err := pgx.Connect(ctx, srv.DSN()) // or sql.Open("pgx", srv.DSN()) with pgx/v5/stdlib
//
// [Redis], [Memcached], [Postgres] and [MariaDB] return a [*Server] whose
// [Server.Kill], [Server.Stop] and [Server.Restart] may be used by reliability
// tests. Restart brings the server back on the same port with the same data
// directory; PostgreSQL and MariaDB keep their data across Kill/Restart, while
// redis (started with --save "" and --appendonly no) and memcached lose all
// data whenever the process ends. [Server.Pause] (SIGSTOP) and
// [Server.Resume] (SIGCONT) make a server hang instead: it keeps its port
// and accepts connections but answers nothing until resumed, which is how
// tests check that calls are bounded by their deadlines.
//
// Two Redis topologies start several processes: [RedisCluster] (three
// masters joined into a Redis Cluster; URL() is the driver's cluster URL)
// and [RedisSentinel] (a master, two replicas and three Sentinels with
// quorum 2 and down-after 1 s; URL() is the driver's Sentinel URL): kill
// the master with Master().Kill and the Sentinels promote a replica in
// about 2-3 s.
//
// Addresses and connection strings:
//
//	                 Addr()            URL()                                               DSN()
//	redis-server     127.0.0.1:PORT    redis://127.0.0.1:PORT/DB                           same as Addr
//	memcached        127.0.0.1:PORT    memcached://127.0.0.1:PORT                          same as Addr
//	PostgreSQL       127.0.0.1:PORT    postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable  same as URL (pgx)
//	MariaDB          127.0.0.1:PORT    mysql://root@127.0.0.1:PORT/DB                      root@tcp(127.0.0.1:PORT)/DB?parseTime=true
//
// The PostgreSQL user is the superuser "postgres", MariaDB's is "root"; both
// connect over TCP without a password. A private PostgreSQL or MariaDB server
// has an empty database named "sessions_test"; a private redis uses DB 0.
// The MariaDB server uses utf8mb4 as its default character set. The mysql://
// URL form is not understood by go-sql-driver/mysql; it exists for code that
// parses a URL (user, host, port, database) itself — use DSN() with the driver.
//
// # Missing binaries
//
// When a server binary is not installed the test is skipped with a message
// naming the Debian package to install, for example
// "redis-server not found: apt-get install redis-server". When the
// environment variable SESSIONS_REQUIRE_SERVERS=1 is set (make test and CI
// set it) the test fails with the same message instead. The binaries are
// looked up on PATH and in the standard Debian locations that are not on
// PATH: /usr/lib/postgresql/<version>/bin (the highest version wins),
// /usr/sbin/mariadbd or /usr/sbin/mysqld, /usr/bin/mariadb-install-db or
// /usr/bin/mysql_install_db, /usr/bin/redis-server, /usr/bin/memcached.
//
// # Shared instances
//
// Starting PostgreSQL or MariaDB takes about half a second (redis and
// memcached under 10 ms), so tests that only need
// "a database" should use [SharedPostgres], [SharedMariaDB], [SharedRedis] or
// [SharedMemcached]. Each starts one server per test binary, lazily, on first
// use, and then hands every caller its own isolated namespace:
//
//   - SharedPostgres and SharedMariaDB create a fresh, empty database with a
//     unique name for each caller (see [Server.DB]) and drop it at the end of
//     the caller's test.
//   - SharedRedis gives each caller its own logical database number (the
//     server runs with 4096 databases; DB 0 is never handed out). The number is
//     in URL() and DB(); Addr() and DSN() do not carry it, so configure the
//     client with it. The database is flushed when handed out and when the
//     test ends.
//   - SharedMemcached gives every caller the same server; memcached has no
//     namespaces, so tests must use keys that are unique to them (for example
//     prefixed with t.Name()). Tests must not call flush_all.
//
// Kill, Stop, Restart, Pause and Resume fail the test on a shared server: a reliability test
// must use its own private server. The shared servers are stopped by
// [StopShared], which a test package that uses them should call from TestMain
// after m.Run:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testservers.StopShared()
//		os.Exit(code)
//	}
//
// If StopShared is not called (or the test binary crashes or is killed), the
// servers are still killed when the test binary dies — see below — but their
// temporary directories are left behind under $TMPDIR/testservers-*.
//
// # Use outside of a test
//
// [StartRedis], [StartMemcached], [StartPostgres] and [StartMariaDB] start a
// private server without a testing.TB and return an error instead of
// skipping; errors.Is(err, [ErrNotInstalled]) reports a missing binary. The
// caller must call [Server.Close] (for example from TestMain, a benchmark's
// setup, or a CLI command) to stop the server and remove its directory.
//
// # Process lifetime and privileges
//
// Every server process gets Pdeathsig=SIGKILL, so it dies when the test binary
// dies, however it dies. Because Linux delivers the parent-death signal when
// the parent *thread* exits, all servers are forked from one dedicated,
// locked OS thread that lives as long as the process. Each server runs in its
// own process group and [Server.Kill] sends SIGKILL to the whole group
// (PostgreSQL's backends included) and reaps the process.
//
// When the tests run as root, every server runs as the unprivileged user
// "nobody" (PostgreSQL refuses to run as root and MariaDB needs --user), and
// its temporary directory is owned by that user. The directory is created
// under os.TempDir() if every ancestor is traversable by other users (and
// the path is short enough for the servers' Unix sockets), and under /tmp
// otherwise.
package testservers
