package sessionctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/serializer"
)

// This file holds what the storage subcommands (ls, show, rm, purge,
// stats) share: the STORAGE argument, reading and deleting entries, and
// decoding them.

// storageArgHelp explains the STORAGE argument in every usage text.
const storageArgHelp = `
STORAGE is a storage URL, such as redis://127.0.0.1:6379/0,
memcached://127.0.0.1:11211, bolt:///var/lib/app/sessions.db,
postgres://user@host/db, mysql://user@host/db or sqlite:///path/file.db,
or, with -config FILE.toml, the name of one of the file's [storages.NAME]
tables. "memory" is not accepted: that storage lives inside one process, so
sessionctl would only see an empty one of its own.`

// defaultPrefix is the library's default Config.KeyPrefix.
const defaultPrefix = "sess:"

// storageFlags are the flags every storage subcommand takes.
type storageFlags struct {
	config    string
	prefix    string
	prefixSet bool
	timeout   time.Duration
}

// addStorageFlags defines -config, -prefix and -timeout on fs.
func addStorageFlags(fs *flag.FlagSet) *storageFlags {
	sf := &storageFlags{}
	fs.StringVar(&sf.config, "config", "", "TOML config `file` (as sessions.LoadConfig reads) whose [storages.NAME] tables STORAGE may name")
	fs.Func("prefix", "key `prefix` of the sessions (default: the config file's key_prefix, else the storage URL's key_prefix option, else \"sess:\")", func(v string) error {
		sf.prefix, sf.prefixSet = v, true
		return nil
	})
	fs.DurationVar(&sf.timeout, "timeout", 10*time.Second, "time limit of each storage call")
	return sf
}

// target is an open storage.
type target struct {
	st      *adapter.Storage
	name    string // for display, passwords hidden
	prefix  string
	timeout time.Duration
	sealer  *serializer.Sealer // from the -config file's encryption_keys
}

// errMemory explains why "memory" is refused.
var errMemory = errors.New(`"memory" is an in-process storage: sessionctl runs in a process of its own and would see an empty one. Give the URL (or -config name) of the storage your application uses`)

// openTarget resolves and opens the STORAGE argument. On failure it prints
// the reason and returns nil.
func openTarget(ctx context.Context, sf *storageFlags, spec string, stderr io.Writer) *target {
	t, err := sf.open(ctx, spec)
	if err != nil {
		fmt.Fprintln(stderr, "sessionctl:", err)
		return nil
	}
	return t
}

// open resolves spec (a URL, or a name from the -config file) and opens it.
func (sf *storageFlags) open(ctx context.Context, spec string) (*target, error) {
	prefix := defaultPrefix
	var defined map[string]sessions.StorageConfig
	var keys [][]byte
	if sf.config != "" {
		cfg, err := sessions.LoadConfig(sf.config)
		if err != nil {
			return nil, err
		}
		if cfg.KeyPrefix != "" {
			prefix = cfg.KeyPrefix
		}
		defined, keys = cfg.Storages, cfg.EncryptionKeys
		if _, ok := defined[spec]; !ok && !strings.Contains(spec, ":") && spec != "memory" {
			return nil, fmt.Errorf("%s defines no storage %q (it defines: %s)", sf.config, spec, storageNames(defined))
		}
	} else if !strings.Contains(spec, ":") && spec != "memory" {
		return nil, fmt.Errorf("storage %q is not a URL (such as redis://127.0.0.1:6379/0 or bolt:///path/sessions.db); to name a storage, give -config FILE.toml", spec)
	}
	if sf.prefixSet {
		prefix = sf.prefix
	}
	if _, named := defined[spec]; !named && (spec == "memory" || strings.HasPrefix(strings.ToLower(spec), "memory:")) {
		return nil, errMemory
	}
	if sc, named := defined[spec]; named && strings.HasPrefix(strings.ToLower(sc.URL), "memory") {
		return nil, errMemory
	}
	t := &target{prefix: prefix, timeout: sf.timeout}
	if len(keys) > 0 {
		sealer, err := serializer.NewSealer(keys...)
		if err != nil {
			return nil, fmt.Errorf("%s: encryption_keys: %w", sf.config, err)
		}
		t.sealer = sealer
	}
	openCtx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	st, err := adapter.Resolve(openCtx, spec, defined)
	if err != nil {
		return nil, err
	}
	t.st, t.name = st, st.Name()
	if !sf.prefixSet && prefix == defaultPrefix && st.KeyPrefix() != "" {
		t.prefix = st.KeyPrefix() // the storage URL's key_prefix option
	}
	return t, nil
}

// storageNames lists a config file's storage names for an error message.
func storageNames(m map[string]sessions.StorageConfig) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// close closes the storage.
func (t *target) close() { _ = t.st.Close() }

// openListing opens STORAGE for a command that lists its keys. On failure
// (including a storage that cannot list) it prints why and returns nil;
// otherwise the caller closes the target.
func openListing(ctx context.Context, sf *storageFlags, spec, cmd string, stderr io.Writer) (*target, driver.KeyLister) {
	t := openTarget(ctx, sf, spec, stderr)
	if t == nil {
		return nil, nil
	}
	l, err := t.lister(cmd)
	if err != nil {
		t.close()
		fmt.Fprintln(stderr, "sessionctl", err)
		return nil, nil
	}
	return t, l
}

// lister returns the store's listing capability, or an error saying that
// this storage cannot list keys and what to do instead.
func (t *target) lister(cmd string) (driver.KeyLister, error) {
	if l, ok := t.st.Store().(driver.KeyLister); ok {
		return l, nil
	}
	return nil, fmt.Errorf("%s: storage %s (%s store) cannot list keys: its driver has no ListKeys (memcached, for one, cannot enumerate keys reliably), so %q cannot find its sessions.\n"+
		"Entries there still expire on their own by their storage TTL. 'sessionctl show' and 'sessionctl rm' work with a session ID or storage key.",
		cmd, t.name, t.st.Store().GetType(), cmd)
}

// get reads key: found is false when there is no such entry.
func (t *target) get(ctx context.Context, key string) (data []byte, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	data, err = t.st.Get(ctx, key)
	if errors.Is(err, adapter.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", key, err)
	}
	return data, true, nil
}

// delete removes key; a missing key is not an error.
func (t *target) delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.st.Delete(ctx, key); err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// locate finds the entry an ID-or-KEY argument names: a session ID is
// turned into its storage key with the prefix; anything else is taken as
// a storage key. found is false when there is no such entry (key is then
// the key that was looked for).
func (t *target) locate(ctx context.Context, arg string) (key string, data []byte, found bool, err error) {
	if id, ok := sessions.CookieID(arg); ok {
		key = adapter.Key(t.prefix, id)
		if data, found, err = t.get(ctx, key); found || err != nil {
			return key, data, found, err
		}
		// Not a session's ID after all? Try it as a literal key.
		if data, found, err := t.get(ctx, arg); found || err != nil {
			return arg, data, found, err
		}
		return key, nil, false, nil
	}
	data, found, err = t.get(ctx, arg)
	return arg, data, found, err
}

// describeArg says how an ID-or-KEY argument was read, for messages.
func describeArg(arg, key string) string {
	if arg == key {
		return key
	}
	return fmt.Sprintf("%s (session %s…)", key, arg[:8])
}

// entry is one stored session, decoded as far as possible.
type entry struct {
	key  string
	size int
	env  *serializer.Envelope // nil when unreadable
	err  error                // why it is unreadable
}

// decodeEntry decodes the stored bytes of key as far as they go.
// With encryption keys from -config, a sealed entry is opened first.
func (t *target) decodeEntry(key string, data []byte) entry {
	plain := data
	if t.sealer != nil {
		var err error
		if plain, err = t.sealer.Open(data, []byte(key)); err != nil {
			return entry{key: key, size: len(data), err: err}
		}
	}
	env, err := serializer.DecodeEnvelope(plain)
	return entry{key: key, size: len(data), env: env, err: err}
}

// encrypted reports whether the entry is a session sealed with an
// encryption key (Config encryption at rest): readable only with the key,
// and not corrupt.
func (e *entry) encrypted() bool { return errors.Is(e.err, serializer.ErrEncrypted) }

// expired reports whether the session's deadline has passed (the library
// then treats it as ended).
func (e *entry) expired(now time.Time) bool {
	return e.env != nil && e.env.Expires < now.UnixMilli()
}

// codecName names a codec id of an envelope.
func codecName(id byte) string {
	if c, ok := serializer.ByID(id); ok {
		return c.Name()
	}
	return fmt.Sprintf("unknown codec %d", id)
}

const timeLayout = "2006-01-02 15:04:05"

// fmtTime formats Unix milliseconds in local time; 0 as "-".
func fmtTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format(timeLayout)
}

// fmtRel says how far ms is from now: "in 29m", "3m ago".
func fmtRel(ms int64, now time.Time) string {
	d := time.UnixMilli(ms).Sub(now)
	if d >= 0 {
		return "in " + roundDur(d)
	}
	return roundDur(-d) + " ago"
}

// roundDur formats a duration at a precision that suits its size.
func roundDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// fmtSize formats a byte count: "532 B", "1.2 KiB", "3.4 MiB".
func fmtSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
}

// plural returns "1 entry" or "2 entries" for plural(n, "entry", "entries").
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
