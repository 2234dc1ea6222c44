package sessions

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

// storageKey derives the storage key of a session ID: the prefix plus the
// base64url SHA-256 of the ID, so that reading the storage does not reveal
// live session IDs.
func storageKey(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	buf := make([]byte, len(prefix)+base64.RawURLEncoding.EncodedLen(len(sum)))
	copy(buf, prefix)
	base64.RawURLEncoding.Encode(buf[len(prefix):], sum[:])
	return string(buf)
}

// StorageKey returns the storage key under which a session with the given
// ID is stored, for a Manager with the given Config.KeyPrefix ("sess:" by
// default). Operators use it to find one user's entry; it cannot be
// reversed into the ID.
func StorageKey(prefix, id string) string { return storageKey(prefix, id) }

// ValidID reports whether s has the form of a session ID this library
// issues (43 base64url characters encoding 32 bytes). Any other cookie
// value is ignored without a storage lookup.
func ValidID(s string) bool { return validID(s) }
