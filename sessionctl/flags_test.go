package sessionctl

import (
	"flag"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// TestFlagsAfterArguments: flags may follow the arguments, as in most
// command lines; after the first argument an unknown -word is an argument
// (session IDs may start with -); -- ends the flags.
func TestFlagsAfterArguments(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("prefix", "", "")
		fs.Bool("values", false, "")
		return fs
	}
	for _, tc := range []struct {
		args, want []string
		prefix     string
		values     bool
	}{
		{[]string{"S", "ID"}, []string{"S", "ID"}, "", false},
		{[]string{"-prefix", "p:", "S"}, []string{"S"}, "p:", false},
		{[]string{"S", "-prefix", "p:"}, []string{"S"}, "p:", false},
		{[]string{"S", "--prefix=p:", "ID", "-values"}, []string{"S", "ID"}, "p:", true},
		{[]string{"S", "-abcID", "-values"}, []string{"S", "-abcID"}, "", true},
		{[]string{"S", "--", "-values"}, []string{"S", "-values"}, "", false},
		{[]string{"-values", "--", "S", "-prefix", "x"}, []string{"S", "-prefix", "x"}, "", true},
	} {
		fs := newFS()
		if ok, code := parseFlags(fs, tc.args); !ok {
			t.Errorf("%q: not ok, code %d", tc.args, code)
			continue
		}
		if !slices.Equal(fs.Args(), tc.want) || fs.Lookup("prefix").Value.String() != tc.prefix ||
			fs.Lookup("values").Value.String() != map[bool]string{true: "true", false: "false"}[tc.values] {
			t.Errorf("%q: args %q prefix %q values %s", tc.args, fs.Args(), fs.Lookup("prefix").Value, fs.Lookup("values").Value)
		}
	}
	for _, args := range [][]string{{"-nosuch", "S"}, {"S", "-prefix"}} {
		if ok, code := parseFlags(newFS(), args); ok || code != 2 {
			t.Errorf("%q: ok %v code %d, want a usage error", args, ok, code)
		}
	}
	if ok, code := parseFlags(newFS(), []string{"S", "-h"}); ok || code != 0 {
		t.Errorf("S -h: ok %v code %d, want help", ok, code)
	}

	// End to end: the same listing either way round.
	url := boltURL(filepath.Join(t.TempDir(), "f.db"))
	populate(t, url)
	before, _ := mustRun(t, 0, "ls", "-prefix", "other:", url)
	after, _ := mustRun(t, 0, "ls", url, "-prefix", "other:")
	if before != after || !strings.Contains(after, `under prefix "other:"`) {
		t.Errorf("ls -prefix other: URL:\n%s\nls URL -prefix other::\n%s", before, after)
	}
}

// TestBoltLockedByApp: while an application holds a bolt file, sessionctl
// fails and says what to do instead.
func TestBoltLockedByApp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	// A handle the bolt driver's registry does not know stands in for the
	// running application's process.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, cmd := range [][]string{{"ls"}, {"show", "x"}, {"rm", "x"}, {"purge", "-expired"}} {
		args := append([]string{cmd[0], boltURL(path) + "?timeout=50ms"}, cmd[1:]...)
		_, stderr := mustRun(t, 1, args...)
		for _, want := range []string{"locked by another process", "stop the application", "admin page", "timeout option"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("sessionctl %s: message does not say %q:\n%s", strings.Join(args, " "), want, stderr)
			}
		}
	}
}
