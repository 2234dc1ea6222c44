package conformance_test

import (
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/drivers/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
