package bench

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redisdriver "github.com/sessionstorage/sessions/drivers/redis"
)

// floor is what any Redis-backed session must pay at least: a bare
// go-redis GET of a 100-byte value, and a GET plus a SET, over numSessions
// keys, in parallel like the session benchmarks, with no HTTP harness and
// no session work. A third, GET plus the library's Redis compare-and-swap
// (the driver's Lua script, which cluster mode writes with), shows what that
// choice costs over a plain SET.
type floor struct {
	once   sync.Once
	client *goredis.Client
	cas    *redisdriver.Store
	keys   []string
	value  []byte
	err    error
}

func (f *floor) setup() {
	if servers.redisErr != nil {
		f.err = servers.redisErr
		return
	}
	f.client = goredis.NewClient(&goredis.Options{Addr: servers.redis.Addr(), DB: dbFloor})
	f.cas = redisdriver.New(f.client)
	f.value = bytes.Repeat([]byte("v"), 100)
	f.keys = make([]string, numSessions)
	for i := range f.keys {
		f.keys[i] = fmt.Sprintf("floor:%04d", i)
		if f.err = f.client.Set(ctx, f.keys[i], f.value, 30*time.Minute).Err(); f.err != nil {
			return
		}
	}
}

func (f *floor) close() {
	if f.client != nil {
		f.client.Close()
	}
}

// Floor kinds.
const (
	floorGet = iota
	floorGetSet
	floorGetCAS
)

func (f *floor) run(b *testing.B, kind int) {
	f.once.Do(f.setup)
	if servers.redisErr != nil {
		b.Skipf("redis-server: %v", servers.redisErr)
	}
	if f.err != nil {
		b.Fatal(f.err)
	}
	b.SetParallelism(*parallelism)
	b.ReportAllocs()
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		i := int(goroutineSeq.Add(1)*397) % len(f.keys)
		for pb.Next() {
			if i++; i == len(f.keys) {
				i = 0
			}
			v, err := f.client.Get(ctx, f.keys[i]).Bytes()
			if err != nil || len(v) != len(f.value) {
				b.Errorf("GET: %v (%d bytes)", err, len(v))
				return
			}
			switch kind {
			case floorGetSet:
				if err := f.client.Set(ctx, f.keys[i], f.value, 30*time.Minute).Err(); err != nil {
					b.Errorf("SET: %v", err)
					return
				}
			case floorGetCAS:
				// Swap the value for itself: the comparison succeeds
				// unless another goroutine is on the same key.
				if _, err := f.cas.CompareAndSwap(ctx, f.keys[i], v, f.value, 30*time.Minute); err != nil {
					b.Errorf("CAS: %v", err)
					return
				}
			}
		}
	})
}
