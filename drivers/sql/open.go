package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	sessdriver "github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// schemes are the URL schemes this package registers with the sessions core.
var schemes = []string{"postgres", "postgresql", "mysql", "sqlite"}

// DefaultBusyTimeout is SQLite's busy timeout when the URL has no
// busy_timeout parameter.
const DefaultBusyTimeout = 5 * time.Second

func init() {
	for _, scheme := range schemes {
		sessdriver.Register(scheme, func(ctx context.Context, u *url.URL) (store.StoreInterface, error) {
			return Open(ctx, u)
		})
	}
}

// Open connects to the database named by a postgres://, postgresql://,
// mysql:// or sqlite:// URL and returns a Store on it that owns the
// connection pool (Close closes it). The package documentation lists the
// URL forms and options. Open creates the table unless create=false, and
// fails if the database cannot be reached or the table is unusable.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if u == nil {
		return nil, errors.New("sqlstore: Open with a nil URL")
	}
	own, rest, err := splitOptions(u.Query())
	if err != nil {
		return nil, err
	}
	if err := checkDriverParams(u.Scheme, rest); err != nil {
		return nil, err
	}
	var (
		db      *sql.DB
		dialect Dialect
	)
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql":
		dialect = Postgres
		db, err = openPostgres(u, rest)
	case "mysql":
		dialect = MySQL
		db, err = openMySQL(u, rest)
	case "sqlite":
		dialect = SQLite
		db, err = openSQLite(u, rest, own.busyTimeout)
	default:
		return nil, fmt.Errorf("sqlstore: URL scheme %q, want one of %s", u.Scheme, strings.Join(schemes, ", "))
	}
	if err != nil {
		return nil, err
	}
	if dialect != SQLite || !strings.Contains(u.String(), ":memory:") {
		own.pool.apply(db, dialect != SQLite)
	}
	// A database server may be down or hung: find out before anything else,
	// so that this is reported as unreachable. A SQLite file has no server
	// (and its first connection can meet a busy lock, which newStore's
	// retried DDL absorbs).
	if err := pingServer(ctx, db, dialect); err != nil {
		_ = db.Close()
		if unreachable(err) {
			return nil, fmt.Errorf("%w: sqlstore: %s: %v", sessdriver.ErrUnreachable, redacted(u), err)
		}
		return nil, fmt.Errorf("sqlstore: %s: %w", redacted(u), err)
	}
	s, err := newStore(ctx, db, dialect, own.Options, true)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// ownOptions are the query parameters this package consumes.
type ownOptions struct {
	Options
	busyTimeout time.Duration
	pool        poolOptions
}

// poolOptions size the connection pool (database/sql's settings).
type poolOptions struct {
	maxOpen, maxIdle       int
	maxLifetime, idleClose time.Duration
	set                    map[string]bool // which the URL gave
}

// Pool defaults for PostgreSQL and MySQL, sized for session traffic:
// many short statements from many goroutines. database/sql's own defaults
// (no cap on open connections, 2 idle) make a busy server open and close a
// connection for most statements.
const (
	DefaultMaxOpenConns    = 32
	DefaultConnMaxLifetime = 30 * time.Minute
	DefaultConnMaxIdleTime = 5 * time.Minute
)

var ownParams = map[string]bool{"table": true, "sweep": true, "create": true, "busy_timeout": true,
	"max_open_conns": true, "max_idle_conns": true, "conn_max_lifetime": true, "conn_max_idle_time": true}

// ownParamNames lists ownParams in the order the documentation gives them.
var ownParamNames = []string{"table", "sweep", "create", "busy_timeout",
	"max_open_conns", "max_idle_conns", "conn_max_lifetime", "conn_max_idle_time"}

// apply sizes db's pool: the URL's settings, else the defaults for a
// database server (SQLite files keep database/sql's).
func (p poolOptions) apply(db *sql.DB, server bool) {
	maxOpen, maxIdle, life, idle := p.maxOpen, p.maxIdle, p.maxLifetime, p.idleClose
	if server {
		if !p.set["max_open_conns"] {
			maxOpen = DefaultMaxOpenConns
		}
		if !p.set["max_idle_conns"] {
			maxIdle = maxOpen // idle = open: no connection churn under load
		}
		if !p.set["conn_max_lifetime"] {
			life = DefaultConnMaxLifetime
		}
		if !p.set["conn_max_idle_time"] {
			idle = DefaultConnMaxIdleTime
		}
	} else if !p.set["max_idle_conns"] && p.set["max_open_conns"] {
		maxIdle = maxOpen
	}
	if server || p.set["max_open_conns"] {
		db.SetMaxOpenConns(maxOpen)
	}
	if server || p.set["max_idle_conns"] || p.set["max_open_conns"] {
		db.SetMaxIdleConns(maxIdle)
	}
	if server || p.set["conn_max_lifetime"] {
		db.SetConnMaxLifetime(life)
	}
	if server || p.set["conn_max_idle_time"] {
		db.SetConnMaxIdleTime(idle)
	}
}

// driverParams are the URL parameters each dialect passes on to its
// database driver. Anything else is an unknown option and an error, so a
// typo such as tabel=web fails Open instead of silently using the default
// table (or, for PostgreSQL and MySQL, being sent to the server as a
// setting).
var driverParams = map[Dialect][]string{
	// pgconn's connection parameters and pgx's own, then the PostgreSQL
	// run-time parameters accepted here; any other run-time parameter can
	// be set through options (options=-c%20name%3Dvalue).
	Postgres: {
		"host", "port", "dbname", "database", "user", "password", "passfile",
		"connect_timeout", "ssl", "sslmode", "sslkey", "sslcert", "sslcertmode",
		"sslrootcert", "sslnegotiation", "sslpassword", "sslsni", "krbspn",
		"krbsrvname", "target_session_attrs", "service", "servicefile",
		"min_protocol_version", "max_protocol_version", "channel_binding",
		"require_auth", "statement_cache_capacity", "description_cache_capacity",
		"default_query_exec_mode",
		"application_name", "options", "search_path", "timezone", "client_encoding",
		"datestyle", "intervalstyle", "extra_float_digits", "statement_timeout",
		"lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout",
	},
	// go-sql-driver/mysql's DSN parameters and this package's socket,
	// then the MySQL system variables accepted here.
	MySQL: {
		"socket",
		"allowAllFiles", "allowCleartextPasswords", "allowFallbackToPlaintext",
		"allowNativePasswords", "allowOldPasswords", "charset", "checkConnLiveness",
		"clientFoundRows", "collation", "columnsWithAlias", "compress",
		"connectionAttributes", "interpolateParams", "loc", "maxAllowedPacket",
		"multiStatements", "parseTime", "readTimeout", "rejectReadOnly",
		"serverPubKey", "timeTruncate", "timeout", "tls", "writeTimeout",
		"time_zone", "sql_mode", "transaction_isolation", "tx_isolation",
		"innodb_lock_wait_timeout", "lock_wait_timeout", "max_execution_time",
		"wait_timeout", "net_read_timeout", "net_write_timeout",
	},
	// modernc.org/sqlite's DSN parameters.
	SQLite: {
		"_pragma", "_txlock", "_busy_timeout", "_timeout", "_journal_mode", "_journal",
		"_synchronous", "_sync", "_foreign_keys", "_fk", "_auto_vacuum", "_vacuum",
		"_query_only", "_time_format", "_time_integer_format", "_timezone",
		"_inttotime", "_texttotime", "_dqs", "_defensive", "_error_rc", "vfs",
	},
}

var driverNames = map[Dialect]string{Postgres: "pgx", MySQL: "go-sql-driver/mysql", SQLite: "modernc.org/sqlite"}

// checkDriverParams rejects a parameter that is neither this package's
// option nor one that the scheme's database driver understands. PostgreSQL
// parameter names are matched without regard to case, as the server does.
func checkDriverParams(scheme string, rest url.Values) error {
	var d Dialect
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		d = Postgres
	case "mysql":
		d = MySQL
	case "sqlite":
		d = SQLite
	default:
		return nil // Open reports the scheme
	}
	var unknown []string
	for name := range rest {
		ok := false
		for _, k := range driverParams[d] {
			if name == k || (d == Postgres && strings.EqualFold(name, k)) {
				ok = true
				break
			}
		}
		if !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	quoted := make([]string, len(unknown))
	for i, n := range unknown {
		quoted[i] = strconv.Quote(n)
	}
	what := "option"
	if len(unknown) > 1 {
		what = "options"
	}
	return fmt.Errorf("sqlstore: unknown %s %s in a %s URL; known options: %s (this package) and %s (%s)",
		what, strings.Join(quoted, ", "), strings.ToLower(scheme),
		strings.Join(ownParamNames, ", "), strings.Join(driverParams[d], ", "), driverNames[d])
}

func pingServer(ctx context.Context, db *sql.DB, dialect Dialect) error {
	if dialect == SQLite {
		return nil
	}
	return db.PingContext(ctx)
}

// unreachable reports whether err, from the first connection to the
// database, means the server could not be reached (refused, timed out,
// reset, not accepting connections yet) rather than that the URL, the
// credentials or the database are wrong.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P03", // cannot_connect_now: starting up, shutting down, in recovery
			"57P01", "57P02", // admin_shutdown, crash_shutdown
			"53300": // too_many_connections
			return true
		}
		return false
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1040, 1053: // too many connections, server shutdown in progress
			return true
		}
	}
	return false
}

// splitOptions takes this package's parameters out of q and returns the rest
// for the database driver.
func splitOptions(q url.Values) (own ownOptions, rest url.Values, err error) {
	own.busyTimeout = DefaultBusyTimeout
	rest = url.Values{}
	for name, vals := range q {
		if !ownParams[name] {
			rest[name] = vals
			continue
		}
		if len(vals) != 1 {
			return own, nil, fmt.Errorf("sqlstore: option %q given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "table":
			if _, err := parseTable(v); err != nil {
				return own, nil, err
			}
			own.Table = v
		case "sweep":
			if v == "off" || v == "0" {
				own.SweepInterval = -1
				continue
			}
			d, perr := time.ParseDuration(v)
			if perr != nil || d <= 0 {
				return own, nil, fmt.Errorf("sqlstore: option sweep=%q: want a positive duration such as 1m, or off", v)
			}
			own.SweepInterval = d
		case "create":
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				return own, nil, fmt.Errorf("sqlstore: option create=%q: want true or false", v)
			}
			own.NoCreate = !b
		case "busy_timeout":
			d, perr := time.ParseDuration(v)
			if perr != nil || d < 0 {
				return own, nil, fmt.Errorf("sqlstore: option busy_timeout=%q: want a duration such as 5s", v)
			}
			own.busyTimeout = d
		case "max_open_conns", "max_idle_conns":
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 || name == "max_open_conns" && n == 0 {
				return own, nil, fmt.Errorf("sqlstore: option %s=%q: want a positive number of connections", name, v)
			}
			if name == "max_open_conns" {
				own.pool.maxOpen = n
			} else {
				own.pool.maxIdle = n
			}
			own.pool.mark(name)
		case "conn_max_lifetime", "conn_max_idle_time":
			d, perr := time.ParseDuration(v)
			if perr != nil || d < 0 {
				return own, nil, fmt.Errorf("sqlstore: option %s=%q: want a duration such as 30m, or 0 for no limit", name, v)
			}
			if name == "conn_max_lifetime" {
				own.pool.maxLifetime = d
			} else {
				own.pool.idleClose = d
			}
			own.pool.mark(name)
		}
	}
	return own, rest, nil
}

func (p *poolOptions) mark(name string) {
	if p.set == nil {
		p.set = map[string]bool{}
	}
	p.set[name] = true
}

func openPostgres(u *url.URL, rest url.Values) (*sql.DB, error) {
	v := *u
	v.RawQuery = rest.Encode()
	cfg, err := pgx.ParseConfig(v.String())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: postgres URL %s: %w", redacted(u), err)
	}
	return stdlib.OpenDB(*cfg), nil
}

// mysqlConfig translates mysql://user:pass@host:port/db?params into a
// go-sql-driver configuration. The port defaults to 3306; a socket
// parameter selects a Unix socket instead of TCP; other parameters are
// go-sql-driver DSN parameters.
func mysqlConfig(u *url.URL, rest url.Values) (*mysql.Config, error) {
	if u.Opaque != "" {
		return nil, fmt.Errorf("sqlstore: mysql URL %s: want mysql://user:pass@host:port/db", redacted(u))
	}
	socket := rest.Get("socket")
	rest.Del("socket")
	if _, set := rest["interpolateParams"]; !set {
		// One round trip per statement instead of prepare/execute/close.
		rest.Set("interpolateParams", "true")
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(dbName, "/") {
		return nil, fmt.Errorf("sqlstore: mysql URL %s: database name %q contains a slash", redacted(u), dbName)
	}
	base := mysql.NewConfig()
	base.DBName = dbName
	if u.User != nil {
		base.User = u.User.Username()
		base.Passwd, _ = u.User.Password()
	}
	switch {
	case socket != "":
		if u.Host != "" {
			return nil, fmt.Errorf("sqlstore: mysql URL %s: both a host and a socket", redacted(u))
		}
		base.Net, base.Addr = "unix", socket
	default:
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "127.0.0.1"
		}
		if port == "" {
			port = "3306"
		}
		base.Net, base.Addr = "tcp", net.JoinHostPort(host, port)
	}
	// Format the address and credentials with the driver's own escaping,
	// then let ParseDSN validate and apply the driver parameters.
	dsn := base.FormatDSN()
	if len(rest) > 0 {
		sep := "?"
		if strings.Contains(dsn[strings.LastIndex(dsn, "/"):], "?") {
			sep = "&"
		}
		dsn += sep + rest.Encode()
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: mysql URL %s: %w", redacted(u), err)
	}
	return cfg, nil
}

func openMySQL(u *url.URL, rest url.Values) (*sql.DB, error) {
	cfg, err := mysqlConfig(u, rest)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: mysql URL %s: %w", redacted(u), err)
	}
	return sql.OpenDB(conn), nil
}

// sqliteDSN turns a sqlite URL into a modernc.org/sqlite DSN and reports
// whether the database is in memory.
func sqliteDSN(u *url.URL, rest url.Values, busy time.Duration) (dsn string, memory bool, err error) {
	var path string
	switch {
	case u.Opaque != "": // sqlite:file.db, sqlite::memory:
		if path, err = url.PathUnescape(u.Opaque); err != nil {
			return "", false, fmt.Errorf("sqlstore: sqlite URL: %w", err)
		}
	case u.Host != "": // sqlite://file.db, sqlite://dir/file.db, sqlite://:memory:
		path = u.Host + u.Path
	default: // sqlite:///abs/file.db
		path = u.Path
	}
	if u.User != nil {
		return "", false, errors.New("sqlstore: sqlite URL must not contain user information")
	}
	memory = path == ":memory:"
	switch {
	case path == "" || strings.HasSuffix(path, "/"):
		return "", false, fmt.Errorf("sqlstore: sqlite URL %q names no file; use sqlite:///abs/path.db, sqlite://rel/path.db or sqlite://:memory:", u.String())
	case strings.ContainsAny(path, "?#"):
		return "", false, fmt.Errorf("sqlstore: sqlite path %q contains ? or #", path)
	case strings.HasPrefix(path, "file:"):
		return "", false, fmt.Errorf("sqlstore: sqlite path %q: SQLite URI filenames are not supported here; give a path", path)
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := rest[n]; ok {
				return true
			}
		}
		return false
	}
	pragmaSet := func(name string) bool {
		for _, p := range rest["_pragma"] {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(p)), name) {
				return true
			}
		}
		return false
	}
	q := url.Values{}
	for k, v := range rest {
		q[k] = append([]string(nil), v...)
	}
	if !has("_busy_timeout", "_timeout") && !pragmaSet("busy_timeout") {
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	}
	if !memory && !has("_journal_mode", "_journal") && !pragmaSet("journal_mode") {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	if !has("_txlock") {
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode(), memory, nil
}

func openSQLite(u *url.URL, rest url.Values, busy time.Duration) (*sql.DB, error) {
	dsn, memory, err := sqliteDSN(u, rest, busy)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: sqlite %s: %w", u.String(), err)
	}
	if memory {
		// Every connection to ":memory:" is a database of its own: keep
		// exactly one, forever, so that the store sees one database.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	return db, nil
}

// redacted renders u for error messages with the password in its user
// information and in any password option (password=, sslpassword=)
// replaced by "xxxxx": url.URL.Redacted masks the user information only.
func redacted(u *url.URL) string { return sessdriver.RedactURL(u.String()) }
