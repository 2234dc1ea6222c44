package sessions_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/sessionstorage/sessions"
)

// quiet keeps the examples' output to what they print.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// get sends one request to h with the cookies of jar and keeps the ones it
// sets, as a browser would; it returns the body.
func get(h http.Handler, jar map[string]string, target string) string {
	r := httptest.NewRequest("GET", target, nil)
	for name, value := range jar {
		r.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(jar, c.Name)
		} else {
			jar[c.Name] = c.Value
		}
	}
	return w.Body.String()
}

// A Manager over a storage named by URL: import the driver package for
// its scheme (here the built-in memory storage; for Redis, import
// github.com/sessionstorage/sessions/drivers/redis and use
// "redis://127.0.0.1:6379/0"). Close it on shutdown: it writes what is
// still queued.
func ExampleNew() {
	m, err := sessions.New(sessions.Config{Storage: "memory", Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close(context.Background())
	fmt.Println(m.Stats().Resident)
	// Output: 0
}

// Wrap handlers with Handler; inside, FromContext gives the request's
// session.
func ExampleManager_Handler() {
	m, _ := sessions.New(sessions.Config{Logger: quiet})
	defer m.Close(context.Background())
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		n, _, _ := sessions.Get[int](s, "visits")
		if err := s.Set("visits", n+1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d", n+1)
	}))
	jar := map[string]string{}
	fmt.Println(get(h, jar, "/"))
	fmt.Println(get(h, jar, "/"))
	// Output:
	// visit 1
	// visit 2
}

// Get decodes into the caller's type; no type registration is needed.
func ExampleGet() {
	type Cart struct{ Items map[string]int }
	m, _ := sessions.New(sessions.Config{Logger: quiet})
	defer m.Close(context.Background())
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		cart, ok, err := sessions.Get[Cart](s, "cart")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !ok {
			cart = Cart{Items: map[string]int{}}
		}
		cart.Items[r.FormValue("item")]++
		s.Set("cart", cart)
		fmt.Fprint(w, cart.Items)
	}))
	jar := map[string]string{}
	get(h, jar, "/?item=cheese")
	fmt.Println(get(h, jar, "/?item=cheese"))
	// Output: map[cheese:2]
}

// Renew at login gives the session a new ID for the same data, so that an
// ID planted before the login (session fixation) is worth nothing after.
func ExampleSession_Renew() {
	m, _ := sessions.New(sessions.Config{Logger: quiet})
	defer m.Close(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sessions.FromContext(r.Context()).Set("theme", "dark")
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		// ... check the password, then:
		if err := s.Set("user", "alice"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := s.Renew(); err != nil { // cluster mode: a storage error, nothing changed
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	h := m.Handler(mux)
	jar := map[string]string{}
	get(h, jar, "/")
	before, _ := sessions.CookieID(jar["session"])
	get(h, jar, "/login")
	after, _ := sessions.CookieID(jar["session"])
	fmt.Println(before != after)
	// Output: true
}

// Invalidate at logout ends the session everywhere and deletes the
// cookie; the request may go on as a guest.
func ExampleSession_Invalidate() {
	m, _ := sessions.New(sessions.Config{Logger: quiet,
		OnSessionEnd: func(s *sessions.Session, reason sessions.EndReason) {
			user, _, _ := sessions.Get[string](s, "user")
			fmt.Println("ended:", user, reason)
		}})
	defer m.Close(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		sessions.FromContext(r.Context()).Set("user", "alice")
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Invalidate(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	h := m.Handler(mux)
	jar := map[string]string{}
	get(h, jar, "/login")
	get(h, jar, "/logout")
	fmt.Println("cookies left:", len(jar))
	// Output:
	// ended: alice invalidated
	// cookies left: 0
}

// Update is a read-modify-write that loses no concurrent update.
func ExampleUpdate() {
	m, _ := sessions.New(sessions.Config{Logger: quiet})
	defer m.Close(context.Background())
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := sessions.Update(sessions.FromContext(r.Context()), "count",
			func(old int, _ bool) (int, error) { return old + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, n)
	}))
	jar := map[string]string{}
	get(h, jar, "/")
	fmt.Println(get(h, jar, "/"))
	// Output: 2
}

// Storages are defined by name, in a file or in Config.Storages, and
// chosen by name; ${NAME} takes a value from the environment.
func ExampleParseConfig() {
	cfg, err := sessions.ParseConfig(`
storage = "main"
timeout = "45m"

[storages.main]
url = "memory://"
options = { key_prefix = "shop:" }
`)
	if err != nil {
		log.Fatal(err)
	}
	cfg.Logger = quiet
	m, err := sessions.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close(context.Background())
	fmt.Println(cfg.Storage, cfg.Timeout)
	// Output: main 45m0s
}
