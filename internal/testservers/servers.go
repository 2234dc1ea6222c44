package testservers

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

type kind int

const (
	kindRedis kind = iota
	kindMemcached
	kindPostgres
	kindMariaDB
)

const (
	pgUser    = "postgres"
	mariaUser = "root"
	// defaultDB is the database a private PostgreSQL or MariaDB server has.
	defaultDB = "sessions_test"
	// redisDatabases is the number of logical redis databases (see SharedRedis).
	redisDatabases = 4096
)

// spec describes how to run one kind of server.
type spec struct {
	kind       kind
	name       string // for messages and directory names
	ctor       string // name of the private constructor, for messages
	stopSignal syscall.Signal
	// closeByKill: Close kills instead of stopping gracefully, because the
	// server keeps nothing worth a clean shutdown and a graceful stop is slow
	// (memcached takes about a second to react to SIGTERM, redis ~80 ms).
	closeByKill bool
	defaultDB   string
	find        func() (map[string]string, error)
	init        func(p *proc) error // one-time data directory set-up
	args        func(p *proc) (bin string, args []string)
	ping        func(ctx context.Context, p *proc) error
	setup       func(ctx context.Context, p *proc) error // after the first start
}

// ---- public constructors ----

// Redis starts a private redis-server for t, stopped at t's cleanup. It
// listens on 127.0.0.1 with persistence off (--save "" --appendonly no), so
// Kill or Stop followed by Restart yields an empty server. URL uses DB 0.
func Redis(t testing.TB) *Server {
	t.Helper()
	s, err := StartRedis()
	return fromTB(t, s, err)
}

// Memcached starts a private memcached for t, stopped at t's cleanup. It
// listens on TCP 127.0.0.1 only (UDP off); a restart yields an empty cache.
func Memcached(t testing.TB) *Server {
	t.Helper()
	s, err := StartMemcached()
	return fromTB(t, s, err)
}

// Postgres starts a private PostgreSQL server for t, stopped at t's cleanup.
// The superuser "postgres" connects over TCP without a password (trust
// authentication) to the empty database "sessions_test". fsync is off: data
// survives Kill and Restart of the server but not a machine crash.
func Postgres(t testing.TB) *Server {
	t.Helper()
	s, err := StartPostgres()
	return fromTB(t, s, err)
}

// MariaDB starts a private MariaDB server for t, stopped at t's cleanup.
// The user "root" connects from 127.0.0.1 without a password, with all
// privileges, to the empty database "sessions_test" (utf8mb4). Data survives
// Kill and Restart.
func MariaDB(t testing.TB) *Server {
	t.Helper()
	s, err := StartMariaDB()
	return fromTB(t, s, err)
}

// StartRedis is Redis without a testing.TB: it returns an error (matching
// ErrNotInstalled if redis-server is missing) and the caller must Close the
// server.
func StartRedis() (*Server, error) { return startPrivate(redisSpec) }

// StartMemcached is Memcached without a testing.TB; the caller must Close the
// server.
func StartMemcached() (*Server, error) { return startPrivate(memcachedSpec) }

// StartPostgres is Postgres without a testing.TB; the caller must Close the
// server.
func StartPostgres() (*Server, error) { return startPrivate(postgresSpec) }

// StartMariaDB is MariaDB without a testing.TB; the caller must Close the
// server.
func StartMariaDB() (*Server, error) { return startPrivate(mariaSpec) }

func startPrivate(sp *spec) (*Server, error) {
	p, err := startServer(sp)
	if err != nil {
		return nil, err
	}
	return &Server{p: p, db: sp.defaultDB}, nil
}

// ---- redis ----

var redisSpec = &spec{
	kind:        kindRedis,
	name:        "redis-server",
	ctor:        "Redis",
	stopSignal:  syscall.SIGTERM,
	closeByKill: true, // --save "": nothing to save
	defaultDB:   "0",
	find: func() (map[string]string, error) {
		b := lookBinary([]string{"redis-server"}, "/usr/bin", "/usr/local/bin")
		if b == "" {
			return nil, &notInstalledError{"redis-server", "redis-server"}
		}
		return map[string]string{"server": b}, nil
	},
	args: func(p *proc) (string, []string) {
		return p.bins["server"], []string{
			"--port", strconv.Itoa(p.port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", p.root,
			"--daemonize", "no",
			"--logfile", "",
			"--databases", strconv.Itoa(redisDatabases),
		}
	},
	ping: func(ctx context.Context, p *proc) error {
		return linePing(ctx, p.addr(), "*1\r\n$4\r\nPING\r\n", "+PONG")
	},
}

// ---- memcached ----

var memcachedSpec = &spec{
	kind:        kindMemcached,
	name:        "memcached",
	ctor:        "Memcached",
	stopSignal:  syscall.SIGTERM,
	closeByKill: true,
	find: func() (map[string]string, error) {
		b := lookBinary([]string{"memcached"}, "/usr/bin", "/usr/local/bin")
		if b == "" {
			return nil, &notInstalledError{"memcached", "memcached"}
		}
		return map[string]string{"server": b}, nil
	},
	args: func(p *proc) (string, []string) {
		// As root, the process already runs as nobody (see serverCredential),
		// so memcached's -u is not needed.
		args := []string{
			"-l", "127.0.0.1",
			"-p", strconv.Itoa(p.port),
			"-U", "0",
			"-m", "64",
			"-c", "1024",
			"-t", "2",
		}
		return p.bins["server"], args
	},
	ping: func(ctx context.Context, p *proc) error {
		return linePing(ctx, p.addr(), "version\r\n", "VERSION ")
	},
}

// linePing sends req and checks that the first reply line starts with want.
func linePing(ctx context.Context, addr, req, want string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
	}
	return nil
}

// ---- PostgreSQL ----

var postgresSpec = &spec{
	kind:       kindPostgres,
	name:       "postgres",
	ctor:       "Postgres",
	stopSignal: syscall.SIGINT, // fast shutdown
	defaultDB:  defaultDB,
	find:       findPostgres,
	init: func(p *proc) error {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		defer cancel()
		return p.runTool(ctx, p.bins["initdb"],
			"-D", p.data,
			"-U", pgUser,
			"-A", "trust",
			"-E", "UTF8",
			"--locale=C",
			"-N", // no fsync
		)
	},
	args: func(p *proc) (string, []string) {
		return p.bins["postgres"], []string{
			"-D", p.data,
			"-p", strconv.Itoa(p.port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=" + p.root,
			// fsync=off keeps commits cheap; synchronous_commit stays on so a
			// committed transaction is in the kernel (and survives Kill).
			"-c", "fsync=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=300",
			"-c", "shared_buffers=32MB",
			"-c", "huge_pages=off",
			"-c", "logging_collector=off",
			"-c", "log_min_messages=warning",
		}
	},
	ping: func(ctx context.Context, p *proc) error {
		return p.pgExec(ctx, "SELECT 1")
	},
	setup: func(ctx context.Context, p *proc) error {
		return p.pgExec(ctx, "CREATE DATABASE "+defaultDB)
	},
}

// findPostgres looks for postgres and initdb side by side: first on PATH,
// then in the highest /usr/lib/postgresql/<version>/bin.
func findPostgres() (map[string]string, error) {
	if pg := lookBinary([]string{"postgres"}); pg != "" {
		initdb := filepath.Join(filepath.Dir(pg), "initdb")
		if _, err := os.Stat(initdb); err == nil {
			return map[string]string{"postgres": pg, "initdb": initdb}, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		pg, initdb := filepath.Join(d, "postgres"), filepath.Join(d, "initdb")
		_, err1 := os.Stat(pg)
		_, err2 := os.Stat(initdb)
		if err1 == nil && err2 == nil {
			return map[string]string{"postgres": pg, "initdb": initdb}, nil
		}
	}
	return nil, &notInstalledError{"postgres (and initdb)", "postgresql"}
}

// pgVersion extracts a sortable version from /usr/lib/postgresql/<v>/bin.
func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// pgExec runs statements as the superuser in the maintenance database
// "postgres" on a fresh connection. It uses pgx directly rather than
// database/sql: pgx/v5/stdlib pulls in pgxpool and its dependency
// jackc/puddle, which this module does not otherwise need.
func (p *proc) pgExec(ctx context.Context, stmts ...string) error {
	cfg, err := pgx.ParseConfig("postgres://" + pgUser + "@" + p.addr() + "/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// ---- MariaDB ----

var mariaSpec = &spec{
	kind:       kindMariaDB,
	name:       "mariadb",
	ctor:       "MariaDB",
	stopSignal: syscall.SIGTERM,
	defaultDB:  defaultDB,
	find: func() (map[string]string, error) {
		srv := lookBinary([]string{"mariadbd", "mysqld"}, "/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/libexec")
		inst := lookBinary([]string{"mariadb-install-db", "mysql_install_db"}, "/usr/bin", "/usr/local/bin", "/usr/local/mysql/scripts")
		if srv == "" || inst == "" {
			return nil, &notInstalledError{"mariadbd (and mariadb-install-db)", "mariadb-server"}
		}
		return map[string]string{"server": srv, "install": inst}, nil
	},
	init: func(p *proc) error {
		if err := p.mkdirOwned(filepath.Join(p.root, "tmp")); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		defer cancel()
		args := append([]string{
			"--no-defaults", // must come first
			"--datadir=" + p.data,
			"--auth-root-authentication-method=normal", // root@127.0.0.1 without password
			"--skip-test-db",
		}, mariaServerOptions(p)...)
		return p.runTool(ctx, p.bins["install"], args...)
	},
	args: func(p *proc) (string, []string) {
		return p.bins["server"], append([]string{
			"--no-defaults", // must come first
			"--datadir=" + p.data,
			"--port=" + strconv.Itoa(p.port),
			"--bind-address=127.0.0.1",
			"--socket=" + filepath.Join(p.root, "mysqld.sock"),
			"--pid-file=" + filepath.Join(p.root, "mysqld.pid"),
			"--max-connections=500",
		}, mariaServerOptions(p)...)
	},
	ping: func(ctx context.Context, p *proc) error {
		return sqlPing(ctx, p.mariaConnector(""))
	},
	setup: func(ctx context.Context, p *proc) error {
		return sqlExec(ctx, p.mariaConnector(""), "CREATE DATABASE "+defaultDB)
	},
}

// mariaServerOptions are shared by mariadb-install-db and mariadbd so the
// InnoDB files are created with the settings the server runs with.
func mariaServerOptions(p *proc) []string {
	return []string{
		"--tmpdir=" + filepath.Join(p.root, "tmp"),
		"--skip-name-resolve",
		"--skip-log-bin",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=2", // write (not fsync) at commit: survives Kill
		"--innodb-doublewrite=0",
		"--innodb-use-native-aio=0", // io_uring/libaio are often unavailable in containers
		"--loose-innodb-buffer-pool-load-at-startup=0",
		"--loose-innodb-buffer-pool-dump-at-shutdown=0",
	}
}

func (p *proc) mariaConnector(db string) func() (*sql.DB, error) {
	return func() (*sql.DB, error) {
		cfg := mysql.NewConfig()
		cfg.User = mariaUser
		cfg.Net = "tcp"
		cfg.Addr = p.addr()
		cfg.DBName = db
		cfg.Timeout = 2 * time.Second
		cfg.Logger = nopLogger{} // no "[mysql] unexpected EOF" noise while the server starts
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(c), nil
	}
}

type nopLogger struct{}

func (nopLogger) Print(...any) {}

// ---- SQL helpers ----

func sqlPing(ctx context.Context, open func() (*sql.DB, error)) error {
	db, err := open()
	if err != nil {
		return err
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 returned %d", one)
	}
	return nil
}

func sqlExec(ctx context.Context, open func() (*sql.DB, error), stmts ...string) error {
	db, err := open()
	if err != nil {
		return err
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
