package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/driver"

	"github.com/sessionstorage/sessions/examples/mapdriver"
)

// TestOwnSessionctl builds this sessionctl, as a driver author would, and
// runs its conformance and ls commands against the map driver's scheme.
func TestOwnSessionctl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sessionctl with the go command")
	}
	bin := filepath.Join(t.TempDir(), "sessionctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(want int, args ...string) (stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want {
			t.Fatalf("sessionctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	out, _ := run(0, "conformance", "map://")
	for _, want := range []string{"conformance of map:// (map store)", "session/cluster", "all ", "checks passed or do not apply"} {
		if !strings.Contains(out, want) {
			t.Errorf("conformance map:// output lacks %q:\n%s", want, out)
		}
	}

	if _, canList := any(mapdriver.New()).(driver.KeyLister); canList {
		run(0, "ls", "map://")
	} else {
		_, errOut := run(1, "ls", "map://")
		if !strings.Contains(errOut, "cannot list keys: its driver has no ListKeys") {
			t.Errorf("ls map:// does not say that the driver cannot list:\n%s", errOut)
		}
	}

	// Only the linked drivers: redis is not one of them.
	if _, errOut := run(1, "ls", "redis://127.0.0.1:1/0"); !strings.Contains(errOut, `no driver for scheme "redis"`) {
		t.Errorf("ls redis:// in a sessionctl without the redis driver:\n%s", errOut)
	}
}

// The guide shows this main, with the reader's module path for this one.
func TestGuideShowsThisMain(t *testing.T) {
	guide, err := os.ReadFile("../../../docs/writing-a-driver.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	shown := strings.ReplaceAll(string(code), "github.com/sessionstorage/sessions/examples/mapdriver", "example.com/yourmodule/mapdriver")
	if !strings.Contains(string(guide), shown) {
		t.Errorf("docs/writing-a-driver.md does not show examples/mapdriver/sessionctl/main.go (with example.com/yourmodule/mapdriver for its import):\n%s", shown)
	}
}
