package memcached

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// Open wraps driver.ErrUnreachable around failures to reach the
// servers, and only around those.
func TestOpenUnreachable(t *testing.T) {
	addr := testservers.SharedMemcached(t).Addr()
	redis := testservers.SharedRedis(t).Addr()
	for raw, want := range map[string]bool{
		// Nothing listens on port 1: refused.
		"memcached://127.0.0.1:1":              true,
		"memcached://" + addr + ",127.0.0.1:1": true,
		// A name that does not resolve (yet: a service not started).
		"memcached://no-such-host.invalid:11211": true,
		// Configuration errors.
		"memcached://127.0.0.1:1?bogus=1":       false,
		"memcached://127.0.0.1:1?timeout=-1s":   false,
		"memcached://127.0.0.1:1?max_idle=many": false,
		"memcached://127.0.0.1:99999":           false,
		"memcached://" + redis:                  false, // answers, not as memcached
	} {
		s, err := Open(context.Background(), mustParse(t, raw))
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", raw)
			continue
		}
		if got := errors.Is(err, driver.ErrUnreachable); got != want {
			t.Errorf("%s: %v; errors.Is ErrStorageUnreachable = %v, want %v", raw, err, got, want)
		}
		if want && !strings.Contains(err.Error(), "cannot reach servers") && !strings.Contains(err.Error(), "resolving servers") {
			t.Errorf("%s: %v lost the original text", raw, err)
		}
	}
}

// gomemcache takes no context: the timeout option bounds every round trip
// to a hung server, whatever the caller's deadline.
func TestHungServerCallsBoundedByTimeout(t *testing.T) {
	t.Parallel()
	srv := testservers.Memcached(t)
	const timeout = 200 * time.Millisecond
	s := openURL(t, srv.URL()+"?timeout="+timeout.String())
	bg := context.Background()
	if err := s.Set(bg, "sess:a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)

	calls := map[string]func(ctx context.Context) error{
		"Get": func(ctx context.Context) error { _, err := s.Get(ctx, "sess:a"); return err },
		"Set": func(ctx context.Context) error { return s.Set(ctx, "sess:a", []byte("2")) },
		"CompareAndSwap": func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, "sess:a", []byte("1"), []byte("2"), 0)
			return err
		},
		"Add": func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, "sess:b", nil, []byte("2"), 0)
			return err
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, "sess:a") },
		"CompareAndDelete": func(ctx context.Context) error {
			_, err := s.CompareAndDelete(ctx, "sess:a", []byte("1"))
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		start := time.Now()
		err := call(ctx)
		d := time.Since(start)
		cancel()
		if err == nil {
			t.Errorf("%s on a hung server succeeded", name)
		}
		if d > timeout+time.Second {
			t.Errorf("%s on a hung server took %v with timeout=%v", name, d, timeout)
		}
	}

	// Open of a hung server: unreachable, within the timeout.
	start := time.Now()
	_, err := Open(bg, mustParse(t, srv.URL()+"?timeout="+timeout.String()))
	if !errors.Is(err, driver.ErrUnreachable) {
		t.Errorf("Open of a hung server: %v, want ErrStorageUnreachable", err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Open of a hung server took %v with timeout=%v", d, timeout)
	}

	// The commands written to the paused server run now; the client,
	// having dropped those connections, dials again.
	srv.Resume(t)
	if err := s.Set(bg, "sess:c", []byte("3")); err != nil {
		t.Fatalf("Set after Resume: %v", err)
	}
	if v, err := s.Get(bg, "sess:c"); err != nil || string(v.([]byte)) != "3" {
		t.Errorf("Get after Resume: %v, %v", v, err)
	}
}
