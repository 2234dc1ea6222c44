package conformance_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/internal/testservers"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testservers.StopShared()
	opts := append(testservers.LeakCheckOptions(),
		// ristretto's dependency glog starts a flush goroutine at init.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*loggingT).flushDaemon"))
	if err := goleak.Find(opts...); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

func TestMemory(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		NewStore: func(t conformance.TB) store.StoreInterface {
			st := memory.New(memory.Options{SweepInterval: 10 * time.Millisecond})
			t.Cleanup(func() { st.Close() })
			return st
		},
		TTLResolution: 50 * time.Millisecond,
	})
}
