package testservers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sharedEntry is the per-process shared server of one kind.
type sharedEntry struct {
	mu      sync.Mutex // held while starting, so concurrent first callers wait
	started bool
	p       *proc
	err     error
	next    int          // database name counter
	redisDB map[int]bool // redis DB numbers in use
}

var (
	sharedMu sync.Mutex
	shared   = map[kind]*sharedEntry{}
)

func sharedServer(sp *spec) (*sharedEntry, error) {
	sharedMu.Lock()
	e := shared[sp.kind]
	if e == nil {
		e = &sharedEntry{redisDB: map[int]bool{}}
		shared[sp.kind] = e
	}
	sharedMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		e.p, e.err = startServer(sp)
		e.started = true
	}
	return e, e.err
}

// StopShared stops every shared server started by the Shared functions and
// removes their directories. Call it from TestMain after m.Run. A Shared
// function called afterwards starts a new server. Servers that are not
// stopped this way are still killed when the process exits (Pdeathsig), but
// their directories remain.
func StopShared() {
	sharedMu.Lock()
	entries := shared
	shared = map[kind]*sharedEntry{}
	sharedMu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.p != nil {
				_ = e.p.close()
			}
		}()
	}
	wg.Wait()
}

// SharedPostgres returns the per-process shared PostgreSQL server (started
// on first use) with a fresh, empty database for the caller, dropped (WITH
// (FORCE), closing leftover connections) at the end of t. Kill, Stop and
// Restart fail on the result. See the package documentation.
func SharedPostgres(t testing.TB) *Server {
	t.Helper()
	return sharedSQL(t, postgresSpec,
		func(p *proc, name string) error {
			return p.pgExec(context.Background(), "CREATE DATABASE "+name)
		},
		func(p *proc, name string) error {
			err := p.pgExec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			if err != nil && strings.Contains(err.Error(), "syntax error") { // PostgreSQL < 13
				err = p.pgExec(context.Background(), "DROP DATABASE IF EXISTS "+name)
			}
			return err
		})
}

// SharedMariaDB returns the per-process shared MariaDB server (started on
// first use) with a fresh, empty database for the caller, dropped at the end
// of t. Kill, Stop and Restart fail on the result. See the package
// documentation.
func SharedMariaDB(t testing.TB) *Server {
	t.Helper()
	return sharedSQL(t, mariaSpec,
		func(p *proc, name string) error {
			return sqlExec(context.Background(), p.mariaConnector(""), "CREATE DATABASE "+name)
		},
		func(p *proc, name string) error {
			return sqlExec(context.Background(), p.mariaConnector(""), "DROP DATABASE IF EXISTS "+name)
		})
}

func sharedSQL(t testing.TB, sp *spec, create, drop func(p *proc, name string) error) *Server {
	t.Helper()
	e, err := sharedServer(sp)
	if err != nil {
		failOrSkip(t, err)
	}
	e.mu.Lock()
	e.next++
	name := "sessions_t" + strconv.Itoa(e.next)
	e.mu.Unlock()
	if err := create(e.p, name); err != nil {
		t.Fatalf("testservers: creating database %s on shared %s %s: %v", name, sp.name, e.p.addr(), err)
	}
	s := &Server{p: e.p, db: name, shared: true}
	s.close = sync.OnceValue(func() error {
		if e.p.isClosed() {
			return nil
		}
		if err := drop(e.p, name); err != nil {
			return fmt.Errorf("dropping database %s on shared %s %s: %v", name, sp.name, e.p.addr(), err)
		}
		return nil
	})
	return fromTB(t, s, nil)
}

// SharedRedis returns the per-process shared redis-server (started on first
// use) with a logical database number of the caller's own (1 to 4095),
// flushed when handed out and at the end of t. The number is in URL and DB,
// not in Addr or DSN. Kill, Stop and Restart fail on the result.
func SharedRedis(t testing.TB) *Server {
	t.Helper()
	e, err := sharedServer(redisSpec)
	if err != nil {
		failOrSkip(t, err)
	}
	e.mu.Lock()
	n := 0
	for i := 1; i < redisDatabases; i++ {
		if !e.redisDB[i] {
			n = i
			e.redisDB[i] = true
			break
		}
	}
	e.mu.Unlock()
	if n == 0 {
		t.Fatalf("testservers: all %d databases of the shared redis are in use", redisDatabases-1)
	}
	if err := redisFlushDB(e.p.addr(), n); err != nil {
		t.Fatalf("testservers: flushing DB %d of shared redis %s: %v", n, e.p.addr(), err)
	}
	s := &Server{p: e.p, db: strconv.Itoa(n), shared: true}
	s.close = sync.OnceValue(func() error {
		defer func() {
			e.mu.Lock()
			delete(e.redisDB, n)
			e.mu.Unlock()
		}()
		if e.p.isClosed() {
			return nil
		}
		if err := redisFlushDB(e.p.addr(), n); err != nil {
			return fmt.Errorf("flushing DB %d of shared redis %s: %v", n, e.p.addr(), err)
		}
		return nil
	})
	return fromTB(t, s, nil)
}

// SharedMemcached returns the per-process shared memcached (started on first
// use). All callers share the one cache: use keys unique to the test and do
// not flush_all. Kill, Stop and Restart fail on the result.
func SharedMemcached(t testing.TB) *Server {
	t.Helper()
	e, err := sharedServer(memcachedSpec)
	if err != nil {
		failOrSkip(t, err)
	}
	return &Server{p: e.p, shared: true, close: func() error { return nil }}
}

// redisFlushDB runs SELECT n; FLUSHDB over the raw protocol.
func redisFlushDB(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ns := strconv.Itoa(n)
	req := "*2\r\n$6\r\nSELECT\r\n$" + strconv.Itoa(len(ns)) + "\r\n" + ns + "\r\n*1\r\n$7\r\nFLUSHDB\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for range 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+OK") {
			return errors.New(strings.TrimSpace(line))
		}
	}
	return nil
}

func (p *proc) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// LeakCheckOptions are the go.uber.org/goleak options a test package using
// this package needs: they ignore the process spawner goroutine, which is
// pinned to its thread and lives as long as the test binary (see
// StopShared).
func LeakCheckOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/sessionstorage/sessions/internal/testservers.spawn.func1"),
		goleak.IgnoreAnyFunction("github.com/sessionstorage/sessions/internal/testservers.spawn.func1.1"),
	}
}
