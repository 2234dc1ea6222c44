// Package poll waits in tests for something another goroutine does: the
// one polling loop of the module's tests and of package conformance.
//
// Polling is for work that runs on its own (a background goroutine, a
// storage server's expiry). Where a test can drive the work itself (a
// Manager's clock, sweep or write-behind flush), it should do that instead
// of waiting for it.
package poll

import (
	"testing"
	"time"
)

// maxInterval bounds the pause between two checks of a condition: the
// pauses start at a millisecond and double up to it, so a condition that
// holds soon is seen soon, and one that takes long costs few checks.
const maxInterval = 20 * time.Millisecond

// Until calls cond until it returns true or d has passed, and reports
// whether it returned true. cond is called at least once, and once more
// after d has passed, so a condition that holds by the deadline is never
// reported as failed; Until returns at most about maxInterval after d
// unless cond itself blocks. It runs on the caller's goroutine.
func Until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return cond()
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, maxInterval)
	}
}

// Eventually fails the test unless cond returns true within d (see Until):
// it calls t.Fatalf with what, a description of the condition awaited, so
// it must be called from the test's goroutine.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(d, cond) {
		t.Fatalf("after %v: %s", d, what)
	}
}

// Returns fails the test unless fn returns within d: what a caller that
// must not block (a request while storage hangs) checks. fn runs on a
// goroutine of its own, which is left running if fn does not return; the
// test then fails (t.Fatalf, so Returns must be called from the test's
// goroutine) with what, naming the call.
func Returns(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("%s did not return within %v", what, d)
	}
}
