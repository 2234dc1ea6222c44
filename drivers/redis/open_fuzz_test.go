package redis

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/internal/fuzzcheck"
)

const fuzzPassword = fuzzcheck.Password

func fuzzSecretOnly(raw string, u *url.URL) bool { return fuzzcheck.SecretOnly(raw, u, "password") }

// FuzzClientFromURL: parsing a redis URL into a client (no connection is
// made) never panics, and its error never contains the URL's password.
func FuzzClientFromURL(f *testing.F) {
	for _, s := range []string{
		"redis://:s3cr3tPW@127.0.0.1:6379/0",
		"redis://user:s3cr3tPW@127.0.0.1:6379/3?dial_timeout=1s&pool_size=20",
		"rediss://:s3cr3tPW@cache.example:6380/1?skip_verify=true",
		"redis://:s3cr3tPW@127.0.0.1:6379/notanumber",
		"redis://:s3cr3tPW@127.0.0.1:notaport/0",
		"redis://:s3cr3tPW@127.0.0.1:6379/0?bogus=1",
		"redis://:s3cr3tPW@127.0.0.1:6379/0?dial_timeout=soon",
		"redis://:s3cr3tPW@127.0.0.1:6379/0?cluster=maybe",
		"redis://:s3cr3tPW@127.0.0.1:6379/0?cluster=true",
		"redis://:s3cr3tPW@127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001",
		"redis://:s3cr3tPW@127.0.0.1:7000/5?cluster=true",
		"redis://:s3cr3tPW@127.0.0.1:26379/0?master_name=mymaster&addr=127.0.0.1:26380&sentinel_password=s3cr3tPW",
		"redis://:s3cr3tPW@127.0.0.1:26379/0?master_name=",
		"redis://:s3cr3tPW@127.0.0.1:26379/0?master_name=m&cluster=true",
		"redis://127.0.0.1:6379/0?password=s3cr3tPW&db=x",
		"redis://127.0.0.1:6379/0?password=s3cr3tPW&context_timeout_enabled=nope",
		"redis://127.0.0.1:6379/0?addr=other:1&password=s3cr3tPW",
		"redis:opaque:s3cr3tPW",
		"memcached://:s3cr3tPW@127.0.0.1:11211",
		"redis://:s3cr3tPW@[::1]:6379/0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return // the caller's url.Parse, not this driver's parsing
		}
		client, _, err := clientFromURL(u)
		if err == nil {
			_ = client.Close()
			return
		}
		if fuzzSecretOnly(raw, u) && strings.Contains(err.Error(), fuzzPassword) {
			t.Fatalf("error for %q echoes the password: %v", raw, err)
		}
	})
}
