package memcached

import (
	"net/url"
	"strings"
	"testing"
)

const fuzzPassword = "s3cr3tPW"

// FuzzParseURL: parsing a memcached URL (no connection is made) never
// panics, a success names at least one host:port server, and an error
// never contains the URL's password (memcached URLs must not have one, and
// the error saying so must not repeat it).
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"memcached://127.0.0.1:11211",
		"memcached://a:11211,b:11212,[::1]:11213?timeout=500ms&max_idle=4&max_item=1048576",
		"memcached://127.0.0.1?addr=other:11211",
		"memcached://:s3cr3tPW@127.0.0.1:11211",
		"memcached://user:s3cr3tPW@127.0.0.1:11211/db",
		"memcached://user:s3cr3tPW@/",
		"memcached://127.0.0.1:11211/0",
		"memcached://127.0.0.1:99999",
		"memcached://::1:11211",
		"memcached://a,,b",
		"memcached://",
		"memcached://127.0.0.1?timeout=-1s",
		"memcached://127.0.0.1?max_idle=0",
		"memcached://127.0.0.1?max_item=10",
		"memcached://127.0.0.1?password=s3cr3tPW",
		"memcached:opaque:s3cr3tPW",
		"redis://:s3cr3tPW@127.0.0.1:6379",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return // the caller's url.Parse, not this driver's parsing
		}
		c, err := parseURL(u)
		if err == nil {
			if len(c.servers) == 0 {
				t.Fatalf("%q parsed with no server", raw)
			}
			return
		}
		pw := ""
		if u.User != nil {
			pw, _ = u.User.Password()
		}
		if strings.Contains(pw, fuzzPassword) && strings.Count(raw, fuzzPassword) == strings.Count(pw, fuzzPassword) &&
			strings.Contains(err.Error(), fuzzPassword) {
			t.Fatalf("error for %q echoes the password: %v", raw, err)
		}
	})
}
