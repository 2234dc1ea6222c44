package sessions_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/sessionstorage/sessions/driver"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/drivers/memory"
	"github.com/sessionstorage/sessions/serializer"
)

func TestLoadConfigWithTwoNamedStoragesAndEnv(t *testing.T) {
	t.Setenv("SESSIONS_TEST_SECRET", "s3cr$t")
	path := filepath.Join(t.TempDir(), "sessions.toml")
	os.WriteFile(path, []byte(`
storage = "primary"
cluster = true
timeout = "45m"
idle_evict = "2m"
write_behind = "50ms"
codec = "json"
key_prefix = "app:"

[cookie]
name = "sid"
same_site = "strict"
persist = true

[storages.primary]
url = "memory://"
options = { sweep = "250ms", token = "${SESSIONS_TEST_SECRET}" }

[storages.archive]
url = "redis://:${SESSIONS_TEST_SECRET}@127.0.0.1:6379/3"
`), 0o600)
	cfg, err := sessions.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage != "primary" || !cfg.Cluster || cfg.Timeout != 45*time.Minute || cfg.IdleEvict != 2*time.Minute ||
		cfg.WriteBehind != 50*time.Millisecond || cfg.Codec != serializer.JSON || cfg.KeyPrefix != "app:" {
		t.Fatalf("settings not loaded: %+v", cfg)
	}
	if cfg.Cookie.Name != "sid" || cfg.Cookie.SameSite != http.SameSiteStrictMode || !cfg.Cookie.Persist {
		t.Fatalf("cookie not loaded: %+v", cfg.Cookie)
	}
	if len(cfg.Storages) != 2 {
		t.Fatalf("storages: %+v", cfg.Storages)
	}
	if got := cfg.Storages["archive"].URL; got != "redis://:s3cr$t@127.0.0.1:6379/3" {
		t.Fatalf("environment variable not expanded: %q", got)
	}
	if got := cfg.Storages["primary"].Options["token"]; got != "s3cr$t" {
		t.Fatalf("option not expanded: %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	os.Unsetenv("SESSIONS_TEST_UNSET")
	for name, tc := range map[string]struct{ text, want string }{
		"unknown key":        {`timout = "1m"`, "unknown setting timout"},
		"unknown nested key": {"[cookie]\nsamesite = \"lax\"", "unknown setting cookie.samesite"},
		"bad duration":       {`timeout = "soon"`, "soon"},
		"unset variable":     {"[storages.a]\nurl = \"redis://${SESSIONS_TEST_UNSET}@h\"", "environment variable SESSIONS_TEST_UNSET is not set"},
		"stray dollar":       {"[storages.a]\nurl = \"redis://$HOME@h\"", "storages.a.url: a $ must start ${NAME}"},
		"missing url":        {"[storages.a]\noptions = { x = \"1\" }", "storages.a: url is required"},
		"bad codec":          {`codec = "xml"`, `codec "xml"`},
		"bad same_site":      {"[cookie]\nsame_site = \"sometimes\"", "cookie.same_site"},
		"not toml":           {`storage = `, "sessions: config"},
	} {
		_, err := sessions.ParseConfig(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tc.want)
		}
	}
	if _, err := sessions.LoadConfig(filepath.Join(t.TempDir(), "absent.toml")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestStorageResolutionErrors(t *testing.T) {
	local := map[string]sessions.StorageConfig{
		"main":   {URL: "memory://"},
		"broken": {URL: "memory://", Options: map[string]string{"sweep": "never"}},
		"typo":   {URL: "redis-cluster://h:1"},
		"bad":    {URL: "::nonsense"},
	}
	for name, tc := range map[string]struct {
		storage string
		want    []string
	}{
		"unknown name":   {"mian", []string{`unknown storage "mian"`, "defined storages: bad, broken, main, memory, ", ", typo"}},
		"unknown scheme": {"typo", []string{`no driver for scheme "redis-cluster"`, "forgotten import", "registered schemes:", "memory"}},
		"bad option":     {"broken", []string{`storage "broken"`, `sweep="never"`}},
		"malformed URL":  {"bad", []string{`storage "bad"`, "not a valid URL"}},
		"password kept out of errors": {"nope://user:hunter2@h/?password=hunter3",
			[]string{`no driver for scheme "nope"`}},
	} {
		_, err := sessions.New(sessions.Config{Storage: tc.storage, Storages: local})
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter") {
			t.Errorf("%s: error %q shows a password", name, err)
		}
	}
}

func TestNamedStoragesSelectWhereSessionsLive(t *testing.T) {
	shared := memory.New(memory.Options{})
	defer shared.Close()
	// Process-wide names: unique per run, so that -count=N works.
	suffix := randomID()[:8]
	sharedName, definedName := "test-shared-"+suffix, "test-defined-"+suffix
	sessions.RegisterStore(sharedName, shared)
	sessions.DefineStorage(definedName, sessions.StorageConfig{URL: "memory://", Options: map[string]string{"sweep": "1s"}})
	for _, name := range []string{sharedName, definedName, "memory", "memory://"} {
		logs := &logBuffer{}
		m, err := sessions.New(sessions.Config{Storage: name, Logger: slogTo(logs)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := newClient(t)
		c.must(m.Handler(testApp()), "/set?k=a&v=1", 200)
		must(t, m.Close(context.Background()))
		if name == sharedName && shared.Len() != 1 {
			t.Fatalf("a registered store was not used: %d entries", shared.Len())
		}
		if !strings.Contains(logs.String(), "storage="+name) && !strings.Contains(logs.String(), "storage=\""+name) {
			t.Errorf("start-up log does not say where sessions live:\n%s", logs)
		}
	}
	// A registered store is the caller's: Close left it usable.
	if _, err := shared.Get(context.Background(), "x"); err == nil {
		t.Fatal("unexpected entry")
	}
	for _, fn := range []func(){
		func() { sessions.RegisterStore(sharedName, shared) },
		func() { sessions.DefineStorage(sharedName, sessions.StorageConfig{URL: "memory://"}) },
		func() { sessions.DefineStorage("redis://x", sessions.StorageConfig{URL: "memory://"}) },
		func() { driver.Register("memory", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("registering a name twice (or a URL as a name) did not panic")
				}
			}()
			fn()
		}()
	}
}

func TestStorageKeyPrefixOption(t *testing.T) {
	local := map[string]sessions.StorageConfig{"app": {URL: "memory://", Options: map[string]string{"key_prefix": "app1:"}}}
	logs := &logBuffer{}
	m, err := sessions.New(sessions.Config{Storage: "app", Storages: local, Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if !strings.Contains(logs.String(), "key_prefix=app1:") {
		t.Fatalf("the storage's key_prefix did not become the Manager's:\n%s", logs)
	}
	// An explicit Config.KeyPrefix wins.
	logs2 := &logBuffer{}
	m2, err := sessions.New(sessions.Config{Storage: "memory://?key_prefix=x:", KeyPrefix: "mine:", Logger: slogTo(logs2)})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if !strings.Contains(logs2.String(), "key_prefix=mine:") {
		t.Fatalf("Config.KeyPrefix did not win:\n%s", logs2)
	}
	if _, err := sessions.New(sessions.Config{Storage: "memory://?key_prefix="}); err == nil || !strings.Contains(err.Error(), "key_prefix must not be empty") {
		t.Fatalf("empty key_prefix: %v", err)
	}
}

// TestConfigEveryStringExpands writes a config file that sets every field
// of sessions.Config that a file can set, each string value through
// ${NAME}, and checks that each arrives expanded. The fields are found by
// reflection over Config (TOML key: the field name in snake_case), so a
// field added later is covered, or fails here until the loader (and, if
// it is not a string, this test) knows it.
func TestConfigEveryStringExpands(t *testing.T) {
	// Set in code, not from a file.
	notInFile := map[string]bool{"Store": true, "OnSessionStart": true, "OnSessionEnd": true, "Logger": true, "ErrorHandler": true, "Observer": true, "TracerProvider": true}
	key := []byte("0123456789abcdef0123456789abcdef")
	env := map[string]string{
		"CFG_STR":  "from-env",
		"CFG_DUR":  "7m",
		"CFG_KEY":  base64.StdEncoding.EncodeToString(key),
		"CFG_CODE": "json",
		"CFG_SAME": "strict",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	snake := func(name string) string {
		var b strings.Builder
		for i, r := range name {
			if unicode.IsUpper(r) {
				if i > 0 && !unicode.IsUpper(rune(name[i-1])) {
					b.WriteByte('_')
				}
				r = unicode.ToLower(r)
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	type check struct {
		key  string
		want func(got reflect.Value) bool
	}
	var top, cookie []string
	var checks []check
	durType := reflect.TypeFor[time.Duration]()
	// line returns the TOML line for a field and records what to expect.
	line := func(where string, f reflect.StructField) string {
		k := snake(f.Name)
		name := where + k
		switch {
		case f.Type == durType:
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.Int() == int64(7*time.Minute) }})
			return k + ` = "${CFG_DUR}"`
		case f.Type == reflect.TypeFor[serializer.Codec]():
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.Interface() == serializer.JSON }})
			return k + ` = "${CFG_CODE}"`
		case f.Type == reflect.TypeFor[http.SameSite]():
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.Int() == int64(http.SameSiteStrictMode) }})
			return k + ` = "${CFG_SAME}"`
		case f.Type == reflect.TypeFor[[][]byte]():
			checks = append(checks, check{name, func(g reflect.Value) bool {
				return g.Len() == 1 && string(g.Index(0).Bytes()) == string(key)
			}})
			return k + ` = ["${CFG_KEY}"]`
		case f.Type.Kind() == reflect.String:
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.String() == "x-from-env/" }})
			return k + ` = "x-${CFG_STR}/"`
		case f.Type.Kind() == reflect.Bool:
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.Bool() }})
			return k + " = true"
		case f.Type.Kind() == reflect.Int:
			checks = append(checks, check{name, func(g reflect.Value) bool { return g.Int() == 7777 }})
			return k + " = 7777"
		}
		t.Fatalf("Config field %s%s of type %s: teach this test (and ParseConfig) how a file sets it, or add it to notInFile", where, f.Name, f.Type)
		return ""
	}
	ct := reflect.TypeFor[sessions.Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		switch {
		case notInFile[f.Name]:
		case f.Name == "Cookie":
			for j := range f.Type.NumField() {
				cookie = append(cookie, line("cookie.", f.Type.Field(j)))
			}
		case f.Name == "Storages":
			// Checked below: [storages.NAME] url and options.
		default:
			top = append(top, line("", f))
		}
	}
	// storage expands to "x-from-env/", the storage defined here.
	text := strings.Join(top, "\n") + "\n\n[cookie]\n" + strings.Join(cookie, "\n") + `

[storages."x-from-env/"]
url = "memory://?key_prefix=${CFG_STR}"
options = { sweep = "${CFG_DUR}", other = "$${CFG_STR}" }
`
	cfg, err := sessions.ParseConfig(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	cv := reflect.ValueOf(cfg)
	for _, c := range checks {
		v := cv
		for _, part := range strings.Split(c.key, ".") {
			for j := range v.NumField() {
				if snake(v.Type().Field(j).Name) == part {
					v = v.Field(j)
					break
				}
			}
		}
		if !c.want(v) {
			t.Errorf("%s = %v: not the expanded value", c.key, v)
		}
	}
	sc := cfg.Storages["x-from-env/"]
	if sc.URL != "memory://?key_prefix=from-env" || sc.Options["sweep"] != "7m" || sc.Options["other"] != "${CFG_STR}" {
		t.Errorf("storage = %+v", sc)
	}
	if len(checks) < 15 {
		t.Errorf("only %d fields checked", len(checks))
	}

	// The case from the issue: a cookie path from the environment.
	t.Setenv("BASE", "/app")
	cfg, err = sessions.ParseConfig("[cookie]\npath = \"${BASE}/\"")
	if err != nil || cfg.Cookie.Path != "/app/" {
		t.Errorf("cookie.path = %q, %v; want /app/", cfg.Cookie.Path, err)
	}
	// Errors name the setting, wherever it is.
	for text, want := range map[string]string{
		"[cookie]\nname = \"${CFG_UNSET_VAR}\"": "cookie.name: environment variable CFG_UNSET_VAR is not set",
		`idle_evict = "${CFG_STR}"`:             `idle_evict "from-env"`,
		`codec = "5$"`:                          "codec: a $ must start ${NAME}",
		`encryption_keys = ["a", "${X"]`:        "encryption_keys[1]: unterminated ${",
	} {
		_, err := sessions.ParseConfig(text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", text, err, want)
		}
	}
}

// "memory" takes options as "memory://" does, alone or in a named storage.
func TestMemoryStorageWithOptions(t *testing.T) {
	for _, cfg := range []sessions.Config{
		{Storage: "memory?sweep=2s"},
		{Storage: "m", Storages: map[string]sessions.StorageConfig{"m": {URL: "memory", Options: map[string]string{"sweep": "2s"}}}},
	} {
		m, err := sessions.New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg.Storage, err)
		}
		m.Close(context.Background())
	}
}
