package bolt

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

const fuzzPassword = "s3cr3tPW"

// FuzzParseURL: turning a bolt URL into a file path and options (pathOf
// and parseQuery, what Open does before it opens the file) never panics;
// a success is an absolute path; an error never contains the URL's
// password (bolt URLs must not have one, and the error saying so must not
// repeat it).
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"bolt:///var/lib/app/sessions.db",
		"bolt://relative/sessions.db?bucket=web&sweep=1m&timeout=2s&mode=0640",
		"bolt:relative/file.db",
		"bolt:rel%2Fescaped.db",
		"bolt:bad%zzescape.db",
		"bolt:///C:/dir/file.db",
		"bolt:///dir/",
		"bolt://",
		"bolt://:s3cr3tPW@host/file.db",
		"bolt://user:s3cr3tPW@/file.db",
		"bolt:///f.db?bucket=",
		"bolt:///f.db?bucket=a&bucket=b",
		"bolt:///f.db?sweep=off",
		"bolt:///f.db?sweep=-1s",
		"bolt:///f.db?timeout=soon",
		"bolt:///f.db?mode=0999",
		"bolt:///f.db?mode=rw",
		"bolt:///f.db?password=s3cr3tPW",
		"bolt:///f.db?bogus=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return // the caller's url.Parse, not this driver's parsing
		}
		path, err := pathOf(u)
		if err == nil {
			if !filepath.IsAbs(path) {
				t.Fatalf("%q gives the relative path %q", raw, path)
			}
			_, _, _, err = parseQuery(u.Query())
		}
		if err == nil {
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
