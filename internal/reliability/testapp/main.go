// Command testapp is the app that internal/reliability's process tests
// (procs_test.go) build and run as separate OS processes, several at once
// over one storage, to kill them with SIGKILL or stop them with SIGTERM.
//
// It serves on loopback, behind the sessions middleware:
//
//	POST /set?k=K&v=V[&k=K2&v=V2...]  sets each k to its v, in order; 200 "ok" only
//	                                  once the library accepted every Set (in cluster
//	                                  mode: once the session is stored)
//	GET  /get?k=K                     the value, or 404
//	GET  /all                         every key and value of the session, as JSON
//	GET  /stats                       Manager.Stats() as JSON (no session)
//
// When it is ready it prints "listening http://ADDR" on stdout. On SIGTERM
// or SIGINT it shuts the http.Server down (in-flight requests finish), then
// calls Manager.Close, which drains sticky mode's write-behind queue, and
// exits 0 if Close returned nil, 1 otherwise.
//
// Flags (each also read from the environment variable in brackets when
// the flag is not given):
//
//	-storage URL        [TESTAPP_STORAGE] the storage URL (required)
//	-cluster            [TESTAPP_CLUSTER] cluster mode (default sticky)
//	-writebehind D      [TESTAPP_WRITEBEHIND] Config.WriteBehind (0: the default)
//	-storage-timeout D  [TESTAPP_STORAGE_TIMEOUT] Config.StorageTimeout (0: the default)
//	-addr ADDR          [TESTAPP_ADDR] listen address (default 127.0.0.1:0)
//	-close-timeout D    [TESTAPP_CLOSE_TIMEOUT] deadline of Shutdown and of Close (default 20s)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sessionstorage/sessions"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
)

func main() {
	os.Exit(run())
}

func run() int {
	storage := flag.String("storage", os.Getenv("TESTAPP_STORAGE"), "storage URL")
	cluster := flag.Bool("cluster", envBool("TESTAPP_CLUSTER"), "cluster mode")
	writeBehind := flag.Duration("writebehind", envDuration("TESTAPP_WRITEBEHIND", 0), "Config.WriteBehind")
	storageTimeout := flag.Duration("storage-timeout", envDuration("TESTAPP_STORAGE_TIMEOUT", 0), "Config.StorageTimeout")
	addr := flag.String("addr", envString("TESTAPP_ADDR", "127.0.0.1:0"), "listen address")
	closeTimeout := flag.Duration("close-timeout", envDuration("TESTAPP_CLOSE_TIMEOUT", 20*time.Second), "deadline of Shutdown and Close")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *storage == "" {
		log.Error("testapp: -storage is required")
		return 2
	}

	m, err := sessions.New(sessions.Config{
		Storage:        *storage,
		Cluster:        *cluster,
		WriteBehind:    *writeBehind,
		StorageTimeout: *storageTimeout,
		Cookie:         sessions.CookieConfig{Insecure: true},
		Logger:         log,
	})
	if err != nil {
		log.Error("testapp: sessions.New", "err", err)
		return 1
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		q := r.URL.Query()
		ks, vs := q["k"], q["v"]
		if len(ks) == 0 || len(ks) != len(vs) {
			http.Error(w, "want k=&v= pairs", http.StatusBadRequest)
			return
		}
		for i, k := range ks {
			if err := s.Set(k, vs[i]); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		// In cluster mode this Write commits the session first; if that
		// fails, the ErrorHandler answers instead and Write fails.
		if _, err := w.Write([]byte("ok")); err != nil {
			log.Debug("testapp: /set not acknowledged", "err", err)
		}
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		v, ok, err := sessions.Get[string](s, r.FormValue("k"))
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case !ok:
			http.Error(w, "no such key", http.StatusNotFound)
		default:
			fmt.Fprint(w, v)
		}
	})
	mux.HandleFunc("/all", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		all := map[string]string{}
		for _, k := range s.Keys() {
			v, ok, err := sessions.Get[string](s, k)
			if err != nil {
				http.Error(w, fmt.Sprintf("key %q: %v", k, err), http.StatusInternalServerError)
				return
			}
			if ok {
				all[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(all)
	})
	root := m.Handler(mux)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stats" { // outside the middleware: no session
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(m.Stats())
			return
		}
		root.ServeHTTP(w, r)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("testapp: listen", "err", err)
		return 1
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("listening http://%s\n", ln.Addr())

	select {
	case sig := <-sigs:
		log.Info("testapp: stopping", "signal", sig.String())
	case err := <-served:
		log.Error("testapp: serve", "err", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *closeTimeout)
	defer cancel()
	code := 0
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("testapp: http shutdown", "err", err)
		code = 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("testapp: serve", "err", err)
		code = 1
	}
	if err := m.Close(ctx); err != nil {
		log.Error("testapp: Manager.Close", "err", err)
		code = 1
	}
	log.Info("testapp: stopped", "code", code)
	return code
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
