package memcached

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/eko/gocache/lib/v4/store"
)

// Scheme is the URL scheme this package registers with the sessions core.
const Scheme = "memcached"

// DefaultPort is the port of a server given without one.
const DefaultPort = "11211"

func init() {
	driver.Register(Scheme, func(ctx context.Context, u *url.URL) (store.StoreInterface, error) {
		return Open(ctx, u)
	})
}

var knownOptions = []string{"addr", "max_idle", "max_item", "timeout"}

// config is what a URL describes.
type config struct {
	servers []string
	timeout time.Duration
	maxIdle int
	maxItem int
}

func parseURL(u *url.URL) (*config, error) {
	if u == nil {
		return nil, errors.New("memcached: Open with a nil URL")
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return nil, fmt.Errorf("memcached: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("memcached: URL %q is not of the form memcached://host:port[,host:port...][?options]", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("memcached: URL %q has user information; memcached's text protocol has no authentication", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("memcached: URL %q has a path %q; memcached has no databases", u.Redacted(), u.Path)
	}
	c := &config{timeout: memcache.DefaultTimeout, maxIdle: memcache.DefaultMaxIdleConns, maxItem: DefaultMaxItem}
	q := u.Query()
	var unknown []string
	for k := range q {
		if !slices.Contains(knownOptions, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("memcached: unknown option %s; known: %s", strings.Join(unknown, ", "), strings.Join(knownOptions, ", "))
	}
	var hosts []string
	if u.Host != "" {
		hosts = strings.Split(u.Host, ",")
	}
	hosts = append(hosts, q["addr"]...)
	if len(hosts) == 0 {
		return nil, fmt.Errorf("memcached: URL %q names no server; use memcached://host:port[,host:port...]", u.Redacted())
	}
	for _, h := range hosts {
		addr, err := serverAddr(h)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, addr)
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("memcached: option timeout=%q: want a positive Go duration such as 500ms", v)
		}
		c.timeout = d
	}
	if v := q.Get("max_idle"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("memcached: option max_idle=%q: want a whole number >= 1", v)
		}
		c.maxIdle = n
	}
	if v := q.Get("max_item"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= ItemOverhead {
			return nil, fmt.Errorf("memcached: option max_item=%q: want a number of bytes > %d (memcached's -I; default %d)", v, ItemOverhead, DefaultMaxItem)
		}
		c.maxItem = n
	}
	return c, nil
}

// serverAddr validates one host[:port] entry and adds the default port.
func serverAddr(h string) (string, error) {
	if h == "" {
		return "", errors.New("memcached: empty server in the server list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or an unbracketed IPv6 address, which is ambiguous).
		if strings.Count(h, ":") > 1 && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("memcached: server %q: write an IPv6 address in brackets, [addr]:port", h)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), DefaultPort
		if strings.Contains(host, ":") && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("memcached: server %q is not host or host:port", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("memcached: server %q has no host", h)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("memcached: server %q: bad port %q", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Open makes a client for the servers a memcached:// URL lists (see the
// package documentation for the format and options), checks that every
// server answers (bounded by the timeout option; ctx is checked first), and
// returns a Store that owns the client: Store.Close closes its idle
// connections. A malformed URL, an unknown option, an unresolvable host or
// an unreachable server is an error. An error that a server could not be
// reached (refused, timed out, its host name not resolving) wraps
// driver.ErrUnreachable; one about the URL or its options, or a
// server that answers but not as memcached, does not.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	ss := new(memcache.ServerList)
	if err := ss.SetServers(c.servers...); err != nil {
		err = fmt.Errorf("memcached: resolving servers %s: %w", strings.Join(c.servers, ","), err)
		if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) {
			// A name that does not resolve yet (a service not started) may later.
			return nil, fmt.Errorf("%w: %w", driver.ErrUnreachable, err)
		}
		return nil, err
	}
	client := memcache.NewFromSelector(ss)
	client.Timeout = c.timeout
	client.MaxIdleConns = c.maxIdle
	if err := client.Ping(); err != nil {
		_ = client.Close()
		err = fmt.Errorf("memcached: cannot reach servers %s: %w", strings.Join(c.servers, ","), err)
		if strings.Contains(err.Error(), "unexpected response line") {
			return nil, err // something answered, not memcached
		}
		return nil, fmt.Errorf("%w: %w", driver.ErrUnreachable, err)
	}
	if err := ctx.Err(); err != nil {
		_ = client.Close()
		return nil, err
	}
	s := New(client, WithMaxItem(c.maxItem))
	s.owned = true
	return s, nil
}
