package testservers

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records Skip and Fatal instead of ending
// the real test.
type recorder struct {
	testing.TB
	skipped, failed string
}

type stop struct{}

func (r *recorder) Helper()          {}
func (r *recorder) Skip(args ...any) { r.skipped = args[0].(string); panic(stop{}) }
func (r *recorder) Fatal(args ...any) {
	r.failed = args[0].(string)
	panic(stop{})
}

func (r *recorder) run(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	fn()
}

func TestMissingBinary(t *testing.T) {
	missing := &spec{
		kind: kindRedis, name: "no-such-server",
		find: func() (map[string]string, error) {
			if b := lookBinary([]string{"no-such-server-binary"}, t.TempDir()); b != "" {
				t.Fatalf("found %s", b)
			}
			return nil, &notInstalledError{"no-such-server", "no-such-package"}
		},
	}
	_, err := startPrivate(missing)
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	const msg = "no-such-server not found: apt-get install no-such-package"
	if err.Error() != msg {
		t.Fatalf("message %q, want %q", err, msg)
	}

	t.Setenv("SESSIONS_REQUIRE_SERVERS", "")
	r := &recorder{TB: t}
	r.run(func() { fromTB(r, nil, err) })
	if r.skipped != msg || r.failed != "" {
		t.Fatalf("without SESSIONS_REQUIRE_SERVERS: skipped %q, failed %q", r.skipped, r.failed)
	}

	t.Setenv("SESSIONS_REQUIRE_SERVERS", "1")
	r = &recorder{TB: t}
	r.run(func() { fromTB(r, nil, err) })
	if r.failed != msg || r.skipped != "" {
		t.Fatalf("with SESSIONS_REQUIRE_SERVERS=1: skipped %q, failed %q", r.skipped, r.failed)
	}
}

func TestLookBinaryDirs(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-server-xyz")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := lookBinary([]string{"fake-server-xyz"}, "/nonexistent", dir); got != exe {
		t.Fatalf("lookBinary = %q, want %q", got, exe)
	}
}

func TestPgVersionOrder(t *testing.T) {
	if !(pgVersion("/usr/lib/postgresql/16/bin") > pgVersion("/usr/lib/postgresql/9.6/bin")) {
		t.Fatal("16 should sort above 9.6")
	}
}

func TestTraversable(t *testing.T) {
	if !traversableByOthers("/tmp") {
		t.Skip("/tmp is not world-traversable here")
	}
	open, err := os.MkdirTemp("/tmp", "testservers-traverse-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	private := filepath.Join(open, "private")
	sub := filepath.Join(private, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if !traversableByOthers(open) {
		t.Errorf("%s (0755 below /tmp) should be traversable", open)
	}
	if traversableByOthers(sub) {
		t.Errorf("%s (below a 0700 directory) should not be traversable", sub)
	}
}
