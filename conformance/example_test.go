package conformance_test

import (
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/drivers/memory"
)

// A driver's own test runs the whole suite against its store: each check
// gets a fresh store from NewStore. Checks the store is known to fail go in
// ExpectFail with the reason; the run fails if one of them starts passing,
// so the list stays true.
func ExampleRun() {
	// In drivers/mystore/mystore_test.go:
	_ = func(t *testing.T) {
		conformance.Run(t, conformance.Harness{
			NewStore: func(t conformance.TB) store.StoreInterface {
				s := memory.New(memory.Options{SweepInterval: 10 * time.Millisecond})
				t.Cleanup(func() { s.Close() })
				return s
			},
			TTLResolution: 100 * time.Millisecond,
		})
	}
}
