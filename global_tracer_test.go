package sessions

import (
	"testing"

	"go.opentelemetry.io/otel"
)

// TestGlobalTracerProviderIsDefault: the global TracerProvider this
// package compares with (to start no span while none is installed) is
// otel's default, recognised by its type; a type renamed by an otel
// upgrade would make every storage load and commit start a no-op span
// (and allocate its context) while no provider is installed.
func TestGlobalTracerProviderIsDefault(t *testing.T) {
	if globalTracerProvider == nil || globalTracerProvider != otel.GetTracerProvider() {
		t.Fatalf("globalTracerProvider = %T, the global one is %T", globalTracerProvider, otel.GetTracerProvider())
	}
}
