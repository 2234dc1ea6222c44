package poll

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	go func() { time.Sleep(10 * time.Millisecond); n.Store(1) }()
	if !Until(5*time.Second, func() bool { return n.Load() == 1 }) {
		t.Fatal("Until missed a condition that came true")
	}
	start := time.Now()
	if Until(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Until gave up after %v, want about 30ms", d)
	}
	calls := 0
	if !Until(0, func() bool { calls++; return calls == 2 }) {
		t.Fatal("Until(0) did not check again at the deadline")
	}
}

func TestReturns(t *testing.T) {
	Returns(t, 5*time.Second, "a quick call", func() {})
}
