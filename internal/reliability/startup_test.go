package reliability_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sessionstorage/sessions"
	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	"github.com/sessionstorage/sessions/internal/poll"
	"github.com/sessionstorage/sessions/internal/testservers"
)

// An app starts while its storage is down: New succeeds, sticky mode
// serves a new session from memory, and once the server is back the
// session reaches storage, where another Manager reads it.
func TestStartWhileServerIsDown(t *testing.T) {
	for _, name := range []string{"redis", "memcached", "postgres", "mariadb"} {
		t.Run(name, func(t *testing.T) {
			var srv *testservers.Server
			switch name {
			case "redis":
				srv = testservers.Redis(t)
			case "memcached":
				srv = testservers.Memcached(t)
			case "postgres":
				srv = testservers.Postgres(t)
			case "mariadb":
				srv = testservers.MariaDB(t)
			}
			url := srv.URL()
			srv.Stop(t)
			m := newManager(t, sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond, StorageTimeout: 500 * time.Millisecond})
			h := m.Handler(counterApp())
			b := &browser{}
			if code, body := b.get(h, "/incr"); code != 200 || body != "1" {
				t.Fatalf("a new session while %s is down: %d %q", name, code, body)
			}
			srv.Restart(t)
			poll.Eventually(t, 30*time.Second, "the storage opened and the session written", func() bool {
				s := m.Stats()
				return s.StorageWrites > 0 && s.PendingWrites == 0
			})
			if err := closeWithin(t, m, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			m2 := newManager(t, sessions.Config{Storage: url})
			defer closeWithin(t, m2, 5*time.Second)
			if code, body := b.get(m2.Handler(counterApp()), "/get"); code != 200 || body != "1" {
				t.Fatalf("after %s came back: %d %q", name, code, body)
			}
		})
	}
}

// A new process overlapping the old one on a bolt file (a single-host
// restart) starts while the file is locked, serves new sessions from
// memory, and opens the file once the old process lets go.
func TestStartWhileBoltFileIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	url := fmt.Sprintf("bolt://%s?timeout=100ms", path)
	first := newManager(t, sessions.Config{Storage: url})
	if err := closeWithin(t, first, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The old process: an exclusive lock on the file, as bbolt takes it.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, sessions.Config{Storage: url, WriteBehind: 10 * time.Millisecond, StorageTimeout: 200 * time.Millisecond})
	defer closeWithin(t, m, 5*time.Second)
	b := &browser{}
	if code, body := b.get(m.Handler(counterApp()), "/incr"); code != 200 || body != "1" {
		t.Fatalf("a new session while the file is locked: %d %q", code, body)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "the file opened and the session written", func() bool {
		s := m.Stats()
		return s.StorageWrites > 0 && s.PendingWrites == 0
	})
	if err := closeWithin(t, m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, sessions.Config{Storage: url})
	defer closeWithin(t, m2, 5*time.Second)
	if code, body := b.get(m2.Handler(counterApp()), "/get"); code != 200 || body != "1" {
		t.Fatalf("after the file was let go: %d %q", code, body)
	}
}
