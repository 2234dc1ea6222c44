package memory

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/sessionstorage/sessions/driver"
)

// The memory driver is the default storage: "memory" or memory://, with
// one option, sweep (how often expired entries are removed, default 1 s).
// Package sessions imports this package, so the scheme is always
// registered.
func init() { driver.Register("memory", Open) }

// Open opens a memory store from a memory:// URL.
func Open(_ context.Context, u *url.URL) (driver.Store, error) {
	opts := Options{}
	for name, vals := range u.Query() {
		if name != "sweep" {
			// key_prefix, the library's own, is taken out before this.
			return nil, fmt.Errorf("memory storage: unknown option %q; known options: sweep (and key_prefix, for every storage)", name)
		}
		if len(vals) != 1 {
			return nil, fmt.Errorf("memory storage: option %q given %d times", name, len(vals))
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("memory storage: option sweep=%q: want a positive duration such as 1s", vals[0])
		}
		opts.SweepInterval = d
	}
	return New(opts), nil
}
