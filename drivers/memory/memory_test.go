package memory_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/drivers/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExpiryGoesToExactlyOneSubscriber(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Hour}) // swept by hand below
	defer s.Close()
	var a, b atomic.Int32
	stopA := s.NotifyExpired(func(string, []byte) { a.Add(1) })
	s.NotifyExpired(func(string, []byte) { b.Add(1) })
	ctx := context.Background()
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		if err := s.Set(ctx, k, []byte("v"), store.WithExpiration(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	s.SweepExpired()
	if got := a.Load() + b.Load(); got != 4 || a.Load() == 0 || b.Load() == 0 {
		t.Fatalf("4 expiries delivered as %d+%d; want each once, spread over both subscribers", a.Load(), b.Load())
	}
	stopA()
	stopA() // idempotent
	s.Set(ctx, "k5", []byte("v"), store.WithExpiration(time.Millisecond))
	time.Sleep(5 * time.Millisecond)
	s.SweepExpired()
	if a.Load()+b.Load() != 5 || b.Load() < 3 {
		t.Fatalf("after stop, the remaining subscriber must get every expiry: a=%d b=%d", a.Load(), b.Load())
	}
	if s.Len() != 0 {
		t.Fatalf("%d entries left after sweeping", s.Len())
	}
}

func TestCloseStopsTheSweeper(t *testing.T) {
	never := memory.New(memory.Options{})
	if err := never.Close(); err != nil { // never started
		t.Fatal(err)
	}
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	s.Set(context.Background(), "k", []byte("v"), store.WithExpiration(time.Hour)) // starts the sweeper
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Data stays readable after Close; goleak (TestMain) checks the goroutine.
	if v, err := s.Get(context.Background(), "k"); err != nil || string(v.([]byte)) != "v" {
		t.Fatalf("Get after Close = %v, %v", v, err)
	}
}
