package adapter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/internal/faultstore"
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

func TestKeyHidesID(t *testing.T) {
	id := "zfJ0DAZ5mZ7wSC3jM8S4tM5nGz6Qe5Y1k2uQm0m1Gxk"
	k := Key("sess:", id)
	if k == "sess:"+id || len(k) != len("sess:")+43 || Key("sess:", id) != k {
		t.Fatalf("Key(%q) = %q: want a stable hash, not the ID", id, k)
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
		_, err := Resolve(context.Background(), spec, nil)
		if err == nil {
			t.Fatalf("%s opened", spec)
		}
		if strings.Contains(err.Error(), "s3cr3tPW") {
			t.Errorf("error shows the password: %v", err)
		}
		_, err = Config{URL: spec, Options: map[string]string{"x": "1"}}.url()
		if err == nil || strings.Contains(err.Error(), "s3cr3tPW") {
			t.Errorf("Config.url error shows the password or is nil: %v", err)
		}
	}
}

// A store that declines a capability with driver.ErrSkip gets the basic
// path for that call and every later one; the capability no longer shows.
func TestDeclinedCapabilitiesTakeTheBasicPath(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	// The outer wrapper forwards every capability; the plain view under
	// it has none, so each call is declined.
	st := New("declining", faultstore.New(faultstore.New(mem).Plain()), false)
	if !st.HasCAS() || !st.HasCAD() || !st.HasBatch() || !st.CanListExpiring() {
		t.Fatal("the wrapper's capabilities are not seen")
	}
	if ok, err := st.CompareAndSwap(ctx, "k", nil, []byte("v1"), time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap through the basic path: %v, %v", ok, err)
	}
	if ok, err := st.CompareAndSwap(ctx, "k", []byte("wrong"), []byte("v2"), time.Minute); ok || err != nil {
		t.Fatalf("CompareAndSwap with a wrong old: %v, %v", ok, err)
	}
	if err := st.SetMany(ctx, []string{"a", "b"}, [][]byte{[]byte("1"), []byte("2")}, time.Minute); err != nil {
		t.Fatalf("SetMany through Set: %v", err)
	}
	if v, err := st.Get(ctx, "b"); err != nil || string(v) != "2" {
		t.Fatalf("after SetMany: %q, %v", v, err)
	}
	if ok, err := st.CompareAndDelete(ctx, "a", []byte("1")); !ok || err != nil {
		t.Fatalf("CompareAndDelete through Delete: %v, %v", ok, err)
	}
	if _, err := st.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after CompareAndDelete: %v", err)
	}
	if st.HasCAS() || st.HasCAD() || st.HasBatch() || st.CanListExpiring() {
		t.Fatalf("declined capabilities still show: cas %v cad %v batch %v list %v", st.HasCAS(), st.HasCAD(), st.HasBatch(), st.CanListExpiring())
	}
}
