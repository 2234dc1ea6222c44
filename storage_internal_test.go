package sessions

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCeilSeconds(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0:                       0,
		500 * time.Millisecond:  time.Second,
		time.Second:             time.Second,
		1001 * time.Millisecond: 2 * time.Second,
		36 * time.Minute:        36 * time.Minute,
	} {
		if got := ceilSeconds(in); got != want {
			t.Errorf("ceilSeconds(%v) = %v, want %v", in, got, want)
		}
	}
	// Beyond 30 days memcached wants an absolute Unix time.
	mc := &backend{wholeSeconds: true, unixAfter30Days: true}
	got := mc.storeTTL(40 * 24 * time.Hour)
	want := time.Now().Add(40 * 24 * time.Hour).Unix()
	if secs := int64(got / time.Second); secs < want-2 || secs > want+2 {
		t.Errorf("memcache TTL of 40 days = %d s, want the Unix time %d", secs, want)
	}
	if got := mc.storeTTL(1500 * time.Millisecond); got != 2*time.Second {
		t.Errorf("memcache TTL of 1.5 s = %v, want 2s", got)
	}
}

func TestValidID(t *testing.T) {
	for i := 0; i < 1000; i++ {
		if id := newID(); !validID(id) {
			t.Fatalf("newID() = %q is not valid", id)
		}
	}
	for _, bad := range []string{"", "short", newID() + "x", newID()[:42] + "!", newID()[:42] + "B"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

func TestStorageKeyHidesID(t *testing.T) {
	id := newID()
	k := storageKey("sess:", id)
	if k == "sess:"+id || len(k) != len("sess:")+43 || storageKey("sess:", id) != k {
		t.Fatalf("storageKey(%q) = %q: want a stable hash, not the ID", id, k)
	}
}

// A storage URL that does not parse (a typo in its port) is reported
// without its passwords.
func TestUnparsableURLErrorHidesPassword(t *testing.T) {
	for _, spec := range []string{
		"redis://:s3cr3tPW@127.0.0.1:63x79/0",
		"redis://user:s3cr3tPW@127.0.0.1:63x79/0",
		"postgres://h:5x432/db?password=s3cr3tPW&sslmode=disable",
	} {
		_, err := OpenStorage(context.Background(), spec, nil)
		if err == nil {
			t.Fatalf("%s opened", spec)
		}
		if strings.Contains(err.Error(), "s3cr3tPW") {
			t.Errorf("error shows the password: %v", err)
		}
		_, err = StorageConfig{URL: spec, Options: map[string]string{"x": "1"}}.url()
		if err == nil || strings.Contains(err.Error(), "s3cr3tPW") {
			t.Errorf("StorageConfig.url error shows the password or is nil: %v", err)
		}
	}
}
