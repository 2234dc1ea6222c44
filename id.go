package sessions

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
)

// idBytes is the entropy of a session ID; idLen its base64url length.
const (
	idBytes = 32
	idLen   = 43 // base64.RawURLEncoding.EncodedLen(idBytes)
)

// newID returns a fresh session ID: 32 bytes from crypto/rand, base64url
// without padding.
func newID() string {
	var b [idBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// base64url alphabet membership; the last character of a 32-byte encoding
// carries 2 bits of padding that a canonical encoder leaves zero.
var (
	idAlphabet [256]bool
	idLastChar [256]bool
)

func init() {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		idAlphabet[alphabet[i]] = true
		idLastChar[alphabet[i]] = i%4 == 0
	}
}

// validID reports whether s could have come from newID. Anything else is
// ignored before any storage lookup.
func validID(s string) bool {
	if len(s) != idLen || !idLastChar[s[idLen-1]] {
		return false
	}
	for i := 0; i < idLen-1; i++ {
		if !idAlphabet[s[i]] {
			return false
		}
	}
	return true
}

// ValidID reports whether s has the form of a session ID this library
// issues (43 base64url characters encoding 32 bytes). Any other cookie
// value is ignored without a storage lookup.
func ValidID(s string) bool { return validID(s) }

// CookieID returns the session ID in a session cookie's value, which in
// sticky mode carries the session's version after the ID
// ("<id>.<revision>.<node>"); ok is false when value is not a session
// cookie this library issues.
func CookieID(value string) (id string, ok bool) {
	id, _, ok = parseCookie(value)
	return id, ok
}

// version names one change of a session in sticky mode: the revision the
// change is stored at (at least) and the server (node) that made it. The
// session cookie carries the version of the last change its response
// reported, as "<id>.<revision>.<node>" in base 36, so that a server whose
// copy is older than what the browser has seen (a routing flap) reloads it.
type version struct {
	rev  uint64
	node uint32
}

// parseCookie splits a cookie value into a well-formed ID and its version
// (zero when absent or malformed: the ID alone still counts). ok is false
// when the ID is not well-formed.
func parseCookie(v string) (id string, ver version, ok bool) {
	if len(v) < idLen || !validID(v[:idLen]) {
		return "", version{}, false
	}
	id, rest := v[:idLen], v[idLen:]
	if len(rest) == 0 {
		return id, version{}, true
	}
	if len(rest) > 24 || rest[0] != '.' {
		return "", version{}, false
	}
	revS, nodeS, found := strings.Cut(rest[1:], ".")
	if !found {
		return "", version{}, false
	}
	rev, err1 := strconv.ParseUint(revS, 36, 64)
	node, err2 := strconv.ParseUint(nodeS, 36, 32)
	if err1 != nil || err2 != nil {
		return "", version{}, false
	}
	return id, version{rev, uint32(node)}, true
}

// appendCookieValue appends the cookie value for id at version ver to b:
// the ID alone when ver is zero.
func appendCookieValue(b []byte, id string, ver version) []byte {
	b = append(b, id...)
	if ver == (version{}) {
		return b
	}
	b = append(b, '.')
	b = strconv.AppendUint(b, ver.rev, 36)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(ver.node), 36)
}
