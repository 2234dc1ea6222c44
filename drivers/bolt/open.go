package bolt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/eko/gocache/lib/v4/store"
	"go.etcd.io/bbolt"
)

// Scheme is the URL scheme this package registers with the sessions core.
const Scheme = "bolt"

// DefaultLockTimeout is how long Open waits for a file locked by another
// process when the URL has no timeout parameter.
const DefaultLockTimeout = time.Second

// DefaultFileMode is the permission of a file Open creates when the URL has
// no mode parameter.
const DefaultFileMode fs.FileMode = 0o600

func init() {
	driver.Register(Scheme, func(ctx context.Context, u *url.URL) (store.StoreInterface, error) {
		return Open(ctx, u)
	})
}

// Open opens (creating if needed) the bbolt file named by a bolt:// URL and
// returns a Store on it; see the package documentation for the URL format
// and its options. Stores opened on the same file in one process share one
// *bbolt.DB, which is closed when the last of them is closed. Open fails
// with a clear error, not a hang, when another process holds the file.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if u == nil {
		return nil, errors.New("bolt: Open with a nil URL")
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return nil, fmt.Errorf("bolt: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	path, err := pathOf(u)
	if err != nil {
		return nil, err
	}
	opts, lockTimeout, mode, err := parseQuery(u.Query())
	if err != nil {
		return nil, err
	}
	db, release, err := acquire(path, lockTimeout, mode)
	if err != nil {
		return nil, err
	}
	s, err := newStore(db, opts, release)
	if err != nil {
		_ = release()
		return nil, err
	}
	return s, nil
}

// pathOf extracts the file path from a bolt URL, made absolute.
func pathOf(u *url.URL) (string, error) {
	var p string
	switch {
	case u.Opaque != "": // bolt:relative/file.db
		var err error
		if p, err = url.PathUnescape(u.Opaque); err != nil {
			return "", fmt.Errorf("bolt: bad path in URL: %w", err)
		}
	case u.Host != "": // bolt://relative/file.db: the host is the first element
		p = u.Host + u.Path
	default: // bolt:///absolute/file.db
		p = u.Path
		if runtime.GOOS == "windows" && len(p) >= 3 && p[0] == '/' && p[2] == ':' {
			p = p[1:] // bolt:///C:/dir/file.db
		}
	}
	if u.User != nil {
		return "", errors.New("bolt: URL must not contain user information")
	}
	if p == "" || strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("bolt: URL %q names no file; use bolt:///absolute/path.db or bolt://relative/path.db", u.Redacted())
	}
	abs, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		return "", fmt.Errorf("bolt: resolving %q: %w", p, err)
	}
	return canonical(abs), nil
}

// canonical resolves symbolic links in the directory part and in the file
// itself when they exist, so that two names of one file share one handle.
func canonical(abs string) string {
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	dir, file := filepath.Split(abs)
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(r, file)
	}
	return filepath.Clean(abs)
}

var knownParams = []string{"bucket", "mode", "sweep", "timeout"}

func parseQuery(q url.Values) (opts Options, lockTimeout time.Duration, mode fs.FileMode, err error) {
	lockTimeout, mode = DefaultLockTimeout, DefaultFileMode
	for name, vals := range q {
		if len(vals) != 1 {
			return opts, 0, 0, fmt.Errorf("bolt: option %q given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "bucket":
			if v == "" {
				return opts, 0, 0, errors.New("bolt: option bucket is empty")
			}
			opts.Bucket = v
		case "sweep":
			if v == "off" || v == "0" {
				opts.SweepInterval = -1
				continue
			}
			d, perr := time.ParseDuration(v)
			if perr != nil || d <= 0 {
				return opts, 0, 0, fmt.Errorf("bolt: option sweep=%q: want a positive duration such as 1m, or off", v)
			}
			opts.SweepInterval = d
		case "timeout":
			d, perr := time.ParseDuration(v)
			if perr != nil || d <= 0 {
				return opts, 0, 0, fmt.Errorf("bolt: option timeout=%q: want a positive duration such as 1s", v)
			}
			lockTimeout = d
		case "mode":
			m, perr := strconv.ParseUint(v, 8, 32)
			if perr != nil || m > 0o777 {
				return opts, 0, 0, fmt.Errorf("bolt: option mode=%q: want octal permission bits such as 0600", v)
			}
			mode = fs.FileMode(m)
		default:
			return opts, 0, 0, fmt.Errorf("bolt: unknown option %q; known options: %s", name, strings.Join(knownParams, ", "))
		}
	}
	return opts, lockTimeout, mode, nil
}

// The process-wide registry of files opened by Open.
var (
	registryMu sync.Mutex
	registry   = map[string]*sharedFile{}
)

type sharedFile struct {
	db    *bbolt.DB
	err   error
	refs  int
	ready chan struct{} // closed once db or err is set
}

// acquire returns the shared handle of path, opening the file on first use,
// and the function that gives it back.
func acquire(path string, lockTimeout time.Duration, mode fs.FileMode) (*bbolt.DB, func() error, error) {
	registryMu.Lock()
	f := registry[path]
	if f == nil {
		f = &sharedFile{ready: make(chan struct{})}
		registry[path] = f
		f.refs++
		registryMu.Unlock()
		db, err := openFile(path, lockTimeout, mode)
		registryMu.Lock()
		f.db, f.err = db, err
		if err != nil {
			delete(registry, path)
		}
		close(f.ready)
		registryMu.Unlock()
	} else {
		f.refs++
		registryMu.Unlock()
		<-f.ready // bounded by the first opener's lock timeout
	}
	if f.err != nil {
		return nil, nil, f.err
	}
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() {
			registryMu.Lock()
			defer registryMu.Unlock()
			f.refs--
			if f.refs == 0 {
				delete(registry, path)
				err = f.db.Close()
			}
		})
		return err
	}
	return f.db, release, nil
}

func openFile(path string, lockTimeout time.Duration, mode fs.FileMode) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, mode, &bbolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %w", driver.ErrUnreachable, lockedError(path, lockTimeout, err))
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("bolt: opening %s: its directory does not exist: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: opening %s: %w", path, err)
	}
	return db, nil
}

// lockedError explains a file that another process holds (bbolt allows
// one process at a time) and names the ways out: the lock is not a fault
// to retry blindly but a running application, or the previous instance of
// one during a restart.
func lockedError(path string, waited time.Duration, err error) error {
	return fmt.Errorf("bolt: %s is locked by another process (waited %v): a bbolt file can be open in only one process at a time. "+
		"If an application is running on it, stop the application first, or do this from inside the application (its own admin page, which shares its open file); "+
		"if a restarting application's new process overlaps the old one, raise the URL's timeout option (for example ?timeout=30s) so that it waits for the old process to exit: %w",
		path, waited, err)
}

// OpenFiles maps the canonical absolute path of each file that Open
// currently holds to the number of stores using it. It is meant for
// diagnostics and tests.
func OpenFiles() map[string]int {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make(map[string]int, len(registry))
	for path, f := range registry {
		out[path] = f.refs
	}
	return out
}
