package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"
	"github.com/sessionstorage/sessions/internal/poll"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
)

// unreachableDriver is a driver whose storage (a real memory store) cannot
// be reached until the test says so, as a Redis that is down at start.
var unreachableDriver struct {
	once      sync.Once
	reachable atomic.Bool
	opens     atomic.Int32
	mem       *memory.Store
}

func registerUnreachableDriver(t *testing.T) {
	unreachableDriver.once.Do(func() {
		unreachableDriver.mem = memory.New(memory.Options{})
		driver.Register("downatstart", func(_ context.Context, u *url.URL) (store.StoreInterface, error) {
			if u.Query().Has("bogus") {
				return nil, fmt.Errorf("downatstart: unknown option bogus")
			}
			unreachableDriver.opens.Add(1)
			if !unreachableDriver.reachable.Load() {
				return nil, fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", sessions.ErrStorageUnreachable)
			}
			return unreachableDriver.mem, nil
		})
	})
	unreachableDriver.reachable.Store(false)
}

func TestNewStartsWhileStorageIsUnreachable(t *testing.T) {
	registerUnreachableDriver(t)
	modes(t, func(t *testing.T, cluster bool) {
		unreachableDriver.reachable.Store(false)
		logs := &logBuffer{}
		prefix := fmt.Sprintf("t%d:", time.Now().UnixNano())
		m, err := sessions.New(sessions.Config{Storage: "downatstart://x", KeyPrefix: prefix, Cluster: cluster,
			WriteBehind: 5 * time.Millisecond, StorageTimeout: 50 * time.Millisecond, Logger: slogTo(logs)})
		if err != nil {
			t.Fatalf("New with the storage down: %v; it must start and open it later", err)
		}
		defer m.Close(context.Background())
		if logs.count("storage unreachable at start") != 1 {
			t.Errorf("no log of the unreachable storage:\n%s", logs)
		}
		h := m.Handler(testApp())
		c := newClient(t)
		code, _ := c.do(h, "/set?k=a&v=1")
		switch {
		case cluster && code != 503:
			t.Fatalf("cluster mode with the storage down answered %d, want 503", code)
		case !cluster && code != 200:
			t.Fatalf("sticky mode with the storage down answered %d for a new session, want 200", code)
		}
		if !cluster {
			if got := c.must(h, "/get?k=a", 200); got != "1" {
				t.Fatalf("from memory: %q", got)
			}
			stranger := &client{t: t, name: "session", cookie: randomID()}
			if code, _ := stranger.do(h, "/get?k=a"); code != 503 {
				t.Fatalf("a memory miss with the storage down answered %d, want 503", code)
			}
		}
		unreachableDriver.reachable.Store(true)
		poll.Eventually(t, 10*time.Second, "storage opened", func() bool { return logs.count("storage opened") == 1 })
		if cluster {
			c.must(h, "/set?k=a&v=1", 200)
		}
		poll.Eventually(t, 5*time.Second, "session stored", func() bool {
			_, err := unreachableDriver.mem.Get(context.Background(), adapter.Key(prefix, c.cookie))
			return err == nil
		})
	})
}

func TestRequireStorageAtStartFailsFast(t *testing.T) {
	registerUnreachableDriver(t)
	_, err := sessions.New(sessions.Config{Storage: "downatstart://x", RequireStorageAtStart: true})
	if !errors.Is(err, sessions.ErrStorageUnreachable) {
		t.Fatalf("New with RequireStorageAtStart and the storage down = %v, want ErrStorageUnreachable", err)
	}
	// A configuration error fails New whatever the option.
	if _, err := sessions.New(sessions.Config{Storage: "downatstart://x?bogus=1"}); err == nil || errors.Is(err, sessions.ErrStorageUnreachable) {
		t.Fatalf("New with a bad option = %v, want a configuration error", err)
	}
}

// Close while the storage has still not opened returns, reporting what
// was left unwritten, and leaves no goroutine behind (TestMain checks).
func TestCloseWhileStorageNeverOpened(t *testing.T) {
	registerUnreachableDriver(t)
	m, err := sessions.New(sessions.Config{Storage: "downatstart://x", StorageTimeout: 20 * time.Millisecond, Logger: slogTo(&logBuffer{})})
	if err != nil {
		t.Fatal(err)
	}
	newClient(t).must(m.Handler(testApp()), "/set?k=a&v=1", 200)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := m.Close(ctx); err == nil {
		t.Fatal("Close with a write that never reached storage reported nothing")
	}
}
