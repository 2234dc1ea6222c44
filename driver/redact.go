package driver

import (
	"net/url"
	"regexp"
	"strings"
)

// RedactURL hides the passwords in a storage URL (in the user information,
// and in any option whose name contains "password", as Sentinel URLs
// carry), for logs and messages.
func RedactURL(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		return redactUnparsed(spec)
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	if u.User == nil && !changed {
		return spec
	}
	return u.Redacted()
}

// Password-shaped parts of a URL that did not parse: user information's
// password, and password options.
var (
	unparsedUserPassword = regexp.MustCompile(`^([^:/?#]+://[^/?#@]*?:)[^/?#]*@`)
	unparsedPasswordOpt  = regexp.MustCompile(`(?i)([?&][^=&]*password[^=&]*=)[^&#]*`)
)

// redactUnparsed masks the passwords of a URL that url.Parse rejected, so
// that an error about it (a typo in a port) does not print them.
func redactUnparsed(spec string) string {
	spec = unparsedUserPassword.ReplaceAllString(spec, "${1}xxxxx@")
	return unparsedPasswordOpt.ReplaceAllString(spec, "${1}xxxxx")
}
