package sessionctl

import (
	"bytes"
	"html/template"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/sessionstorage/sessions"
)

// The demo's app: what each app server serves behind Manager.Handler. It
// is an ordinary sessions application; only the server table and the
// event list come from the demo around it.

// catalogue is what the demo's cart can hold.
var catalogue = []struct{ ID, Label string }{
	{"apple", "Apples"},
	{"bread", "Bread"},
	{"cheese", "Cheese"},
	{"coffee", "Coffee"},
}

// knownItem reports whether id is in the catalogue.
func knownItem(id string) bool {
	for _, it := range catalogue {
		if it.ID == id {
			return true
		}
	}
	return false
}

// Session keys of the demo app.
const (
	keyVisits = "visits" // int: pages seen
	keyCart   = "cart"   // map[string]int: item → quantity
)

// app returns the handler of app server n.
func (d *demo) app(n int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { d.page(w, r, n) })
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) { changeCart(w, r, +1) })
	mux.HandleFunc("POST /cart/remove", func(w http.ResponseWriter, r *http.Request) { changeCart(w, r, -1) })
	mux.HandleFunc("POST /session/end", func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Invalidate(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Demo-Server", strconv.Itoa(n))
		mux.ServeHTTP(w, r)
	})
}

// cart returns a copy of the session's cart, safe to modify: the value in
// the session may be shared with concurrent requests of the same user.
func cart(s *sessions.Session) map[string]int {
	c, _, _ := sessions.Get[map[string]int](s, keyCart)
	c = maps.Clone(c)
	if c == nil {
		c = map[string]int{}
	}
	return c
}

// changeCart adds or removes one of the form's item, then redirects to the
// page (POST, redirect, GET). In cluster mode the change is in storage
// before the redirect leaves, so the GET sees it on whichever server it
// lands.
func changeCart(w http.ResponseWriter, r *http.Request, delta int) {
	item := r.FormValue("item")
	if !knownItem(item) {
		http.Error(w, "unknown item "+strconv.Quote(item), http.StatusBadRequest)
		return
	}
	s := sessions.FromContext(r.Context())
	c := cart(s)
	c[item] = min(max(c[item]+delta, 0), 99)
	if c[item] == 0 {
		delete(c, item)
	}
	if err := s.Set(keyCart, c); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// pageData is what the page template shows.
type pageData struct {
	Server   int
	Hue      int
	Mode     string
	ModeHelp string
	Storage  string
	Visits   int
	ID       string // the first characters of the session ID
	Created  string
	Items    []pageItem
	Total    int
	Servers  []serverStatus
	Events   []string
}

// pageItem is one line of the page's cart.
type pageItem struct {
	ID, Label string
	Qty       int
}

// page counts a visit and shows the session.
func (d *demo) page(w http.ResponseWriter, r *http.Request, n int) {
	s := sessions.FromContext(r.Context())
	visits, _, _ := sessions.Get[int](s, keyVisits)
	visits++
	if err := s.Set(keyVisits, visits); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	data := pageData{
		Server:  n,
		Hue:     []int{210, 30, 140, 280, 0, 180, 60, 320, 100}[(n-1)%9],
		Mode:    d.mode(),
		Storage: driver.RedactURL(d.cfg.Storage),
		Visits:  visits,
		ID:      shortID(s.ID()),
		Created: s.CreatedAt().Format(time.TimeOnly),
	}
	if d.cfg.Cluster {
		data.ModeHelp = "Cluster mode: every request reads the session from storage, and a change is written before the response leaves, so the proxy can send each click to the next server — the redirect after 'add' included."
	} else {
		data.ModeHelp = "Sticky mode: the proxy keeps your browser on one server (cookie " + routeCookie + "), which serves the session from memory and writes changes behind. Stop that server: it flushes on the way down, and the proxy moves you to a survivor, which reloads the session from storage."
	}
	c := cart(s)
	for _, it := range catalogue {
		data.Items = append(data.Items, pageItem{ID: it.ID, Label: it.Label, Qty: c[it.ID]})
		data.Total += c[it.ID]
	}
	data.Servers, data.Events = d.status(n)
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// shortID shows the start of a session ID, enough to tell sessions apart.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// pageTemplate is the demo's page: plain HTML and CSS, no external assets.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>server {{.Server}} · sessions demo</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.5rem 0 .4rem; }
.muted { color: #656d76; font-size: .9em; }
.who { margin: 1rem 0; padding: .7rem 1rem; border-radius: 6px; font-size: 1.1rem;
       background: hsl({{.Hue}} 80% 94%); border-left: 6px solid hsl({{.Hue}} 60% 45%); }
table { border-collapse: collapse; width: 100%; }
td { padding: .3rem .5rem; border-bottom: 1px solid #eaeef2; }
td.num { text-align: right; width: 3rem; font-variant-numeric: tabular-nums; }
td.act { text-align: right; }
form { display: inline; margin: 0; }
button { font: inherit; font-size: .9em; padding: .1rem .7rem; border: 1px solid #d0d7de; border-radius: 5px; background: #f6f8fa; cursor: pointer; }
button:hover { background: #eaeef2; }
.up { color: #1a7f37; } .down { color: #cf222e; }
code { font-size: .9em; }
ul.events { padding-left: 1.2rem; font-size: .9em; color: #424a53; }
</style>
</head>
<body>
<h1>sessions demo</h1>
<div class="muted">{{len .Servers}} app servers behind a proxy · {{.Mode}} mode · storage <code>{{.Storage}}</code></div>

<p class="who">Answered by <strong id="answered-by" data-server="{{.Server}}">server {{.Server}}</strong>
· visit <strong id="visits" data-visits="{{.Visits}}">{{.Visits}}</strong> of this session</p>

<h2>Cart ({{.Total}})</h2>
<table>
{{- range .Items}}
<tr data-item="{{.ID}}" data-qty="{{.Qty}}"><td>{{.Label}}</td><td class="num">{{.Qty}}</td><td class="act">
<form method="post" action="/cart/add"><input type="hidden" name="item" value="{{.ID}}"><button>add</button></form>
{{if .Qty}}<form method="post" action="/cart/remove"><input type="hidden" name="item" value="{{.ID}}"><button>remove</button></form>{{end}}
</td></tr>
{{- end}}
</table>

<h2>Servers</h2>
<table>
{{- range .Servers}}
<tr><td>server {{.N}}{{if .This}} <span class="muted">(answered this page)</span>{{end}}</td>
<td class="{{if .Up}}up{{else}}down{{end}}">{{if .Up}}running{{else}}stopped{{end}}</td>
<td><code>{{.Addr}}</code></td><td class="act">
{{- if .Up}}<form method="post" action="/demo/stop?server={{.N}}"><button>stop</button></form>
{{- else}}<form method="post" action="/demo/start?server={{.N}}"><button>start</button></form>{{end}}</td></tr>
{{- end}}
</table>
<p class="muted">{{.ModeHelp}}</p>

<h2>Session</h2>
<div>ID <code>{{.ID}}…</code> · created {{.Created}}
<form method="post" action="/session/end"><button>end session</button></form>
<a href="/">reload</a></div>
{{if .Events}}
<h2>What happened</h2>
<ul class="events">{{range .Events}}<li>{{.}}</li>{{end}}</ul>
{{end}}
</body>
</html>
`))
