package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// contextTimeoutEnabled reports the option as the built client holds it.
func contextTimeoutEnabled(t *testing.T, c goredis.UniversalClient) bool {
	t.Helper()
	switch c := c.(type) {
	case *goredis.Client:
		return c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	t.Fatalf("client is a %T", c)
	return false
}

func TestContextTimeoutEnabledInEveryMode(t *testing.T) {
	for _, base := range []string{
		"redis://127.0.0.1:7000/1?x=",
		"rediss://127.0.0.1:7000/1?x=",
		"redis://127.0.0.1:7000?master_name=m&addr=127.0.0.1:7001&x=",
		"redis://127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001&x=",
	} {
		for suffix, want := range map[string]bool{
			"":                              true, // the default
			"&context_timeout_enabled=true": true,
			"&context_timeout_enabled=0":    false,
			"&context_timeout_enabled=false&read_timeout=1s": false,
		} {
			raw := strings.Replace(base, "x=", "", 1) + suffix
			c, _, err := clientFromURL(mustParse(t, raw))
			if err != nil {
				t.Errorf("%s: %v", raw, err)
				continue
			}
			if got := contextTimeoutEnabled(t, c); got != want {
				t.Errorf("%s: ContextTimeoutEnabled = %v, want %v", raw, got, want)
			}
			c.Close()
		}
	}
}

// Option values go-redis or the driver cannot read are errors naming the
// option and the value.
func TestBadOptionValues(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://127.0.0.1:7000?context_timeout_enabled=maybe":                  `option context_timeout_enabled="maybe": want true or false`,
		"redis://127.0.0.1:7000?cluster=true&context_timeout_enabled=sometimes": `option context_timeout_enabled="sometimes"`,
		"redis://127.0.0.1:7000?master_name=m&context_timeout_enabled=2":        `option context_timeout_enabled="2"`,
		"redis://127.0.0.1:7000?read_timeout=soon":                              "invalid read_timeout duration",
		"redis://127.0.0.1:7000?pool_size=many":                                 "invalid pool_size",
		"redis://127.0.0.1:7000?cluster=true&max_redirects=x":                   "invalid max_redirects",
		"redis://127.0.0.1:7000?cluster=yes":                                    `option cluster="yes": want true or false`,
	} {
		_, _, err := clientFromURL(mustParse(t, raw))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", raw, err, want)
		}
	}
}

// Open wraps driver.ErrUnreachable around failures to reach the
// deployment, and only around those.
func TestOpenUnreachable(t *testing.T) {
	srv := testservers.SharedRedis(t)
	for raw, want := range map[string]bool{
		// Nothing listens on port 1: refused.
		"redis://127.0.0.1:1/0":                              true,
		"redis://127.0.0.1:1?cluster=true&addr=127.0.0.1:2":  true,
		"redis://127.0.0.1:1?master_name=m&addr=127.0.0.1:2": true,
		// Configuration errors.
		"redis://127.0.0.1:1/0?bogus=1":                        false,
		"redis://127.0.0.1:1/0?read_timeout=soon":              false,
		"redis://nobody:s3cret@" + srv.Addr() + "/" + srv.DB(): false, // WRONGPASS
		"redis://" + srv.Addr() + "/0?master_name=m":           false, // no Sentinel there
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := Open(ctx, mustParse(t, raw))
		cancel()
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", raw)
			continue
		}
		if got := errors.Is(err, driver.ErrUnreachable); got != want {
			t.Errorf("%s: %v; errors.Is ErrStorageUnreachable = %v, want %v", raw, err, got, want)
		}
		if want && !strings.Contains(err.Error(), "cannot reach") {
			t.Errorf("%s: %v lost the original text", raw, err)
		}
	}

	// A server that accepts connections but never answers: the PING ends
	// with Open's context, and that is unreachable too.
	hung := testservers.Redis(t)
	hung.Pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, mustParse(t, hung.URL()))
	if !errors.Is(err, driver.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open of a hung server: %v, want ErrStorageUnreachable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open of a hung server with a 300ms context took %v", d)
	}
}

// Every call on a hung server ends with its context (go-redis's
// ContextTimeoutEnabled); context_timeout_enabled=false restores
// go-redis's own read_timeout.
func TestHungServerCallsEndWithContext(t *testing.T) {
	t.Parallel()
	srv := testservers.Redis(t)
	s := openURL(t, srv.URL())
	slow := openURL(t, srv.URL()+"?context_timeout_enabled=false&read_timeout=1500ms&max_retries=-1")
	bg := context.Background()
	if err := s.Set(bg, "sess:a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Get(bg, "sess:a"); err != nil { // a pooled connection
		t.Fatal(err)
	}
	srv.Pause(t)

	const timeout = 200 * time.Millisecond
	calls := map[string]func(ctx context.Context) error{
		"Get": func(ctx context.Context) error { _, err := s.Get(ctx, "sess:a"); return err },
		"Set": func(ctx context.Context) error { return s.Set(ctx, "sess:a", []byte("2")) },
		"CompareAndSwap": func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, "sess:a", []byte("1"), []byte("2"), 0)
			return err
		},
		"ListKeys": func(ctx context.Context) error { return s.ListKeys(ctx, "sess:", func(string) error { return nil }) },
		"Delete":   func(ctx context.Context) error { return s.Delete(ctx, "sess:a") },
		"SetWithTTL": func(ctx context.Context) error {
			return s.Set(ctx, "sess:a", []byte("2"), store.WithExpiration(time.Minute))
		},
		"SetMany": func(ctx context.Context) error {
			return s.SetMany(ctx, []string{"sess:a"}, [][]byte{[]byte("2")}, time.Minute)
		},
		"CompareAndDelete": func(ctx context.Context) error {
			_, err := s.CompareAndDelete(ctx, "sess:a", []byte("1"))
			return err
		},
		"ListExpiring": func(ctx context.Context) error {
			_, _, err := s.ListExpiring(ctx, "sess:", time.Now().Add(time.Hour), 10)
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(bg, timeout)
		start := time.Now()
		err := call(ctx)
		d := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a hung server: %v, want context.DeadlineExceeded", name, err)
		}
		if d > timeout+time.Second {
			t.Errorf("%s on a hung server took %v with a %v context", name, d, timeout)
		}
	}

	// Without it the call waits for read_timeout, past the context.
	ctx, cancel := context.WithTimeout(bg, timeout)
	defer cancel()
	start := time.Now()
	_, err := slow.Get(ctx, "sess:a")
	if d := time.Since(start); err == nil || d < time.Second {
		t.Errorf("context_timeout_enabled=false: Get returned %v after %v, want an error after read_timeout (1.5s)", err, d)
	}
}
