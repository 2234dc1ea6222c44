package mapdriver_test

import (
	"testing"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
	"github.com/sessionstorage/sessions/examples/mapdriver"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		NewStore: func(conformance.TB) store.StoreInterface { return mapdriver.New() },
	})
}
