package sqlstore

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/internal/fuzzcheck"
)

const fuzzPassword = fuzzcheck.Password

func fuzzSecretOnly(raw string, u *url.URL) bool { return fuzzcheck.SecretOnly(raw, u, "pass") }

// fileParams are driver parameters naming files the parser reads (a
// fuzzer could name /dev/zero): inputs with them are not parsed here.
var fileParams = []string{"passfile", "servicefile", "service", "sslkey", "sslcert", "sslrootcert", "sslpassword"}

// parseSQLURL is what Open does with a URL before it connects: split the
// options, check the driver's, and build the dialect's configuration
// (pgx's config and a sql.DB that has not connected, go-sql-driver's
// config, the SQLite DSN).
func parseSQLURL(u *url.URL) error {
	own, rest, err := splitOptions(u.Query())
	if err != nil {
		return err
	}
	if err := checkDriverParams(u.Scheme, rest); err != nil {
		return err
	}
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql":
		for _, p := range fileParams {
			if rest.Has(p) {
				return nil
			}
		}
		db, err := openPostgres(u, rest)
		if err == nil {
			_ = db.Close()
		}
		return err
	case "mysql":
		_, err := mysqlConfig(u, rest)
		return err
	case "sqlite":
		_, _, err := sqliteDSN(u, rest, own.busyTimeout)
		return err
	}
	return nil
}

// FuzzParseURL: parsing a postgres, mysql or sqlite URL (no connection is
// made) never panics, and its error never contains the URL's password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"postgres://app:s3cr3tPW@127.0.0.1:5432/sessions?sslmode=disable&table=web_sessions&sweep=1m",
		"postgresql://app:s3cr3tPW@127.0.0.1:notaport/db",
		"postgres://app:s3cr3tPW@127.0.0.1:5432/db?sslmode=sometimes",
		"postgres://app:s3cr3tPW@127.0.0.1:5432/db?connect_timeout=soon",
		"postgres://127.0.0.1/db?password=s3cr3tPW&sslmode=bogus",
		"postgres://app:s3cr3tPW@127.0.0.1/db?tabel=web",
		"postgres://app:s3cr3tPW@127.0.0.1/db?table=a&table=b",
		"postgres://app:s3cr3tPW@127.0.0.1/db?create=perhaps",
		"postgres://app:s3cr3tPW@127.0.0.1/db?max_open_conns=-1&max_idle_conns=x",
		"postgres://app:s3cr3tPW@127.0.0.1/db?conn_max_lifetime=soon&conn_max_idle_time=1m",
		"postgres://app:s3cr3tPW@[::1]:5432/db?target_session_attrs=whatever",
		"mysql://app:s3cr3tPW@127.0.0.1:3306/sessions?parseTime=true",
		"mysql://app:s3cr3tPW@127.0.0.1:3306/a/b",
		"mysql://app:s3cr3tPW@127.0.0.1:3306/db?socket=/tmp/mysql.sock",
		"mysql://app:s3cr3tPW@/db?socket=/tmp/mysql.sock",
		"mysql://app:s3cr3tPW@127.0.0.1/db?parseTime=maybe",
		"mysql://app:s3cr3tPW@127.0.0.1/db?timeout=soon",
		"mysql://app:s3cr3tPW@127.0.0.1/db?collation=nope",
		"mysql:app:s3cr3tPW@host/db",
		"sqlite:///tmp/sessions.db?busy_timeout=5s",
		"sqlite://rel/sessions.db",
		"sqlite://:memory:",
		"sqlite::memory:",
		"sqlite:file.db",
		"sqlite:bad%zz.db",
		"sqlite://user:s3cr3tPW@/file.db",
		"sqlite:///dir/",
		"sqlite:///file:x.db",
		"sqlite:///f.db?busy_timeout=soon",
		"sqlite:///f.db?_pragma=busy_timeout(1)&_txlock=deferred",
		"oracle://app:s3cr3tPW@host/db",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return // the caller's url.Parse, not this driver's parsing
		}
		err = parseSQLURL(u)
		if err != nil && fuzzSecretOnly(raw, u) && strings.Contains(err.Error(), fuzzPassword) {
			t.Fatalf("error for %q echoes the password: %v", raw, err)
		}
	})
}
