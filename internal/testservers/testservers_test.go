package testservers_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	os.Exit(code)
}

// timed starts a server and logs how long the start took.
func timed(t *testing.T, start func(testing.TB) *testservers.Server) *testservers.Server {
	t.Helper()
	t0 := time.Now()
	s := start(t)
	t.Logf("started %s in %v", s.Addr(), time.Since(t0).Round(time.Millisecond))
	return s
}

func restart(t *testing.T, s *testservers.Server) {
	t.Helper()
	t0 := time.Now()
	s.Restart(t)
	t.Logf("restarted %s in %v", s.Addr(), time.Since(t0).Round(time.Millisecond))
}

// assertDown checks that nothing accepts connections on the server's port.
func assertDown(t *testing.T, s *testservers.Server) {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Kill/Stop", s.Addr())
	}
}

func checkAddr(t *testing.T, s *testservers.Server) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port != strconv.Itoa(s.Port()) {
		t.Fatalf("Addr() = %q, Port() = %d", s.Addr(), s.Port())
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	s := timed(t, testservers.Redis)
	checkAddr(t, s)
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if s.DSN() != s.Addr() {
		t.Errorf("DSN() = %q, want %q", s.DSN(), s.Addr())
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v", got, err)
	}

	s.Kill(t)
	assertDown(t, s)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	restart(t, s)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	// --save "": the data is gone after a kill.
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after Kill+Restart: %v, want redis.Nil", err)
	}
	if err := rdb.Set(ctx, "k2", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Stop(t)
	assertDown(t, s)
	restart(t, s)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Stop+Restart: %v", err)
	}
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	s := timed(t, testservers.Memcached)
	checkAddr(t, s)
	if want := "memcached://" + s.Addr(); s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if s.DSN() != s.Addr() {
		t.Errorf("DSN() = %q, want %q", s.DSN(), s.Addr())
	}
	mc := memcache.New(s.DSN())
	defer mc.Close()
	if err := mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if it, err := mc.Get("k"); err != nil || string(it.Value) != "v" {
		t.Fatalf("get k = %v, %v", it, err)
	}

	s.Kill(t)
	assertDown(t, s)
	if err := mc.Ping(); err == nil {
		t.Fatal("ping succeeded after Kill")
	}
	restart(t, s)
	mc2 := memcache.New(s.DSN())
	defer mc2.Close()
	if err := mc2.Ping(); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	if _, err := mc2.Get("k"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("get k after Kill+Restart: %v, want cache miss", err)
	}

	s.Stop(t)
	assertDown(t, s)
	restart(t, s)
	mc3 := memcache.New(s.DSN()) // mc2's pooled connection died with the server
	defer mc3.Close()
	if err := mc3.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("set after Stop+Restart: %v", err)
	}
}

// testDB hides the difference between database/sql (MariaDB) and pgx
// (PostgreSQL; pgx/v5/stdlib is not used because it needs jackc/puddle,
// which this module does not require). Every call uses a fresh connection,
// so calls after Kill/Restart do not trip over dead pooled connections.
type testDB interface {
	exec(q string, args ...any) error
	queryRow(q string, dest any, args ...any) error
	ph(i int) string // placeholder number i
}

func openDB(driver, dsn string) testDB {
	if driver == "pgx" {
		return pgDB(dsn)
	}
	return mysqlDB(dsn)
}

type pgDB string

func (d pgDB) conn() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, string(d))
}

func (d pgDB) exec(q string, args ...any) error {
	c, err := d.conn()
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(context.Background(), q, args...)
	return err
}

func (d pgDB) queryRow(q string, dest any, args ...any) error {
	c, err := d.conn()
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.QueryRow(context.Background(), q, args...).Scan(dest)
}

func (pgDB) ph(i int) string { return "$" + strconv.Itoa(i) }

type mysqlDB string

func (d mysqlDB) open() (*sql.DB, error) {
	db, err := sql.Open("mysql", string(d)+"&timeout=5s")
	if err != nil {
		return nil, err
	}
	db.SetMaxIdleConns(0)
	return db, nil
}

func (d mysqlDB) exec(q string, args ...any) error {
	db, err := d.open()
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(q, args...)
	return err
}

func (d mysqlDB) queryRow(q string, dest any, args ...any) error {
	db, err := d.open()
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRow(q, args...).Scan(dest)
}

func (mysqlDB) ph(int) string { return "?" }

// sqlRoundTrip exercises CREATE TABLE / INSERT / SELECT and checks that the
// data survives Kill+Restart and Stop+Restart.
func sqlRoundTrip(t *testing.T, s *testservers.Server, driver string) {
	db := openDB(driver, s.DSN())
	if err := db.exec("CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY, v VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	insert := "INSERT INTO kv (k, v) VALUES (" + db.ph(1) + ", " + db.ph(2) + ")"
	if err := db.exec(insert, "k", "v"); err != nil {
		t.Fatal(err)
	}
	selectV := func() (string, error) {
		var v string
		err := db.queryRow("SELECT v FROM kv WHERE k = "+db.ph(1), &v, "k")
		return v, err
	}
	if v, err := selectV(); err != nil || v != "v" {
		t.Fatalf("SELECT = %q, %v", v, err)
	}

	s.Kill(t)
	assertDown(t, s)
	if _, err := selectV(); err == nil {
		t.Fatal("SELECT succeeded after Kill")
	}
	restart(t, s)
	if v, err := selectV(); err != nil || v != "v" {
		t.Fatalf("SELECT after Kill+Restart = %q, %v (row should survive)", v, err)
	}
	if err := db.exec(insert, "k2", "v2"); err != nil {
		t.Fatal(err)
	}

	s.Stop(t)
	assertDown(t, s)
	restart(t, s)
	var n int
	if err := db.queryRow("SELECT COUNT(*) FROM kv", &n); err != nil || n != 2 {
		t.Fatalf("COUNT after Stop+Restart = %d, %v, want 2", n, err)
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	s := timed(t, testservers.Postgres)
	checkAddr(t, s)
	want := "postgres://postgres@" + s.Addr() + "/sessions_test?sslmode=disable"
	if s.URL() != want || s.DSN() != want {
		t.Errorf("URL() = %q, DSN() = %q, want %q", s.URL(), s.DSN(), want)
	}
	sqlRoundTrip(t, s, "pgx")
}

func TestMariaDB(t *testing.T) {
	t.Parallel()
	s := timed(t, testservers.MariaDB)
	checkAddr(t, s)
	if want := "mysql://root@" + s.Addr() + "/sessions_test"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if want := "root@tcp(" + s.Addr() + ")/sessions_test?parseTime=true"; s.DSN() != want {
		t.Errorf("DSN() = %q, want %q", s.DSN(), want)
	}
	sqlRoundTrip(t, s, "mysql")
}

func TestSharedPostgres(t *testing.T) {
	t.Parallel()
	testSharedSQL(t, testservers.SharedPostgres, "pgx")
}

func TestSharedMariaDB(t *testing.T) {
	t.Parallel()
	testSharedSQL(t, testservers.SharedMariaDB, "mysql")
}

// testSharedSQL checks that two callers share one server but get separate,
// empty databases.
func testSharedSQL(t *testing.T, shared func(testing.TB) *testservers.Server, driver string) {
	t0 := time.Now()
	a := shared(t)
	t.Logf("first shared server %s ready in %v", a.Addr(), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	b := shared(t)
	t.Logf("second database on it ready in %v", time.Since(t0).Round(time.Millisecond))
	if a.Addr() != b.Addr() {
		t.Fatalf("shared servers differ: %s vs %s", a.Addr(), b.Addr())
	}
	if a.DB() == b.DB() {
		t.Fatalf("both callers got database %q", a.DB())
	}
	dba, dbb := openDB(driver, a.DSN()), openDB(driver, b.DSN())
	if err := dba.exec("CREATE TABLE only_in_a (x INT)"); err != nil {
		t.Fatal(err)
	}
	if err := dba.exec("INSERT INTO only_in_a VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dbb.queryRow("SELECT x FROM only_in_a", &n); err == nil {
		t.Fatal("table created in one shared database is visible in another")
	}
	if err := dba.queryRow("SELECT COUNT(*) FROM only_in_a", &n); err != nil || n != 1 {
		t.Fatalf("COUNT = %d, %v", n, err)
	}

	// Kill on a shared server must fail the test, not kill the server.
	ft := &fakeTB{TB: t}
	runFake(ft, func() { a.Kill(ft) })
	if !ft.failed {
		t.Fatal("Kill on a shared server did not fail the test")
	}
	if err := dbb.queryRow("SELECT 1", &n); err != nil {
		t.Fatalf("shared server down after refused Kill: %v", err)
	}

	// Close drops the database.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dbb.queryRow("SELECT 1", &n); err == nil {
		t.Fatalf("database %s still exists after Close", b.DB())
	}
}

func TestSharedRedis(t *testing.T) {
	t.Parallel()
	a := testservers.SharedRedis(t)
	b := testservers.SharedRedis(t)
	if a.Addr() != b.Addr() || a.DB() == b.DB() || a.DB() == "0" || b.DB() == "0" {
		t.Fatalf("a = %s DB %s, b = %s DB %s", a.Addr(), a.DB(), b.Addr(), b.DB())
	}
	ctx := context.Background()
	oa, _ := redis.ParseURL(a.URL())
	ob, _ := redis.ParseURL(b.URL())
	ra, rb := redis.NewClient(oa), redis.NewClient(ob)
	defer ra.Close()
	defer rb.Close()
	if err := ra.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("key from DB %s visible in DB %s: %v", a.DB(), b.DB(), err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := ra.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after Close = %d, %v; want 0", n, err)
	}
}

func TestSharedMemcached(t *testing.T) {
	t.Parallel()
	a := testservers.SharedMemcached(t)
	b := testservers.SharedMemcached(t)
	if a.Addr() != b.Addr() {
		t.Fatalf("shared memcached differs: %s vs %s", a.Addr(), b.Addr())
	}
	mc := memcache.New(a.DSN())
	defer mc.Close()
	key := strings.ReplaceAll(t.Name(), "/", "_") + "_k"
	if err := mc.Set(&memcache.Item{Key: key, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if it, err := memcache.New(b.DSN()).Get(key); err != nil || string(it.Value) != "v" {
		t.Fatalf("get = %v, %v", it, err)
	}
}

// TestSharedConcurrent hammers the shared constructors from many goroutines.
func TestSharedConcurrent(t *testing.T) {
	t.Parallel()
	for i := range 8 {
		t.Run(fmt.Sprint("sub", i), func(t *testing.T) {
			t.Parallel()
			s := testservers.SharedPostgres(t)
			if err := openDB("pgx", s.DSN()).exec("CREATE TABLE t (x INT)"); err != nil {
				t.Error(err)
			}
			r := testservers.SharedRedis(t)
			if r.DB() == "0" {
				t.Error("shared redis handed out DB 0")
			}
		})
	}
}

// TestStartClose covers the non-testing API.
func TestStartClose(t *testing.T) {
	t.Parallel()
	s, err := testservers.StartRedis()
	if errors.Is(err, testservers.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	assertDown(t, s)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists after Close: %v", dir, err)
	}
}

// TestProcessDeath checks that servers die with the test binary: a child
// test process starts a redis-server, prints its address and then is killed
// with SIGKILL; the server must go away.
func TestProcessDeath(t *testing.T) {
	if os.Getenv("TESTSERVERS_CHILD") == "1" {
		s := testservers.Redis(t)
		fmt.Println("ADDR", s.Addr(), s.Dir())
		time.Sleep(time.Minute)
		return
	}
	if testing.Short() {
		t.Skip("short")
	}
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestProcessDeath$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTSERVERS_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var addr, dir string
	buf := make([]byte, 4096)
	var all string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		all += string(buf[:n])
		for _, line := range strings.Split(all, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "ADDR" {
				addr, dir = f[1], f[2]
			}
			if strings.Contains(line, "SKIP") {
				t.Skip("child skipped: " + all)
			}
		}
		if err != nil {
			break
		}
	}
	if addr == "" {
		t.Fatalf("child did not report an address: %s", all)
	}
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("child's redis not reachable: %v", err)
	} else {
		c.Close()
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The killed child could not clean up its directory; that is expected.
	defer os.RemoveAll(dir)
	for end := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return // gone
		}
		c.Close()
		if time.Now().After(end) {
			t.Fatalf("redis at %s survived the death of the test binary", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeTB records Fatal instead of stopping the real test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic(fakeFatal{})
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = true
	panic(fakeFatal{})
}

type fakeFatal struct{}

func runFake(_ *fakeTB, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fakeFatal); !ok {
				panic(r)
			}
		}
	}()
	fn()
}
