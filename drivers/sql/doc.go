// Package sqlstore is a sessions storage driver that keeps entries in a SQL
// table through database/sql, with three dialects: PostgreSQL (pgx),
// MySQL/MariaDB (go-sql-driver/mysql) and SQLite (modernc.org/sqlite, pure
// Go). Its Store implements gocache's store.StoreInterface, so it can be
// used by the sessions library or on its own.
//
// The package lives in the directory drivers/sql but is named sqlstore, so
// that it does not shadow database/sql in code that uses both:
//
//	import sqlstore "github.com/sessionstorage/sessions/drivers/sql"
//
//	s, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.Options{Table: "web_sessions"})
//
// # URLs
//
// Importing the package (a blank import is enough) registers the URL
// schemes postgres, postgresql, mysql and sqlite with the sessions core, and
// links the three database/sql drivers.
//
//	postgres://user:pass@host:5432/db?sslmode=disable&table=sessions
//	postgresql://...                       the same
//	mysql://user:pass@host:3306/db?tls=true&table=sessions
//	mysql://user:pass@/db?socket=/run/mysqld/mysqld.sock
//	sqlite:///var/lib/app/sessions.db      absolute path
//	sqlite://data/sessions.db              relative to the working directory
//	sqlite:data/sessions.db                the same, opaque form
//	sqlite://:memory:                      in memory (also sqlite::memory:)
//
// A postgres URL, minus this package's options, is handed to pgx (see
// pgx.ParseConfig for its parameters). A mysql URL is translated into a
// go-sql-driver configuration: user and password, host (default
// 127.0.0.1) and port (default 3306), or a Unix socket given by the socket
// parameter, the database from the path, and go-sql-driver DSN parameters
// (tls, timeout, readTimeout, collation, ...). interpolateParams defaults
// to true (one round trip per statement) unless the URL sets it. A sqlite
// URL names a file path (percent-escapes decoded; "?" and "#" are not
// allowed in it) and takes modernc.org/sqlite DSN parameters (_pragma=...,
// _txlock=...). Each dialect accepts only the parameters its database
// driver knows, plus a short list of server settings (PostgreSQL:
// application_name, search_path, timezone, statement_timeout, ...; MySQL:
// time_zone, sql_mode, ...); any other parameter is an error that lists the
// known ones (docs/drivers.md has the lists). Other PostgreSQL settings go
// through options=-c name=value.
//
// Open checks the connection of a PostgreSQL or MySQL URL: a server that
// refuses, resets or does not answer gives an error wrapping
// driver.ErrUnreachable (a Manager then starts and retries);
// wrong credentials or database names are plain errors.
//
// SQLite files are opened with _pragma=busy_timeout(5000) (see the
// busy_timeout option), _pragma=journal_mode(WAL) and _txlock=immediate,
// unless the URL sets these itself, so that concurrent use from one process
// waits for the write lock instead of failing with SQLITE_BUSY. Every
// connection to ":memory:" is a database of its own, so an in-memory store
// uses a pool of exactly one connection that is never recycled; each
// sqlite://:memory: URL opened is a separate, empty database that vanishes
// on Close.
//
// # Options
//
// This package's own URL parameters are removed before the URL reaches
// the database driver:
//
//	table         table name, "name" or "schema.name"    default sessions
//	sweep         interval of the expired-row sweeper, a Go duration;
//	              "0" or "off" disables it                default 1m
//	create        create the table and index if missing  default true
//	busy_timeout  SQLite only: how long to wait for a lock,
//	              a Go duration                           default 5s
//	max_open_conns      cap on open connections           default 32
//	max_idle_conns      idle connections kept             default max_open_conns
//	conn_max_lifetime   a connection's longest life       default 30m
//	conn_max_idle_time  how long an idle one is kept      default 5m
//
// The pool defaults apply to PostgreSQL and MySQL (database/sql's own
// keep only 2 idle connections, so a busy server opens and closes one for
// most statements); SQLite files keep database/sql's unless the URL sets
// them, and an in-memory SQLite database always has exactly one
// connection. They are database/sql's settings under these names for
// every dialect (pgx's pool_max_conns and the like do not apply here).
//
// Options (for New) has the same settings plus SweepBatch, the largest
// number of rows one sweeping DELETE removes (default 1000).
//
// # Table
//
// DDL returns the statements for each dialect. For the default table:
//
//	-- PostgreSQL
//	CREATE TABLE IF NOT EXISTS "sessions" (
//		"key"        VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
//		"value"      BYTEA NOT NULL,
//		"expires_at" BIGINT NULL
//	);
//	CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" ("expires_at");
//
//	-- MySQL / MariaDB
//	CREATE TABLE IF NOT EXISTS `sessions` (
//		`key`        VARBINARY(255) NOT NULL PRIMARY KEY,
//		`value`      LONGBLOB NOT NULL,
//		`expires_at` BIGINT NULL,
//		INDEX `sessions_expires_at_idx` (`expires_at`)
//	) ENGINE=InnoDB;
//
//	-- SQLite
//	CREATE TABLE IF NOT EXISTS "sessions" (
//		"key"        TEXT NOT NULL PRIMARY KEY,
//		"value"      BLOB NOT NULL,
//		"expires_at" INTEGER NULL
//	);
//	CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" ("expires_at");
//
// Keys are compared and ordered byte for byte (hence the "C" collation and
// VARBINARY); they must be valid UTF-8 without NUL bytes, at most 255 bytes.
// The table belongs to the store: Clear deletes all its rows.
//
// # Expiry and sweeping
//
// expires_at is the deadline in Unix milliseconds by the clock of the
// process that wrote the row, or NULL for no expiry. Every read (Get,
// GetWithTTL, CompareAndSwap, CompareAndDelete, ListKeys, ListExpiring)
// treats a row whose deadline has passed as absent. A background goroutine
// deletes expired rows every sweep interval, in DELETE statements of at
// most SweepBatch rows each, until none is left (PostgreSQL uses FOR
// UPDATE SKIP LOCKED, so the sweepers of several servers share the work).
// Sweep does the same on demand. Close stops the sweeper, interrupting a
// running statement.
//
// # Capabilities beyond gocache
//
// Set is one upsert statement (INSERT ... ON CONFLICT DO UPDATE, or ON
// DUPLICATE KEY UPDATE for MySQL). Store.CompareAndSwap is an atomic
// conditional write: a conditional UPDATE when an old value is expected,
// and for "only if absent or expired" a conditional upsert (PostgreSQL,
// SQLite) or an INSERT then an UPDATE of an expired row (MySQL); of several
// racing calls exactly one wins. Store.CompareAndSwapMany does the same
// for a batch of entries with as few round trips as the dialect allows:
// one statement per chunk of up to 512 entries on PostgreSQL, two
// statements with RETURNING in one transaction on SQLite 3.35+, and on
// MySQL a transaction that locks the rows, compares in Go and writes the
// winners with multi-row statements. Store.SetMany writes a batch with one
// multi-row upsert per chunk. Store.ListKeys lists live keys with a
// given prefix in byte order, a page at a time. Store.CompareAndDelete is
// one DELETE whose WHERE clause compares the value, so of several racing
// calls with the same old value exactly one deletes. Store.ListExpiring
// lists the live entries with a key prefix whose deadline comes before a
// given instant, earliest first, in one query over the expires_at index
// (a LIKE with the prefix escaped; GLOB on SQLite, whose LIKE ignores
// case): the rows are their own expiry index, so it follows every write
// and the sweeper clears it. Values are opaque byte strings: Set accepts
// []byte or string, Get returns a fresh []byte. Tags (store.WithTags) and
// Invalidate are not supported.
package sqlstore
