// Package fuzzcheck holds what the drivers' URL fuzz targets share: the
// password marker they seed, and the test of whether an input's only
// occurrences of it are passwords (so that an error mentioning it echoes a
// password).
package fuzzcheck

import (
	"net/url"
	"strings"
)

// Password is the marker the fuzz seeds use as a password.
const Password = "s3cr3tPW"

// SecretOnly reports whether Password occurs in raw only inside the URL's
// passwords: its user information's, and the values of options whose name
// contains optionWord ("password", or "pass" for a driver whose options
// say pass).
func SecretOnly(raw string, u *url.URL, optionWord string) bool {
	n := 0
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			n += strings.Count(pw, Password)
		}
	}
	for k, vs := range u.Query() {
		if strings.Contains(strings.ToLower(k), optionWord) {
			for _, v := range vs {
				n += strings.Count(v, Password)
			}
		}
	}
	return n > 0 && n == strings.Count(raw, Password)
}
