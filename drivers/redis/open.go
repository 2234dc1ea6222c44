package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	goredis "github.com/redis/go-redis/v9"
)

// The URL schemes this package registers with the sessions core.
const (
	Scheme    = "redis"  // plain TCP
	TLSScheme = "rediss" // TLS
)

func init() {
	open := func(ctx context.Context, u *url.URL) (store.StoreInterface, error) {
		return Open(ctx, u)
	}
	driver.Register(Scheme, open)
	driver.Register(TLSScheme, open)
}

// mode is the kind of deployment a URL describes.
type mode int

const (
	standalone mode = iota
	sentinel
	cluster
)

func (m mode) String() string {
	return [...]string{"standalone", "Sentinel", "Cluster"}[m]
}

// Query options go-redis v9.23.0 understands, per deployment, as read from
// its ParseURL, ParseFailoverURL and ParseClusterURL. They are checked here
// first so that a typo gets a message listing the known names;
// TestKnownOptionsAccepted checks that go-redis accepts each of them.
var (
	commonOptions = []string{
		"client_name", "conn_max_idle_time", "conn_max_lifetime", "conn_max_lifetime_jitter",
		"dial_timeout", "max_active_conns", "max_concurrent_dials", "max_idle_conns",
		"max_retries", "max_retry_backoff", "min_idle_conns", "min_retry_backoff",
		"pipeline_pool_size", "pipeline_read_buffer_size", "pipeline_write_buffer_size",
		"pool_fifo", "pool_size", "pool_timeout", "protocol", "read_timeout", "write_timeout",
	}
	modeOptions = map[mode][]string{
		standalone: {"db", "idle_timeout", "max_conn_age"},
		sentinel: {
			"addr", "db", "dialer_retries", "dialer_retry_timeout",
			"disableIdentity", "identitySuffix", "master_name", "password", "unstable_resp3", "username",
		},
		cluster: {
			"addr", "cluster", "dialer_retries", "dialer_retry_timeout", "failing_timeout_seconds",
			"max_redirects", "read_only", "route_by_latency", "route_by_latency_tolerance", "route_randomly",
		},
	}
	// notSupported are options go-redis knows but the driver rejects, with
	// the reason.
	notSupported = map[mode]map[string]string{
		sentinel: {
			"route_by_latency":          "it needs a read-only replica client (go-redis panics on it); sessions are written",
			"route_randomly":            "it needs a read-only replica client (go-redis panics on it); sessions are written",
			"replica_only":              "sessions are written, so the client must talk to the master",
			"use_disconnected_replicas": "sessions are written, so the client must talk to the master",
		},
	}
)

// knownOptions returns the sorted option names accepted for m with the
// given scheme.
func knownOptions(m mode, scheme string) []string {
	known := append(slices.Clone(commonOptions), modeOptions[m]...)
	known = append(known, "cluster", "context_timeout_enabled") // the driver's own; cluster=false is allowed anywhere
	if m == cluster {
		known = append(known, "cluster_state_reload_interval") // the driver's own
	}
	if scheme == TLSScheme && m != cluster {
		known = append(known, "skip_verify")
	}
	slices.Sort(known)
	return slices.Compact(known)
}

// clientFromURL builds (without connecting) the go-redis client a URL
// describes.
func clientFromURL(u *url.URL) (goredis.UniversalClient, mode, error) {
	if u == nil {
		return nil, 0, errors.New("redis: Open with a nil URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != Scheme && scheme != TLSScheme {
		return nil, 0, fmt.Errorf("redis: URL scheme %q, want %q or %q", u.Scheme, Scheme, TLSScheme)
	}
	if u.Opaque != "" {
		return nil, 0, fmt.Errorf("redis: URL %s is not of the form %s://[user:password@]host:port[/db][?options]", redact(u), scheme)
	}
	q := u.Query()
	m := standalone
	if v := q.Get("cluster"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, 0, fmt.Errorf("redis: option cluster=%q: want true or false", v)
		}
		if on {
			m = cluster
		}
	}
	if q.Has("master_name") {
		if m == cluster {
			return nil, 0, errors.New("redis: options master_name (Sentinel) and cluster=true exclude each other")
		}
		m = sentinel
	}
	known := knownOptions(m, scheme)
	var unknown []string
	for k := range q {
		if why, ok := notSupported[m][k]; ok {
			return nil, 0, fmt.Errorf("redis: option %s is not supported in %s mode: %s", k, m, why)
		}
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		hint := ""
		if m == standalone && slices.Contains(unknown, "addr") {
			hint = " (addr lists more servers: it needs master_name=... for Sentinel or cluster=true)"
		}
		return nil, 0, fmt.Errorf("redis: unknown option %s%s; known in %s mode: %s",
			strings.Join(unknown, ", "), hint, m, strings.Join(known, ", "))
	}
	if m == sentinel && q.Get("master_name") == "" {
		return nil, 0, errors.New("redis: option master_name is empty; it names the master the Sentinels monitor")
	}
	// Contexts' deadlines bound socket I/O unless turned off: without it
	// go-redis waits read_timeout (5 s) on a hung server whatever the
	// caller's deadline.
	ctxTimeout := true
	if q.Has("context_timeout_enabled") {
		v := q.Get("context_timeout_enabled")
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, 0, fmt.Errorf("redis: option context_timeout_enabled=%q: want true or false", v)
		}
		ctxTimeout = on
	}

	reload := DefaultClusterStateReloadInterval
	if v := q.Get("cluster_state_reload_interval"); q.Has("cluster_state_reload_interval") {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			return nil, 0, fmt.Errorf("redis: option cluster_state_reload_interval=%q: want a positive duration (\"1s\", \"500ms\") or whole seconds", v)
		}
		reload = d
	}

	// go-redis rejects options it does not know: strip the driver's own
	// (context_timeout_enabled is go-redis's in Sentinel mode only).
	q.Del("cluster")
	q.Del("context_timeout_enabled")
	q.Del("cluster_state_reload_interval")
	c := *u
	c.Scheme = scheme
	c.RawQuery = q.Encode()
	raw := c.String()
	switch m {
	case cluster:
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, 0, fmt.Errorf("redis: URL %s selects database %q; Redis Cluster has only database 0", redact(u), p)
		}
		opts, err := goredis.ParseClusterURL(raw)
		if err != nil {
			return nil, 0, badURL(u, err)
		}
		opts.ContextTimeoutEnabled = ctxTimeout
		opts.ClusterStateReloadInterval = reload
		return goredis.NewClusterClient(opts), m, nil
	case sentinel:
		opts, err := goredis.ParseFailoverURL(raw)
		if err != nil {
			return nil, 0, badURL(u, err)
		}
		opts.ContextTimeoutEnabled = ctxTimeout
		return goredis.NewFailoverClient(opts), m, nil
	default:
		opts, err := goredis.ParseURL(raw)
		if err != nil {
			return nil, 0, badURL(u, err)
		}
		opts.ContextTimeoutEnabled = ctxTimeout
		return goredis.NewClient(opts), m, nil
	}
}

// Open connects to the redis deployment a redis:// or rediss:// URL
// describes (see the package documentation for the format and options),
// checks it with a PING bounded by ctx, and returns a Store that owns the
// client: Store.Close closes it. A malformed URL, an unknown option or an
// unreachable server is an error; passwords are redacted from error
// messages. An error that the deployment could not be reached (refused,
// timed out, down, loading) wraps driver.ErrUnreachable; one
// that it refused the configuration (a wrong password, database, master
// name or certificate) does not.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	client, m, err := clientFromURL(u)
	if err != nil {
		return nil, err
	}
	var health *nodeHealth
	if cc, ok := client.(*goredis.ClusterClient); ok {
		health = newNodeHealth(cc) // before any node client exists
	}
	if err := client.Ping(ctx).Err(); err != nil {
		health.close()
		_ = client.Close()
		if cerr := ctx.Err(); errors.Is(cerr, context.Canceled) {
			return nil, cerr
		}
		if unreachable(err) {
			return nil, fmt.Errorf("%w: redis: cannot reach %s (%s mode): %w", driver.ErrUnreachable, redact(u), m, err)
		}
		return nil, fmt.Errorf("redis: cannot reach %s (%s mode): %w", redact(u), m, err)
	}
	s := New(client)
	s.owned = true
	s.health = health
	return s, nil
}

// parseDuration reads a duration option as go-redis does: a Go duration,
// or whole seconds.
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// unreachable reports whether err, from the PING at open, says the
// deployment could not be reached rather than that it refused the client's
// configuration. Server replies are configuration errors except the
// transient LOADING, CLUSTERDOWN, TRYAGAIN and MASTERDOWN; so are TLS
// certificate and handshake failures. Everything else (dial errors,
// timeouts, resets, unreachable Sentinels) is unreachable.
func unreachable(err error) bool {
	var reply goredis.Error
	if errors.As(err, &reply) {
		return goredis.IsLoadingError(err) || goredis.IsClusterDownError(err) ||
			goredis.IsTryAgainError(err) || goredis.IsMasterDownError(err)
	}
	var (
		certErr      *tls.CertificateVerificationError
		recordErr    tls.RecordHeaderError
		authorityErr x509.UnknownAuthorityError
		hostErr      x509.HostnameError
		invalidErr   x509.CertificateInvalidError
	)
	return !errors.As(err, &certErr) && !errors.As(err, &recordErr) && !errors.As(err, &authorityErr) &&
		!errors.As(err, &hostErr) && !errors.As(err, &invalidErr)
}

// badURL reports a URL go-redis refused.
func badURL(u *url.URL, err error) error {
	return fmt.Errorf("redis: bad URL %s: %s", redact(u), strings.TrimPrefix(err.Error(), "redis: "))
}

// redact renders u with any password (in the user information or in a
// password= option) replaced by "xxxxx".
func redact(u *url.URL) string {
	c := *u
	q := c.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}
