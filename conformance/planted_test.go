package conformance_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/drivers/memory"
)

// The tests here plant one bug at a time in a copy of the memory driver
// and assert that the suite fails the check that should catch it.

// memoryHarness is the memory driver's harness, with the store wrapped by
// wrap.
func memoryHarness[S store.StoreInterface](wrap func(*memory.Store) S) conformance.Harness {
	return conformance.Harness{
		NewStore: func(t conformance.TB) store.StoreInterface {
			st := memory.New(memory.Options{SweepInterval: 10 * time.Millisecond})
			t.Cleanup(func() { st.Close() })
			return wrap(st)
		},
		TTLResolution: 50 * time.Millisecond,
	}
}

// execute runs the whole suite through conformance.Execute, as sessionctl
// does, and returns each check's result.
func execute(t *testing.T, h conformance.Harness) map[string]conformance.Result {
	t.Helper()
	out := map[string]conformance.Result{}
	conformance.Execute(h, func(r conformance.Result) { out[r.Check] = r })
	if len(out) != len(conformance.Checks()) {
		t.Fatalf("Execute reported %d results for %d checks", len(out), len(conformance.Checks()))
	}
	return out
}

// expectOutcomes asserts that exactly the checks in failing failed, each
// with a detail containing the given text, and every other check passed.
func expectOutcomes(t *testing.T, res map[string]conformance.Result, failing map[string]string) {
	t.Helper()
	for _, chk := range conformance.Checks() {
		r := res[chk.Name]
		want, ok := failing[chk.Name]
		switch {
		case ok && r.Outcome != conformance.Fail:
			t.Errorf("check %s: %s, want FAIL (the planted bug went through)", chk.Name, r.Outcome)
		case ok && !strings.Contains(r.Detail, want):
			t.Errorf("check %s failed with:\n%s\nwant a message containing %q", chk.Name, r.Detail, want)
		case !ok && r.Outcome != conformance.Pass && r.Outcome != conformance.Skip:
			t.Errorf("check %s: %s, want pass:\n%s", chk.Name, r.Outcome, r.Detail)
		}
	}
}

// deleteIgnoresValue's CompareAndDelete deletes whatever the key holds.
type deleteIgnoresValue struct{ *memory.Store }

func (s *deleteIgnoresValue) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	if _, err := s.Store.Get(ctx, key); err != nil {
		return false, nil
	}
	return true, s.Store.Delete(ctx, key)
}

// listerIgnoresBefore lists every live entry under the prefix, whatever
// its TTL.
type listerIgnoresBefore struct{ *memory.Store }

func (s *listerIgnoresBefore) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	return s.Store.ListExpiring(ctx, prefix, before.Add(1000*time.Hour), limit)
}

// panicsInGet panics in Get, as a driver asserting a wrong type might.
type panicsInGet struct{ *memory.Store }

func (s *panicsInGet) Get(ctx context.Context, key any) (any, error) {
	panic("planted: Get panics")
}

// panicsOnMismatch indexes values by the keys' index without checking the
// lengths.
type panicsOnMismatch struct{ *memory.Store }

func (s *panicsOnMismatch) SetMany(ctx context.Context, keys []string, values [][]byte, ttl time.Duration) error {
	for i, k := range keys {
		if err := s.Store.Set(ctx, k, values[i], store.WithExpiration(ttl)); err != nil {
			return err
		}
	}
	return nil
}

func (s *panicsOnMismatch) CompareAndSwapMany(ctx context.Context, keys []string, olds, values [][]byte, ttl time.Duration) ([]bool, error) {
	_ = olds[len(keys)-1] // the planted bug
	return s.Store.CompareAndSwapMany(ctx, keys, olds, values, ttl)
}

// plainMiss reports a miss with an error of its own.
type plainMiss struct{ *memory.Store }

func (s *plainMiss) Get(ctx context.Context, key any) (any, error) {
	v, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, os.ErrNotExist
	}
	return v, nil
}

func TestPlantedCompareAndDeleteIgnoresValue(t *testing.T) {
	t.Parallel()
	res := execute(t, memoryHarness(func(st *memory.Store) *deleteIgnoresValue { return &deleteIgnoresValue{st} }))
	expectOutcomes(t, res, map[string]string{
		"cap/compare-and-delete": "CompareAndDelete (wrong old) reported true, want false",
	})
}

func TestPlantedListerIgnoresBefore(t *testing.T) {
	t.Parallel()
	res := execute(t, memoryHarness(func(st *memory.Store) *listerIgnoresBefore { return &listerIgnoresBefore{st} }))
	expectOutcomes(t, res, map[string]string{
		"cap/expiry-lister": "whose TTL ends before the instant",
	})
}

// TestPanickingDriver: a store that panics fails the checks that reach the
// panic, with the panic value and stack, and the run goes on.
func TestPanickingDriver(t *testing.T) {
	t.Parallel()
	res := execute(t, memoryHarness(func(st *memory.Store) *panicsInGet { return &panicsInGet{st} }))
	for _, name := range []string{"bytes", "not-found", "overwrite", "expiry", "concurrency", "cap/compare-and-swap", "cap/set-many"} {
		r := res[name]
		if r.Outcome != conformance.Fail || !strings.Contains(r.Detail, "panic: planted: Get panics") || !strings.Contains(r.Detail, "goroutine ") {
			t.Errorf("check %s: %s with %q; want FAIL with the panic and its stack", name, r.Outcome, r.Detail)
		}
	}
	if r := res["cap/expiry-lister"]; r.Outcome != conformance.Pass {
		t.Errorf("cap/expiry-lister, which never calls Get: %s %s; want pass (the run goes on after panics)", r.Outcome, r.Detail)
	}
}

func TestPlantedPanicOnMismatchedSlices(t *testing.T) {
	t.Parallel()
	res := execute(t, memoryHarness(func(st *memory.Store) *panicsOnMismatch { return &panicsOnMismatch{st} }))
	expectOutcomes(t, res, map[string]string{
		"cap/set-many":              "SetMany with 1 key and 0 values panicked",
		"cap/compare-and-swap-many": "CompareAndSwapMany with 1 key and 0 olds panicked",
	})
}

// TestFailureLocation: a failure names the line of the check that failed,
// also when it failed inside a helper, and never a line of conformance.go.
func TestFailureLocation(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("checks.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	loc := regexp.MustCompile(`^checks\.go:(\d+): `)
	for _, tc := range []struct {
		name  string
		h     conformance.Harness
		check string
		call  string // what the line must hold
	}{
		{"through a helper", memoryHarness(func(st *memory.Store) *plainMiss { return &plainMiss{st} }), "not-found", "expectNotFound("},
		{"direct", memoryHarness(func(st *memory.Store) *listerIgnoresBefore { return &listerIgnoresBefore{st} }), "cap/expiry-lister", "c.Errorf("},
		{"panic", memoryHarness(func(st *memory.Store) *panicsInGet { return &panicsInGet{st} }), "overwrite", "mustGet("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r conformance.Result
			conformance.Execute(tc.h, func(res conformance.Result) {
				if res.Check == tc.check {
					r = res
				}
			})
			if strings.Contains(r.Detail, "conformance.go:") && !strings.Contains(r.Detail, "goroutine ") {
				t.Errorf("failure attributed to conformance.go: %s", r.Detail)
			}
			m := loc.FindStringSubmatch(r.Detail)
			if m == nil {
				t.Fatalf("check %s: %s %q; want a failure starting with checks.go:LINE: ", tc.check, r.Outcome, r.Detail)
			}
			n, _ := strconv.Atoi(m[1])
			if n < 1 || n > len(lines) || !strings.Contains(lines[n-1], tc.call) {
				t.Errorf("failure located at checks.go:%d, which is not a %s call:\n%s", n, tc.call, r.Detail)
			}
		})
	}
}

// TestFailureLocationUnderGoTest: under Run, go test prints the check's
// line (here through the helper expectNotFound), not conformance.go's.
func TestFailureLocationUnderGoTest(t *testing.T) {
	if os.Getenv("CONFORMANCE_PLANTED_RUN") == "1" {
		conformance.Run(t, memoryHarness(func(st *memory.Store) *plainMiss { return &plainMiss{st} }))
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailureLocationUnderGoTest$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CONFORMANCE_PLANTED_RUN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a store that reports a plain miss error:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^\s+checks\.go:\d+: Get\(".*"\) of a key never set`).Match(out) {
		t.Errorf("the not-found failure is not attributed to a line of checks.go:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// Skips (a capability the store lacks) are reported by Run itself.
		if strings.Contains(line, "conformance.go:") && !strings.Contains(line, "store has no") {
			t.Errorf("a failure is attributed to conformance.go: %s\n%s", line, out)
		}
	}
}

// TestPanickingDriverUnderGoTest: under Run too, a store that panics fails
// the checks that reach the panic and the test binary goes on to the last
// check.
func TestPanickingDriverUnderGoTest(t *testing.T) {
	if os.Getenv("CONFORMANCE_PLANTED_RUN") == "1" {
		conformance.Run(t, memoryHarness(func(st *memory.Store) *panicsInGet { return &panicsInGet{st} }))
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanickingDriverUnderGoTest$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CONFORMANCE_PLANTED_RUN=1")
	out, _ := cmd.CombinedOutput()
	checks := conformance.Checks()
	last := checks[len(checks)-1].Name
	for _, want := range []string{
		"--- FAIL: TestPanickingDriverUnderGoTest/not-found",
		"panic: planted: Get panics",
		"--- PASS: TestPanickingDriverUnderGoTest/" + last,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "[recovered]") || strings.Contains(string(out), "\nexit status 2") {
		t.Errorf("the test binary crashed:\n%s", out)
	}
}
