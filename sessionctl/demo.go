package sessionctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/promsessions"
)

// The demo: N app servers (each its own sessions.Manager and http.Server
// on a free loopback port) behind a reverse proxy, all in one process and
// sharing one storage, as N app servers behind a load balancer would.

// demoConfig configures runDemo.
type demoConfig struct {
	Addr    string    // the proxy's listen address; "127.0.0.1:0" picks a free port
	Storage string    // storage URL the app servers share; "memory" shares one in-process store
	Cluster bool      // cluster mode (round-robin) or sticky mode (routing cookie)
	Servers int       // number of app servers, 1 to 9
	Log     io.Writer // request log and events; nil discards them
}

// Timeouts of the demo's shutdown steps.
const (
	demoShutdownTimeout = 5 * time.Second  // http.Server.Shutdown, proxy and app servers
	demoCloseTimeout    = 10 * time.Second // Manager.Close: flushing what is left
)

// routeCookie is the proxy's sticky-routing cookie (sticky mode only).
const routeCookie = "demo_server"

// defaultDemoPath is where the demo's bbolt file lives by default: the
// user's cache directory, else the temp directory.
func defaultDemoPath() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "sessionctl", "demo.db")
	}
	return filepath.Join(os.TempDir(), "sessionctl-demo.db")
}

// boltURL turns a file path into a bolt:// storage URL.
func boltURL(path string) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // bolt:///C:/dir/file.db
	}
	return (&url.URL{Scheme: "bolt", Path: p}).String()
}

// runDemoCommand is the demo subcommand.
func runDemoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	defPath := defaultDemoPath()
	defStorage := boltURL(defPath)
	if !slices.Contains(driver.Schemes(), "bolt") {
		defStorage = "memory" // a sessionctl built without drivers/bolt
	}
	fs := newFlags("demo", "", `
Starts, in this one process, app servers on free loopback ports (each its
own sessions.Manager and http.Server) and a reverse proxy in front of them,
all backed up to one storage: by default a bbolt file, so nothing needs
to be installed (in a sessionctl built without drivers/bolt, "memory"). Open the printed URL: the page shows which server
answered, the session's visit counter and a small cart. Stop a server with
its button and keep clicking: the session carries on through the others.

Cluster mode (the default) reads the session from storage on every request
and writes a change before the response, so the proxy sends each click to
the next server (round-robin), redirects included. Sticky mode
(-cluster=false) keeps sessions in memory and writes them behind; the proxy
then keeps each browser on one server with a cookie, and when that server
is stopped it moves the browser to a survivor, which reloads the session
from storage.

Ctrl-C stops the proxy, then the servers, then closes the Managers, which
flush what is left to storage. Sessions live on in the storage: start the
demo again and the cart is still there.`, stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "the proxy's listen `address`")
	storage := fs.String("storage", defStorage, "storage `URL` the app servers share (redis://, bolt://, ...; \"memory\": one in-process store)")
	cluster := fs.Bool("cluster", true, "cluster mode (storage authoritative, round-robin); false: sticky mode (memory authoritative, sticky routing)")
	servers := fs.Int("servers", 3, "number of app servers (1 to 9)")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if *storage == boltURL(defPath) {
		if err := os.MkdirAll(filepath.Dir(defPath), 0o700); err != nil {
			fmt.Fprintln(stderr, "sessionctl demo:", err)
			return 1
		}
	}
	cfg := demoConfig{Addr: *addr, Storage: *storage, Cluster: *cluster, Servers: *servers, Log: stderr}
	err := runDemo(ctx, cfg, func(u string) {
		mode, how := "cluster", "the proxy sends each request to the next server (round-robin)"
		if !cfg.Cluster {
			mode, how = "sticky", "the proxy keeps each browser on one server and fails over when it stops"
		}
		fmt.Fprintf(stdout, "sessionctl demo: %d app servers, %s mode, storage %s\n\n", cfg.Servers, mode, driver.RedactURL(cfg.Storage))
		fmt.Fprintf(stdout, "  Open %s\n\n", u)
		fmt.Fprintf(stdout, "Click around: %s. Stop a server with its button and keep clicking.\nCtrl-C stops the demo.\n\n", how)
	})
	if err != nil {
		fmt.Fprintln(stderr, "sessionctl demo:", err)
		return 1
	}
	fmt.Fprintf(stdout, "demo stopped; every session was flushed to %s\n", driver.RedactURL(cfg.Storage))
	return 0
}

// runDemo runs the demo until ctx ends, then shuts it down: the proxy, the
// app servers, and their Managers (flushing to storage, within a
// deadline). ready is called with the proxy's URL once everything listens.
// It returns an error if the demo cannot start or a Manager cannot flush.
func runDemo(ctx context.Context, cfg demoConfig, ready func(url string)) error {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.Storage == "" {
		cfg.Storage = boltURL(defaultDemoPath())
	}
	if cfg.Servers == 0 {
		cfg.Servers = 3
	}
	if cfg.Servers < 1 || cfg.Servers > 9 {
		return fmt.Errorf("-servers %d: want 1 to 9", cfg.Servers)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	d := &demo{cfg: cfg, log: &lockedWriter{w: cfg.Log}}
	d.logger = slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d.transport = &http.Transport{
		Proxy:               nil, // never send loopback traffic to an HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	defer d.transport.CloseIdleConnections()
	if cfg.Storage == "memory" || strings.HasPrefix(cfg.Storage, "memory:") {
		// Each Manager would open a private memory store: share one, so
		// the servers see each other's sessions as with a real storage.
		st, err := adapter.Resolve(ctx, cfg.Storage, nil)
		if err != nil {
			return err
		}
		d.shared = st.Store()
		defer st.Close()
	}
	d.servers = make([]*appServer, cfg.Servers)
	for i := range d.servers {
		d.servers[i] = &appServer{n: i + 1}
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w (choose another address with -addr, such as -addr 127.0.0.1:8081)", err)
	}
	for _, s := range d.servers {
		if err := d.start(s.n); err != nil {
			ln.Close()
			return errors.Join(err, d.stopAll())
		}
	}
	proxy := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- proxy.Serve(ln) }()
	proxyURL := "http://" + ln.Addr().String() + "/"
	d.logf("proxy     listening on %s, %s mode, storage %s", proxyURL, d.mode(), driver.RedactURL(cfg.Storage))
	if ready != nil {
		ready(proxyURL)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("proxy: %w", serveErr)
	}
	d.logf("proxy     shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), demoShutdownTimeout)
	if err := proxy.Shutdown(sctx); err != nil {
		proxy.Close()
	}
	cancel()
	if serveErr == nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("proxy: %w", err)
		}
	}
	return errors.Join(serveErr, d.stopAll())
}

// demo is the running demo: the proxy's handler and the app servers.
type demo struct {
	cfg       demoConfig
	log       *lockedWriter
	logger    *slog.Logger // for the Managers: warnings and errors only
	transport *http.Transport
	shared    store.StoreInterface // the one store of "memory"; nil otherwise
	rr        atomic.Uint64

	ops     sync.Mutex // serialises start and stop
	mu      sync.Mutex // guards the appServer fields below and events
	servers []*appServer
	events  []string
}

// appServer is one app server of the demo. Its fields other than n are
// guarded by demo.mu.
type appServer struct {
	n      int
	addr   string // host:port; kept across restarts when the port is free
	up     bool
	mgr    *sessions.Manager
	stats  prometheus.Collector // mgr's metrics, labelled with the server's number
	srv    *http.Server
	served chan struct{} // closed when Serve returned
	proxy  *httputil.ReverseProxy
}

// mode names the demo's mode.
func (d *demo) mode() string {
	if d.cfg.Cluster {
		return "cluster"
	}
	return "sticky"
}

// logf writes one timestamped line to the demo's log.
func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.log, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// event logs a line and keeps it for the page's "what happened" list.
func (d *demo) event(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.logf("event     %s", msg)
	d.mu.Lock()
	d.events = append(d.events, time.Now().Format("15:04:05")+" "+msg)
	if len(d.events) > 6 {
		d.events = d.events[len(d.events)-6:]
	}
	d.mu.Unlock()
}

// start starts app server n (1-based) unless it is running.
func (d *demo) start(n int) error {
	d.ops.Lock()
	defer d.ops.Unlock()
	d.mu.Lock()
	s := d.servers[n-1]
	up, addr := s.up, s.addr
	d.mu.Unlock()
	if up {
		return nil
	}
	mcfg := sessions.Config{
		Storage: d.cfg.Storage,
		Store:   d.shared,
		Cluster: d.cfg.Cluster,
		// The demo speaks plain HTTP on 127.0.0.1: a Secure cookie would
		// not come back over it (Go's cookiejar and some browsers send
		// Secure cookies over https only, or localhost only). Never set
		// Insecure on a site served over HTTPS.
		Cookie:   sessions.CookieConfig{Insecure: true},
		Logger:   d.logger,
		Observer: promsessions.NewObserver(), // for /metrics
	}
	mgr, err := sessions.New(mcfg)
	if err != nil {
		return fmt.Errorf("server %d: %w", n, err)
	}
	stats := promsessions.New(mgr, promsessions.ConstLabels(prometheus.Labels{"server": strconv.Itoa(n)}))
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr != "127.0.0.1:0" {
		ln, err = net.Listen("tcp", "127.0.0.1:0") // the old port was taken meanwhile
	}
	if err != nil {
		closeManager(mgr)
		return fmt.Errorf("server %d: %w", n, err)
	}
	target := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	srv := &http.Server{
		Handler:           mgr.Handler(d.app(n)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:    d.transport,
		ErrorHandler: d.proxyError(n),
		ErrorLog:     slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn),
	}
	d.mu.Lock()
	s.addr, s.up, s.mgr, s.srv, s.served, s.proxy = target.Host, true, mgr, srv, served, rp
	s.stats = stats
	d.mu.Unlock()
	d.logf("server %d  listening on %s", n, target.Host)
	return nil
}

// closeManager closes m within the demo's deadline and returns the error.
func closeManager(m *sessions.Manager) error {
	ctx, cancel := context.WithTimeout(context.Background(), demoCloseTimeout)
	defer cancel()
	return m.Close(ctx)
}

// errLastServer: the demo keeps at least one server running.
var errLastServer = errors.New("is the last one running: start another one first")

// stop stops app server n: it takes it out of the proxy's rotation, shuts
// its http.Server down (waiting for requests in flight) and closes its
// Manager, which writes what sticky mode still holds in memory. Unless
// force, it refuses to stop the last running server.
func (d *demo) stop(n int, force bool) error {
	d.ops.Lock()
	defer d.ops.Unlock()
	d.mu.Lock()
	s := d.servers[n-1]
	if !s.up {
		d.mu.Unlock()
		return nil
	}
	if !force && d.upLocked() == 1 {
		d.mu.Unlock()
		return errLastServer
	}
	s.up = false
	srv, mgr, served := s.srv, s.mgr, s.served
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), demoShutdownTimeout)
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	cancel()
	<-served
	d.transport.CloseIdleConnections()
	st := mgr.Stats()
	if err := closeManager(mgr); err != nil {
		return fmt.Errorf("server %d: closing its Manager: %w", n, err)
	}
	d.logf("server %d  stopped; Manager closed (%d storage writes, %d reads, %d pending writes flushed at close)",
		n, st.StorageWrites, st.StorageReads, st.PendingWrites)
	return nil
}

// stopAll stops every running server: their http.Servers first, then
// their Managers.
func (d *demo) stopAll() error {
	var errs []error
	for _, s := range d.servers {
		if err := d.stop(s.n, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// upLocked counts the running servers; d.mu is held.
func (d *demo) upLocked() int {
	n := 0
	for _, s := range d.servers {
		if s.up {
			n++
		}
	}
	return n
}

// ServeHTTP is the proxy: the demo's controls, else the request goes to
// an app server.
func (d *demo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	who := "proxy    "
	switch r.URL.Path {
	case "/demo/stop", "/demo/start":
		d.control(rec, r)
	case "/favicon.ico":
		rec.WriteHeader(http.StatusNoContent)
	case "/metrics":
		d.metrics(rec, r)
	default:
		n, rp, note := d.route(rec, r)
		if note != "" {
			d.event("%s", note)
		}
		if rp == nil {
			http.Error(rec, "No app server is running.", http.StatusServiceUnavailable)
			break
		}
		who = fmt.Sprintf("server %d ", n)
		rp.ServeHTTP(rec, r)
	}
	d.logf("%s %-4s %-22s %d  %s", who, r.Method, r.URL.RequestURI(), rec.code(), time.Since(start).Round(10*time.Microsecond))
}

// route picks the app server for r: the next running one in cluster mode;
// in sticky mode the one the routing cookie names, or, on a first request
// or after that server stopped, another one, whose number it sets in the
// cookie. note describes a failover.
func (d *demo) route(w http.ResponseWriter, r *http.Request) (n int, rp *httputil.ReverseProxy, note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	count := len(d.servers)
	next := func(after int) *appServer { // the first running server after index after
		for i := 1; i <= count; i++ {
			if s := d.servers[(after+i)%count]; s.up {
				return s
			}
		}
		return nil
	}
	if d.cfg.Cluster {
		if s := next(int(d.rr.Add(1) % uint64(count))); s != nil {
			return s.n, s.proxy, ""
		}
		return 0, nil, ""
	}
	var s *appServer
	if c, err := r.Cookie(routeCookie); err == nil {
		if was, err := strconv.Atoi(c.Value); err == nil && was >= 1 && was <= count {
			if d.servers[was-1].up {
				return was, d.servers[was-1].proxy, ""
			}
			if s = next(was - 1); s != nil {
				note = fmt.Sprintf("server %d is down: a browser moves to server %d, which reloads its session from storage", was, s.n)
			}
		}
	}
	if s == nil {
		s = next(int(d.rr.Add(1) % uint64(count)))
	}
	if s == nil {
		return 0, nil, ""
	}
	http.SetCookie(w, &http.Cookie{Name: routeCookie, Value: strconv.Itoa(s.n), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return s.n, s.proxy, note
}

// control handles POST /demo/stop?server=N and POST /demo/start?server=N,
// then redirects to the page.
func (d *demo) control(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "Use POST (the page's buttons).", http.StatusMethodNotAllowed)
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("server"))
	if err != nil || n < 1 || n > len(d.servers) {
		http.Error(w, fmt.Sprintf("server must be a number from 1 to %d", len(d.servers)), http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/demo/stop" {
		switch err := d.stop(n, false); {
		case errors.Is(err, errLastServer):
			d.event("server %d %v", n, err)
		case err != nil:
			d.event("stopping server %d: %v", n, err)
		default:
			d.event("server %d stopped: shut down, Manager closed, its sessions flushed to storage", n)
		}
	} else {
		if err := d.start(n); err != nil {
			d.event("starting server %d: %v", n, err)
		} else {
			d.event("server %d started (empty memory: it reads sessions from storage)", n)
		}
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// proxyError answers a request that app server n did not answer (it was
// stopped while the request was on its way).
func (d *demo) proxyError(n int) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		d.logf("server %d  did not answer %s %s: %v", n, r.Method, r.URL.Path, err)
		http.Error(w, fmt.Sprintf("Server %d did not answer (stopped during the request?). Reload the page.", n), http.StatusBadGateway)
	}
}

// serverStatus is one line of the page's server table.
type serverStatus struct {
	N    int
	Addr string
	Up   bool
	This bool
}

// status returns the servers' states and recent events, for the page.
func (d *demo) status(this int) ([]serverStatus, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]serverStatus, len(d.servers))
	for i, s := range d.servers {
		out[i] = serverStatus{N: s.n, Addr: s.addr, Up: s.up, This: s.n == this}
	}
	events := make([]string, len(d.events))
	for i, e := range d.events { // newest first
		events[len(events)-1-i] = e
	}
	return out, events
}

// statusRecorder remembers the status code of a response, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status code.
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// code is the status sent (200 when none was set).
func (r *statusRecorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// lockedWriter serialises writes from the servers' goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p under the lock.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// metrics serves the running app servers' metrics in the Prometheus text
// format (package promsessions), each labelled with its server's number,
// to clients on the loopback interface only.
func (d *demo) metrics(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "/metrics is served to loopback clients only.", http.StatusForbidden)
		return
	}
	reg := prometheus.NewRegistry()
	d.mu.Lock()
	for _, s := range d.servers {
		if s.up && s.stats != nil {
			reg.MustRegister(s.stats)
		}
	}
	d.mu.Unlock()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
