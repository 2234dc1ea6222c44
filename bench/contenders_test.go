package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/alexedwards/scs/boltstore"
	"github.com/alexedwards/scs/goredisstore"
	scs "github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	gorilla "github.com/gorilla/sessions"
	gorillaredis "github.com/rbcervilla/redisstore/v9"
	goredis "github.com/redis/go-redis/v9"
	"go.etcd.io/bbolt"

	"github.com/sessionstorage/sessions"
	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
)

// contenders, in the order they run, and their names (the contender's
// name field, known before it is set up).
var contenderNames = []string{
	"bare",
	"ours-sticky-memory", "ours-sticky-redis", "ours-sticky-bolt",
	"ours-cluster-redis", "ours-cluster-memcached", "ours-cluster-bolt", "ours-cluster-postgres",
	"scs-memstore", "scs-goredisstore", "scs-boltstore",
	"gorilla-redisstore",
}

var contenders = []func() (*contender, error){
	newBare,
	newOursStickyMemory,
	newOursStickyRedis,
	newOursStickyBolt,
	newOursClusterRedis,
	newOursClusterMemcached,
	newOursClusterBolt,
	newOursClusterPostgres,
	newSCSMemstore,
	newSCSGoredisstore,
	newSCSBoltstore,
	newGorillaRedisstore,
}

func newBare() (*contender, error) {
	return &contender{name: "bare", wrap: func(h http.Handler) http.Handler { return h }, api: bareAPI{}, close: func() {}}, nil
}

// --- this library ---

type oursAPI struct{}

func (oursAPI) read(_ http.ResponseWriter, r *http.Request) (int, string, error) {
	s := sessions.FromContext(r.Context())
	n, _, err := sessions.Get[int](s, "visits")
	if err != nil {
		return 0, "", err
	}
	u, _, err := sessions.Get[string](s, "user")
	return n, u, err
}

func (oursAPI) write(_ http.ResponseWriter, r *http.Request) (int, error) {
	s := sessions.FromContext(r.Context())
	n, _, err := sessions.Get[int](s, "visits")
	if err != nil {
		return 0, err
	}
	n++
	if err := s.Set("visits", n); err != nil {
		return 0, err
	}
	return n, s.Set("user", userValue)
}

func newOurs(name string, cfg sessions.Config) (*contender, error) {
	cfg.Cookie.Name = cookieName
	m, err := sessions.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &contender{name: name, wrap: m.Handler, api: oursAPI{}, close: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			fmt.Printf("# %s: Close: %v\n", name, err)
		}
	}}, nil
}

func redisURL(db int) (string, error) {
	if servers.redisErr != nil {
		return "", servers.redisErr
	}
	return fmt.Sprintf("redis://%s/%d", servers.redis.Addr(), db), nil
}

func boltURL(file string) string { return "bolt://" + filepath.Join(servers.dir, file) }

func newOursStickyMemory() (*contender, error) {
	return newOurs("ours-sticky-memory", sessions.Config{Storage: "memory"})
}

func newOursStickyRedis() (*contender, error) {
	u, err := redisURL(dbOursSticky)
	if err != nil {
		return nil, fmt.Errorf("ours-sticky-redis: %w", err)
	}
	return newOurs("ours-sticky-redis", sessions.Config{Storage: u})
}

func newOursStickyBolt() (*contender, error) {
	return newOurs("ours-sticky-bolt", sessions.Config{Storage: boltURL("ours-sticky.db")})
}

func newOursClusterRedis() (*contender, error) {
	u, err := redisURL(dbOursCluster)
	if err != nil {
		return nil, fmt.Errorf("ours-cluster-redis: %w", err)
	}
	return newOurs("ours-cluster-redis", sessions.Config{Storage: u, Cluster: true})
}

func newOursClusterMemcached() (*contender, error) {
	if servers.memcachedErr != nil {
		return nil, fmt.Errorf("ours-cluster-memcached: %w", servers.memcachedErr)
	}
	return newOurs("ours-cluster-memcached", sessions.Config{Storage: servers.memcached.URL(), Cluster: true})
}

func newOursClusterBolt() (*contender, error) {
	return newOurs("ours-cluster-bolt", sessions.Config{Storage: boltURL("ours-cluster.db"), Cluster: true})
}

func newOursClusterPostgres() (*contender, error) {
	if servers.postgresErr != nil {
		return nil, fmt.Errorf("ours-cluster-postgres: %w", servers.postgresErr)
	}
	return newOurs("ours-cluster-postgres", sessions.Config{Storage: servers.postgres.URL(), Cluster: true})
}

// --- alexedwards/scs ---

type scsAPI struct{ sm *scs.SessionManager }

func (a scsAPI) read(_ http.ResponseWriter, r *http.Request) (int, string, error) {
	ctx := r.Context()
	return a.sm.GetInt(ctx, "visits"), a.sm.GetString(ctx, "user"), nil
}

func (a scsAPI) write(_ http.ResponseWriter, r *http.Request) (int, error) {
	ctx := r.Context()
	n := a.sm.GetInt(ctx, "visits") + 1
	a.sm.Put(ctx, "visits", n)
	a.sm.Put(ctx, "user", userValue)
	return n, nil
}

func newSCS(name string, st scs.Store, closeStore func()) *contender {
	sm := scs.New()
	sm.Store = st
	sm.Cookie.Name = cookieName
	return &contender{name: name, wrap: sm.LoadAndSave, api: scsAPI{sm}, close: closeStore}
}

func newSCSMemstore() (*contender, error) {
	st := memstore.New()
	return newSCS("scs-memstore", st, st.StopCleanup), nil
}

func newSCSGoredisstore() (*contender, error) {
	if servers.redisErr != nil {
		return nil, fmt.Errorf("scs-goredisstore: %w", servers.redisErr)
	}
	client := goredis.NewClient(&goredis.Options{Addr: servers.redis.Addr(), DB: dbSCS})
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("scs-goredisstore: %w", err)
	}
	return newSCS("scs-goredisstore", goredisstore.New(client), func() { client.Close() }), nil
}

func newSCSBoltstore() (*contender, error) {
	db, err := bbolt.Open(filepath.Join(servers.dir, "scs.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("scs-boltstore: %w", err)
	}
	st := boltstore.New(db)
	return newSCS("scs-boltstore", copyingBoltStore{st, db}, func() { st.StopCleanup(); db.Close() }), nil
}

// copyingBoltStore is scs's boltstore with Find fixed: upstream returns the
// slice bbolt hands out inside a read transaction after the transaction
// ended, which the bbolt docs forbid; under concurrent writes the page is
// reused and the session fails to decode ("gob: unknown type id or
// corrupted data", "unexpected EOF": a 500). This Find is upstream's with the
// value copied inside the transaction.
type copyingBoltStore struct {
	*boltstore.BoltStore
	db *bbolt.DB
}

var scsBoltBucket = []byte("scs:session") // boltstore's bucket name

func (s copyingBoltStore) Find(token string) ([]byte, bool, error) {
	var val []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(scsBoltBucket).Get([]byte(token))
		if v == nil || len(v) < 8 || uint64(time.Now().UnixNano()) > binary.BigEndian.Uint64(v[:8]) {
			return nil
		}
		val = append([]byte(nil), v[8:]...)
		return nil
	})
	if err != nil || val == nil {
		return nil, false, err
	}
	return val, true, nil
}

// --- gorilla/sessions ---

type gorillaAPI struct{ st gorilla.Store }

func (a gorillaAPI) read(_ http.ResponseWriter, r *http.Request) (int, string, error) {
	s, err := a.st.Get(r, cookieName)
	if err != nil {
		return 0, "", err
	}
	n, _ := s.Values["visits"].(int)
	u, _ := s.Values["user"].(string)
	return n, u, nil
}

func (a gorillaAPI) write(w http.ResponseWriter, r *http.Request) (int, error) {
	s, err := a.st.Get(r, cookieName)
	if err != nil {
		return 0, err
	}
	n, _ := s.Values["visits"].(int)
	n++
	s.Values["visits"] = n
	s.Values["user"] = userValue
	return n, s.Save(r, w)
}

func newGorillaRedisstore() (*contender, error) {
	if servers.redisErr != nil {
		return nil, fmt.Errorf("gorilla-redisstore: %w", servers.redisErr)
	}
	client := goredis.NewClient(&goredis.Options{Addr: servers.redis.Addr(), DB: dbGorilla})
	st, err := gorillaredis.NewRedisStore(ctx, client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("gorilla-redisstore: %w", err)
	}
	st.KeyPrefix("gorilla:")
	st.Options(gorilla.Options{Path: "/", MaxAge: 86400, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return &contender{name: "gorilla-redisstore", wrap: func(h http.Handler) http.Handler { return h },
		api: gorillaAPI{st}, close: func() { client.Close() }}, nil
}
