package redis

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkBatchWrites measures SetMany and CompareAndSwapMany of 100
// entries on the shared standalone server, with the expiry index
// (index=on) and without it (index=off, the cost of the writes alone).
func BenchmarkBatchWrites(b *testing.B) {
	const batch = 100
	keys := make([]string, batch)
	values := make([][]byte, batch)
	for i := range keys {
		keys[i] = fmt.Sprintf("sess:bench:%d", i)
		values[i] = make([]byte, 512)
	}
	ctx := context.Background()
	for _, index := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "off"}[index]
		b.Run("SetMany/index="+name, func(b *testing.B) {
			s := sharedStore(b)
			s.noExpiryIndex = !index
			for b.Loop() {
				if err := s.SetMany(ctx, keys, values, 30*time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("CompareAndSwapMany/index="+name, func(b *testing.B) {
			s := sharedStore(b)
			s.noExpiryIndex = !index
			if err := s.SetMany(ctx, keys, values, 30*time.Minute); err != nil {
				b.Fatal(err)
			}
			// Every swap succeeds: each stores the value it expects.
			for b.Loop() {
				swapped, err := s.CompareAndSwapMany(ctx, keys, values, values, 30*time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if !swapped[0] || !swapped[batch-1] {
					b.Fatal("a swap failed")
				}
			}
		})
	}
}
