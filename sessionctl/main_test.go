package sessionctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// TestMain stops the shared test servers, then checks that no test left a
// goroutine behind (servers, Managers, bolt sweepers, HTTP connections).
// testservers' spawner goroutine lives for the whole process by design.
func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/sessionstorage/sessions/internal/testservers.spawn.func1.1")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runArgs runs the command line and returns its exit code and outputs.
func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs the command line and fails t unless it exits with want.
func mustRun(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := runArgs(args...)
	if code != want {
		t.Fatalf("sessionctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	return stdout, stderr
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUsage: -h and --help describe every command; bad usage exits 2.
func TestUsage(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				_, stderr := mustRun(t, 0, name, h)
				if !strings.Contains(stderr, "usage: sessionctl "+name) {
					t.Errorf("%s %s: no usage line:\n%s", name, h, stderr)
				}
				if len(strings.TrimSpace(stderr)) < 200 {
					t.Errorf("%s %s: description too short:\n%s", name, h, stderr)
				}
			}
		})
	}
	if _, stderr := mustRun(t, 2); !strings.Contains(stderr, "purge") || !strings.Contains(stderr, "demo") {
		t.Errorf("bare sessionctl: usage lacks commands:\n%s", stderr)
	}
	mustRun(t, 2, "frobnicate")
	for _, args := range [][]string{{"ls"}, {"show", "bolt:///x.db"}, {"rm", "bolt:///x.db"}, {"stats"}, {"purge"}, {"ls", "-nosuchflag", "x"}, {"demo", "extra"}} {
		mustRun(t, 2, args...)
	}
}

// TestCommand: the exported entry point writes to its own outputs and
// returns the exit code; nil outputs discard.
func TestCommand(t *testing.T) {
	var out, errb bytes.Buffer
	c := Command{Stdout: &out, Stderr: &errb, Context: context.Background()}
	if code := c.Main([]string{"ls"}); code != 2 || !strings.Contains(errb.String(), "usage: sessionctl ls") {
		t.Errorf("ls without STORAGE: exit %d, stderr:\n%s", code, errb.String())
	}
	if code := (Command{}).Main([]string{"-h"}); code != 0 {
		t.Errorf("-h with nil outputs: exit %d", code)
	}
}
