package sessionctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/drivers/bolt"
)

// runningDemo is a demo started by startDemo.
type runningDemo struct {
	url, path string
	log       *syncBuffer
	stop      func() error
}

// startDemo runs the demo on a free port with a bolt file of its own and
// stops it at the end of the test.
func startDemo(t *testing.T, cluster bool) *runningDemo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	path := filepath.Join(t.TempDir(), "demo.db")
	d := &runningDemo{path: path, log: &syncBuffer{}}
	cfg := demoConfig{Addr: "127.0.0.1:0", Storage: boltURL(path), Cluster: cluster, Servers: 3, Log: d.log}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- runDemo(ctx, cfg, func(u string) { ready <- u }) }()
	select {
	case d.url = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("demo did not start within 10s")
	}
	var stopped bool
	var stopErr error
	d.stop = func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-errc:
		case <-time.After(30 * time.Second):
			stopErr = errors.New("runDemo did not return within 30s of cancellation")
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("stopping the demo: %v", err)
		}
		if t.Failed() {
			t.Logf("demo log:\n%s", d.log.String())
		}
	})
	return d
}

// browser drives the demo like a user: a cookie jar, redirects followed,
// and the session data it expects to see.
type browser struct {
	t         *testing.T
	base      string
	client    *http.Client
	transport *http.Transport
	visits    int
	cart      map[string]int
	// redirectedBy is the server that answered the POST of the last
	// request that was redirected, 0 if none.
	redirectedBy int
}

// newBrowser returns a browser on the demo at base.
func newBrowser(t *testing.T, base string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: nil}
	b := &browser{t: t, base: base, transport: tr, cart: map[string]int{}}
	b.client = &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			b.redirectedBy, _ = strconv.Atoi(req.Response.Header.Get("X-Demo-Server"))
			return nil
		}}
	t.Cleanup(tr.CloseIdleConnections)
	return b
}

// page is what the demo's page shows.
type page struct {
	server, visits int
	cart           map[string]int
	body           string
}

var (
	reServer = regexp.MustCompile(`id="answered-by" data-server="(\d+)"`)
	reVisits = regexp.MustCompile(`id="visits" data-visits="(\d+)"`)
	reItem   = regexp.MustCompile(`data-item="(\w+)" data-qty="(\d+)"`)
)

// do sends a request (a GET of the page, or a POST that redirects to it),
// parses the page and checks it shows exactly the expected session data.
func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	b.redirectedBy = 0
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = b.client.PostForm(b.base+strings.TrimPrefix(path, "/"), form)
	} else {
		resp, err = b.client.Get(b.base + strings.TrimPrefix(path, "/"))
	}
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		b.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s: %s\n%s", method, path, resp.Status, body)
	}
	p := page{cart: map[string]int{}, body: string(body)}
	m := reServer.FindStringSubmatch(p.body)
	v := reVisits.FindStringSubmatch(p.body)
	if m == nil || v == nil {
		b.t.Fatalf("%s %s: page without server or visit marker:\n%s", method, path, body)
	}
	p.server, _ = strconv.Atoi(m[1])
	p.visits, _ = strconv.Atoi(v[1])
	if h := resp.Header.Get("X-Demo-Server"); h != m[1] {
		b.t.Errorf("%s %s: X-Demo-Server %q, page says server %s", method, path, h, m[1])
	}
	for _, it := range reItem.FindAllStringSubmatch(p.body, -1) {
		if n, _ := strconv.Atoi(it[2]); n > 0 {
			p.cart[it[1]] = n
		}
	}
	b.visits++ // every page view counts one visit
	if p.visits != b.visits || !maps.Equal(p.cart, b.cart) {
		b.t.Fatalf("%s %s answered by server %d: visits %d cart %v; want visits %d cart %v (session data lost)",
			method, path, p.server, p.visits, p.cart, b.visits, b.cart)
	}
	return p
}

// view loads the page.
func (b *browser) view() page { b.t.Helper(); return b.do(http.MethodGet, "/", nil) }

// add puts one item in the cart.
func (b *browser) add(item string) page {
	b.t.Helper()
	b.cart[item]++
	return b.do(http.MethodPost, "/cart/add", url.Values{"item": {item}})
}

// remove takes one item out of the cart.
func (b *browser) remove(item string) page {
	b.t.Helper()
	if b.cart[item]--; b.cart[item] <= 0 {
		delete(b.cart, item)
	}
	return b.do(http.MethodPost, "/cart/remove", url.Values{"item": {item}})
}

// control presses a server's stop or start button.
func (b *browser) control(action string, server int) page {
	b.t.Helper()
	return b.do(http.MethodPost, fmt.Sprintf("/demo/%s?server=%d", action, server), nil)
}

// clicks does a mix of page views and cart changes and returns the set of
// servers that answered (pages, and the POSTs before their redirects).
func (b *browser) clicks(n int) map[int]bool {
	b.t.Helper()
	seen := map[int]bool{}
	items := []string{"apple", "bread", "cheese", "coffee"}
	for i := 0; i < n; i++ {
		var p page
		switch i % 4 {
		case 0, 2:
			p = b.view()
		case 1:
			p = b.add(items[i%len(items)])
		case 3:
			p = b.add("apple")
		}
		seen[p.server] = true
		if b.redirectedBy != 0 {
			seen[b.redirectedBy] = true
		}
	}
	return seen
}

// TestDemoCluster clicks through the round-robin proxy, stops and starts
// servers, and checks that the session never loses a visit or an item.
func TestDemoCluster(t *testing.T) {
	d := startDemo(t, true)
	b := newBrowser(t, d.url)

	seen := b.clicks(8)
	if len(seen) < 2 {
		t.Fatalf("cluster mode: every request answered by %v; want round-robin over several servers", seen)
	}
	// POST, redirect, GET: the change is in storage before the redirect
	// leaves, so the GET sees it on the next server.
	p := b.add("coffee")
	if b.redirectedBy == 0 || b.redirectedBy == p.server {
		t.Errorf("cart add handled by server %d, page by server %d; want different servers", b.redirectedBy, p.server)
	}
	b.remove("apple")

	b.control("stop", 2)
	seen = b.clicks(9)
	if seen[2] {
		t.Fatalf("server 2 answered after it was stopped")
	}
	if !seen[1] || !seen[3] {
		t.Errorf("after stopping server 2, answers came from %v; want servers 1 and 3", seen)
	}

	b.control("start", 2)
	if seen = b.clicks(6); !seen[2] {
		t.Errorf("after restarting server 2, answers came from %v; want server 2 among them", seen)
	}

	// The last running server is never stopped.
	b.control("stop", 1)
	p = b.control("stop", 2)
	if p.server != 3 {
		t.Fatalf("with servers 1 and 2 stopped, server %d answered", p.server)
	}
	p = b.control("stop", 3)
	if p.server != 3 || !strings.Contains(p.body, "last one running") {
		t.Errorf("stopping the last server: answered by %d; page does not say it was refused", p.server)
	}
	b.clicks(3)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	log := d.log.String()
	for _, want := range []string{"server 2  stopped", "POST /cart/add", "GET  /", "proxy     shutting down"} {
		if !strings.Contains(log, want) {
			t.Errorf("demo log lacks %q:\n%s", want, log)
		}
	}
}

// TestDemoSticky: one browser stays on one server until it stops, then
// fails over to a survivor that reloads the session from storage.
func TestDemoSticky(t *testing.T) {
	d := startDemo(t, false)
	b := newBrowser(t, d.url)

	first := b.view().server
	seen := b.clicks(7)
	if len(seen) != 1 || !seen[first] {
		t.Fatalf("sticky mode: answers from %v; want all from server %d", seen, first)
	}
	if p := b.add("bread"); p.server != first || b.redirectedBy != first {
		t.Errorf("sticky mode: cart POST answered by server %d, page by %d; want both by %d", b.redirectedBy, p.server, first)
	}

	// Stop the browser's server: it flushes, the proxy fails over, and the
	// survivor reloads the session from storage with nothing lost.
	p := b.control("stop", first)
	second := p.server
	if second == first {
		t.Fatalf("server %d answered after it was stopped", first)
	}
	if seen = b.clicks(7); len(seen) != 1 || !seen[second] {
		t.Fatalf("after failover: answers from %v; want all from server %d", seen, second)
	}

	// Restarting the first server does not move the browser back; stopping
	// the second moves it on again.
	b.control("start", first)
	if seen = b.clicks(3); len(seen) != 1 || !seen[second] {
		t.Fatalf("after restarting server %d: answers from %v; want all from server %d", first, seen, second)
	}
	p = b.control("stop", second)
	if p.server == second {
		t.Fatalf("server %d answered after it was stopped", second)
	}
	b.clicks(5)
	if !strings.Contains(d.log.String(), "a browser moves to server") {
		t.Errorf("demo log does not record the failover:\n%s", d.log.String())
	}
}

// TestDemoShutdown cancels the demo as Ctrl-C does, right after a change in
// sticky mode (still in the write-behind queue): runDemo returns nil, the
// change is in storage, and the bolt file is closed. TestMain checks that
// no goroutine is left.
func TestDemoShutdown(t *testing.T) {
	d := startDemo(t, false)
	b := newBrowser(t, d.url)
	b.view()
	b.add("cheese")
	b.add("cheese")
	start := time.Now()
	if err := d.stop(); err != nil {
		t.Fatalf("runDemo after cancellation: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown took %v", el)
	}
	b.transport.CloseIdleConnections()
	if files := bolt.OpenFiles(); len(files) != 0 {
		t.Errorf("bolt files still open after the demo: %v", files)
	}
	var id string
	u, _ := url.Parse(d.url)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "session" {
			id = c.Value
		}
	}
	if id == "" {
		t.Fatal("no session cookie in the jar")
	}
	out, _ := mustRun(t, 0, "show", "-values", boltURL(d.path), id)
	if !strings.Contains(out, `{"cheese":2}`) || !strings.Contains(out, "visits") {
		t.Errorf("session not flushed at shutdown; show says:\n%s", out)
	}
}

// TestDemoBadConfig: bad settings fail with clear errors.
func TestDemoBadConfig(t *testing.T) {
	ctx := context.Background()
	if err := runDemo(ctx, demoConfig{Servers: 12}, nil); err == nil || !strings.Contains(err.Error(), "1 to 9") {
		t.Errorf("12 servers: %v", err)
	}
	if err := runDemo(ctx, demoConfig{Addr: "127.0.0.1:0", Storage: "nosuch://x"}, nil); err == nil || !strings.Contains(err.Error(), "no driver") {
		t.Errorf("unknown scheme: %v", err)
	}
	// The port is taken: a clear error naming -addr.
	d := startDemo(t, true)
	u, _ := url.Parse(d.url)
	err := runDemo(ctx, demoConfig{Addr: u.Host, Storage: boltURL(filepath.Join(t.TempDir(), "x.db"))}, nil)
	if err == nil || !strings.Contains(err.Error(), "-addr") {
		t.Errorf("port in use: %v", err)
	}
}

// TestDemoMetrics: the demo serves every running server's metrics at
// /metrics, labelled with the server's number.
func TestDemoMetrics(t *testing.T) {
	d := startDemo(t, true)
	b := newBrowser(t, d.url)
	b.clicks(3) // round-robin: one request per server
	resp, err := http.Get(d.url + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`sessions_resident{mode="cluster",server="1",`,
		`sessions_requests_total{mode="cluster",outcome="storage",server="3",`,
		`sessions_storage_call_duration_seconds_count{mode="cluster",op="get",server="2",`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no line starting %s", want)
		}
	}
}
