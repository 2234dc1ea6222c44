package sessions

import (
	"encoding/base64"
	"strings"
	"testing"
)

// fuzzID makes a well-formed session ID from arbitrary bytes, as newID
// does from random ones.
func fuzzID(seed []byte) string {
	var b [idBytes]byte
	copy(b[:], seed)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// FuzzParseCookie: whatever the cookie value, parseCookie never panics; ok
// means a well-formed ID that is the value's first 43 characters;
// formatting the result back gives a value that parses to the same ID and
// version; CookieID agrees with it; and a malformed ID is never accepted.
func FuzzParseCookie(f *testing.F) {
	id := fuzzID([]byte("0123456789abcdef0123456789abcdef"))
	for _, s := range []string{
		id, id + ".1.2", id + ".zz.1", id + ".0.0", id + ".", id + "..", id + ".1", id + ".1.", id + "..1",
		id + ".-1.2", id + ".1.-2", id + ".+1.2", id + ".3w5e11264sgsf.1z141z3", id + ".3w5e11264sgsg.0", id + ".1.1z141z4",
		id + ".0000000000000000000001.1", id + " ", id[:42], id[:42] + "B", id[:42] + "=", "", "not a cookie",
		strings.Repeat("A", 43), strings.Repeat("/", 43), id + ".1.2.3", id + ".1_2.3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ver, ok := parseCookie(v)
		cid, cok := CookieID(v)
		if cok != ok || cid != id {
			t.Fatalf("CookieID(%q) = %q, %v; parseCookie gives %q, %v", v, cid, cok, id, ok)
		}
		if !ok {
			if id != "" || ver != (version{}) {
				t.Fatalf("parseCookie(%q) failed but returned %q, %+v", v, id, ver)
			}
			if len(v) >= idLen && v[idLen:] == "" && validID(v) {
				t.Fatalf("parseCookie rejected the well-formed ID %q", v)
			}
			return
		}
		if !validID(id) || len(v) < idLen || id != v[:idLen] {
			t.Fatalf("parseCookie(%q) accepted the ID %q", v, id)
		}
		if v[idLen:] == "" && ver != (version{}) {
			t.Fatalf("parseCookie(%q): a bare ID has the version %+v", v, ver)
		}
		out := string(appendCookieValue(nil, id, ver))
		id2, ver2, ok2 := parseCookie(out)
		if !ok2 || id2 != id || ver2 != ver {
			t.Fatalf("parseCookie(%q) = %q, %+v; formatted back as %q it parses to %q, %+v, %v", v, id, ver, out, id2, ver2, ok2)
		}
	})
}

// FuzzCookieValue: every ID newID could make, at every version, formats
// to a cookie value that parses back to the same ID and version.
func FuzzCookieValue(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), uint64(0), uint32(0))
	f.Add([]byte{0xff, 0xfe}, ^uint64(0), ^uint32(0))
	f.Add([]byte(nil), uint64(1), uint32(36))
	f.Fuzz(func(t *testing.T, seed []byte, rev uint64, node uint32) {
		id := fuzzID(seed)
		if !validID(id) {
			t.Fatalf("validID rejects the ID %q made like newID's", id)
		}
		ver := version{rev, node}
		v := string(appendCookieValue(nil, id, ver))
		got, gver, ok := parseCookie(v)
		if !ok || got != id || gver != ver {
			t.Fatalf("cookie %q parses to %q, %+v, %v; want %q, %+v", v, got, gver, ok, id, ver)
		}
	})
}
