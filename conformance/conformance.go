// Package conformance checks that a gocache store works as a session
// storage, from raw byte round trips up to two session Managers sharing it.
//
// Driver authors call Run from a test:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{
//			NewStore: func(t conformance.TB) store.StoreInterface { return mystore.New(...) },
//		})
//	}
//
// Each check is a named subtest whose failure message says what the store
// did and what the library needs. Checks of optional capabilities
// (CompareAndSwap, CompareAndSwapMany, SetMany, ListKeys, CompareAndDelete,
// ListExpiring: the checks named cap/..., and the session checks that need
// them) are skipped, by name, for a store without
// them. `sessionctl conformance URL` runs the same checks against a live
// storage without writing Go, for any driver the sessionctl links (build
// your own with package github.com/sessionstorage/sessions/sessionctl to
// link yours).
package conformance

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
)

// TB is the part of testing.TB the checks and Harness.NewStore use;
// *testing.T implements it.
type TB interface {
	Helper()
	Name() string
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Harness describes the store under test. It is a struct so that new fields
// never break existing callers; only NewStore is required.
type Harness struct {
	// NewStore returns a fresh store for one check, isolated from other
	// checks' data (a new database, table, bucket, key namespace...), and
	// registers its clean-up with t.Cleanup.
	NewStore func(t TB) store.StoreInterface
	// TTLResolution is how late after its TTL an entry may still be
	// readable (memcached: 1 s). Default 100 ms, as in `sessionctl
	// conformance` for every storage but memcached. The checks that wait
	// for expiry (expiry, cap/...) sleep and set TTLs in multiples of it,
	// so their run time scales with it: at 3 s the suite takes about a
	// minute.
	TTLResolution time.Duration
	// MaxValueSize is the largest value the store must hold. Default
	// 1 MiB; a store with a smaller limit (memcached's item size) says so.
	MaxValueSize int
	// ExpectFail names checks known to fail on this store, with the
	// reason. Such a check's failure is reported, not fatal; if it passes,
	// Run fails, so that the list stays true.
	ExpectFail map[string]string
	// OnResult, if set, receives each check's outcome (for reports such as
	// the table in docs/drivers.md).
	OnResult func(Result)
	// Watchdog bounds one check's run time. Default 60 s.
	Watchdog time.Duration
}

// Outcome of one check.
type Outcome string

// Outcomes.
const (
	Pass         Outcome = "pass"
	Fail         Outcome = "FAIL"
	ExpectedFail Outcome = "fails (known)"
	Skip         Outcome = "skip"
)

// Result is one check's outcome. Detail holds the failure messages or why
// the check was skipped; Reason, for an expected failure, the reason given
// in Harness.ExpectFail.
type Result struct {
	Check   string
	Outcome Outcome
	Detail  string
	Reason  string
}

// Check is one named conformance check.
type Check struct {
	Name string
	Doc  string
	run  func(c *C, h *Harness)
}

// Checks returns every check in the order they run.
func Checks() []Check { return checks }

// Run runs every check as a subtest of t.
func Run(t *testing.T, h Harness) {
	h.setDefaults()
	for _, chk := range checks {
		t.Run(chk.Name, func(t *testing.T) {
			res := runOne(t, chk, &h)
			if h.OnResult != nil {
				h.OnResult(res)
			}
			switch res.Outcome {
			case Skip:
				t.Skip(res.Detail)
			case ExpectedFail:
				t.Logf("known failure (%s):\n%s", h.ExpectFail[chk.Name], res.Detail)
			}
		})
	}
}

// Execute runs every check outside `go test` (for sessionctl), reporting
// each result to report as it completes. tb receives clean-ups and logs.
func Execute(h Harness, report func(Result)) {
	h.setDefaults()
	for _, chk := range checks {
		host := &hostTB{name: chk.Name}
		res := runOne(host, chk, &h)
		if p := host.cleanup(); p != "" {
			res.Outcome = Fail
			res.Detail = strings.TrimPrefix(res.Detail+"\n"+p, "\n")
		}
		report(res)
	}
}

func (h *Harness) setDefaults() {
	if h.TTLResolution <= 0 {
		h.TTLResolution = 100 * time.Millisecond
	}
	if h.MaxValueSize <= 0 {
		h.MaxValueSize = 1 << 20
	}
	if h.Watchdog <= 0 {
		h.Watchdog = time.Minute
	}
}

// C is what a check runs with: a TB whose failures are recorded (and, under
// Run, reported to the subtest unless the check is expected to fail).
//
// Each failure message starts with the file and line of the check's own
// code that failed (the innermost frame of a check function, past the
// helpers it called), or with no location when none is found: under `go
// test` the line testing prints is the caller of Errorf, which may be a
// helper.
type C struct {
	parent  TB
	forward bool // report failures to parent

	mu       sync.Mutex
	failed   bool
	skipped  string
	msgs     []string
	finished bool                // runOne has returned: do not forward any more
	helpers  map[string]struct{} // functions marked by Helper
}

var _ TB = (*C)(nil)

// Helper marks the calling function as a helper: a failure inside it is
// attributed to its caller.
func (c *C) Helper() {
	pc, _, _, ok := runtime.Caller(1)
	if !ok {
		return
	}
	fn := runtime.FuncForPC(pc)
	if fn == nil {
		return
	}
	c.mu.Lock()
	if c.helpers == nil {
		c.helpers = map[string]struct{}{}
	}
	c.helpers[fn.Name()] = struct{}{}
	c.mu.Unlock()
}

// Name is the check's name.
func (c *C) Name() string { return c.parent.Name() }

// Cleanup registers fn with the enclosing test.
func (c *C) Cleanup(fn func()) { c.parent.Cleanup(fn) }

// Logf logs to the enclosing test.
func (c *C) Logf(format string, args ...any) {
	c.mu.Lock()
	finished := c.finished
	c.mu.Unlock()
	if !finished {
		c.parent.Logf(format, args...)
	}
}

// Errorf records a failure and continues.
func (c *C) Errorf(format string, args ...any) {
	c.parent.Helper()
	c.record(fmt.Sprintf(format, args...), 4)
}

// Fatalf records a failure and ends the check.
func (c *C) Fatalf(format string, args ...any) {
	c.parent.Helper()
	c.record(fmt.Sprintf(format, args...), 4)
	runtime.Goexit()
}

// Skipf ends the check as skipped.
func (c *C) Skipf(format string, args ...any) {
	c.mu.Lock()
	c.skipped = fmt.Sprintf(format, args...)
	c.mu.Unlock()
	runtime.Goexit()
}

// record adds a failure whose message is msg, located by the stack above
// skip frames (runtime.Callers numbering: 4 is the caller of Errorf).
func (c *C) record(msg string, skip int) {
	loc, direct := c.location(skip)
	full := msg
	if loc != "" {
		full = loc + ": " + msg
	}
	c.mu.Lock()
	c.failed = true
	c.msgs = append(c.msgs, full)
	forward := c.forward && !c.finished
	c.mu.Unlock()
	if forward {
		c.parent.Helper()
		if direct {
			// testing prints this very line: do not repeat it.
			c.parent.Errorf("%s", msg)
		} else {
			c.parent.Errorf("%s", full)
		}
	}
}

// checkFuncPrefix is the prefix of the name of every check function (and
// of the closures inside one).
var checkFuncPrefix = func() string {
	type marker struct{}
	return reflect.TypeOf(marker{}).PkgPath() + ".check"
}()

// location returns "file.go:line" of the frame a failure belongs to: the
// innermost frame of a check function (checkXxx or a closure in one), or
// else the innermost one that is neither in this file's C methods nor
// marked by Helper; "" if none. direct reports whether that frame is the
// first one above skip not marked by Helper, the one testing attributes the
// failure to (the helpers of checks.go mark themselves for both).
func (c *C) location(skip int) (loc string, direct bool) {
	pcs := make([]uintptr, 128)
	n := runtime.Callers(skip, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	isHelper := func(fn string) bool {
		c.mu.Lock() // Helper may be adding to the map on another goroutine
		defer c.mu.Unlock()
		_, ok := c.helpers[fn]
		return ok
	}
	var fallback runtime.Frame
	testingFrame := true // no unmarked frame seen yet: the next one is testing's
	for {
		f, more := frames.Next()
		if f.Function == "" {
			break
		}
		if strings.HasPrefix(f.Function, checkFuncPrefix) {
			return fmt.Sprintf("%s:%d", filepath.Base(f.File), f.Line), testingFrame
		}
		helper := isHelper(f.Function)
		if !helper {
			testingFrame = false
		}
		if fallback.PC == 0 && !helper && !strings.HasPrefix(f.Function, "runtime.") {
			fallback = f
		}
		if !more {
			break
		}
	}
	if fallback.PC == 0 || filepath.Base(fallback.File) == "conformance.go" {
		return "", false
	}
	return fmt.Sprintf("%s:%d", filepath.Base(fallback.File), fallback.Line), false
}

// recovered reports a panic of the check or of a goroutine it started as
// the check's failure, with the panic value and the stack. Call it
// deferred: recover works only there.
func (c *C) recovered(r any) {
	c.record(fmt.Sprintf("panic: %v (the store, or Harness.NewStore, panicked; a store must return errors, never panic)\n%s", r, debug.Stack()), 5)
}

// goSafe runs fn on a new goroutine counted by wg; a panic in it fails the
// check instead of the process.
func (c *C) goSafe(wg *sync.WaitGroup, fn func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			if r := recover(); r != nil {
				c.recovered(r)
			}
		}()
		fn()
	}()
}

func runOne(parent TB, chk Check, h *Harness) Result {
	reason, expected := h.ExpectFail[chk.Name]
	c := &C{parent: parent, forward: !expected}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				c.recovered(r)
			}
		}()
		chk.run(c, h)
	}()
	timedOut := false
	select {
	case <-done:
	case <-time.After(h.Watchdog):
		c.Errorf("check did not finish within %v: a store call hangs", h.Watchdog)
		timedOut = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished = true // a check left running by the watchdog reports no more
	if timedOut && !expected {
		return Result{Check: chk.Name, Outcome: Fail, Detail: strings.Join(c.msgs, "\n")}
	}
	switch {
	case c.skipped != "":
		return Result{Check: chk.Name, Outcome: Skip, Detail: c.skipped}
	case c.failed && expected:
		return Result{Check: chk.Name, Outcome: ExpectedFail, Reason: reason, Detail: strings.Join(c.msgs, "\n")}
	case c.failed:
		return Result{Check: chk.Name, Outcome: Fail, Detail: strings.Join(c.msgs, "\n")}
	case expected:
		parent.Errorf("check %s passed but Harness.ExpectFail says it fails (%s): remove it from ExpectFail", chk.Name, reason)
		return Result{Check: chk.Name, Outcome: Fail, Detail: "passed, but listed in ExpectFail"}
	}
	return Result{Check: chk.Name, Outcome: Pass}
}

// hostTB is the TB of Execute: clean-ups run after the check.
type hostTB struct {
	name     string
	mu       sync.Mutex
	cleanups []func()
}

func (h *hostTB) Helper()                           {}
func (h *hostTB) Name() string                      { return h.name }
func (h *hostTB) Logf(string, ...any)               {}
func (h *hostTB) Errorf(format string, args ...any) {}
func (h *hostTB) Fatalf(format string, args ...any) { runtime.Goexit() }
func (h *hostTB) Skipf(format string, args ...any)  { runtime.Goexit() }
func (h *hostTB) Cleanup(fn func()) {
	h.mu.Lock()
	h.cleanups = append(h.cleanups, fn)
	h.mu.Unlock()
}

// cleanup runs the clean-ups, last first, and returns the panics of any
// (a clean-up that panics does not stop the others or the run).
func (h *hostTB) cleanup() (panics string) {
	h.mu.Lock()
	fns := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					panics += fmt.Sprintf("panic in a clean-up (closing the store?): %v\n%s", r, debug.Stack())
				}
			}()
			fns[i]()
		}()
	}
	return panics
}

// bg is the context of calls that should succeed.
func bg() context.Context { return context.Background() }
