package sessionctl

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/testservers"
	"github.com/sessionstorage/sessions/serializer"
)

// fixture is a storage populated for the operator commands: sessions
// written by a real Manager, plus entries written directly.
type fixture struct {
	url        string
	ids        []string // sessions written by the Manager: user-1, user-2, user-3
	expiredKey string   // a session past its deadline (JSON codec)
	corruptKey string   // an entry with a bad checksum
	sealedKey  string   // a session encrypted at rest: not corrupt
	otherKey   string   // a key outside the prefix: never touched
}

// quietLogger discards the library's logs.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newID returns a fresh random session ID.
func newID(t *testing.T) string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeSessions creates n sessions through Manager.Handler (sticky mode,
// so Close must flush them) and returns their IDs.
func writeSessions(t *testing.T, cfg sessions.Config, n int) []string {
	t.Helper()
	cfg.Cookie.Insecure = true
	cfg.Logger = quietLogger()
	m, err := sessions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		i := len(r.URL.Query().Get("n"))
		for _, err := range []error{
			s.Set("user", fmt.Sprintf("user-%d", i)),
			s.Set("visits", i*10),
			s.Set("cart", map[string]int{"apple": i}),
		} {
			if err != nil {
				t.Error(err)
			}
		}
	}))
	var ids []string
	for i := 1; i <= n; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/?n="+strings.Repeat("x", i), nil))
		for _, c := range rec.Result().Cookies() {
			if c.Name == "session" {
				id, _ := sessions.CookieID(c.Value)
				ids = append(ids, id)
			}
		}
	}
	if len(ids) != n {
		t.Fatalf("got %d session cookies, want %d", len(ids), n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// populate fills the storage at url with three sessions through a
// Manager, an expired session, a corrupt entry and a key outside the
// prefix.
func populate(t *testing.T, url string) *fixture {
	t.Helper()
	f := &fixture{url: url}
	f.ids = writeSessions(t, sessions.Config{Storage: url}, 3)

	ctx := context.Background()
	storage, err := adapter.Resolve(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.Close()
	st := storage.Store()
	now := time.Now()
	expired := serializer.Envelope{
		Codec: serializer.JSONID, Created: now.Add(-2 * time.Hour).UnixMilli(),
		LastAccess: now.Add(-time.Hour).UnixMilli(), Expires: now.Add(-30 * time.Minute).UnixMilli(),
		Revision: 3, Values: []serializer.Field{{Key: "visits", Value: []byte("7")}},
	}
	f.expiredKey = adapter.Key(defaultPrefix, newID(t))
	f.corruptKey = adapter.Key(defaultPrefix, newID(t))
	f.sealedKey = adapter.Key(defaultPrefix, newID(t))
	f.otherKey = "other:" + newID(t)
	bad := expired.Marshal()
	bad[len(bad)-1] ^= 0xff
	sealer, err := serializer.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := sealer.Seal(expired.Marshal(), []byte(f.sealedKey))
	for key, value := range map[string][]byte{f.expiredKey: expired.Marshal(), f.corruptKey: bad, f.sealedKey: sealed, f.otherKey: []byte("not ours")} {
		if err := st.Set(ctx, key, value, store.WithExpiration(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// count counts the matches of re in s.
func count(re, s string) int { return len(regexp.MustCompile(re).FindAllString(s, -1)) }

// testOps runs every operator command against a populated storage.
func testOps(t *testing.T, url string) {
	f := populate(t, url)
	key1 := adapter.Key(defaultPrefix, f.ids[0])

	// ls: every session, the expired and corrupt ones marked; totals.
	out, _ := mustRun(t, 0, "ls", url)
	for _, id := range f.ids {
		if !strings.Contains(out, adapter.Key(defaultPrefix, id)) {
			t.Errorf("ls lacks session %s:\n%s", id, out)
		}
	}
	if !regexp.MustCompile(regexp.QuoteMeta(f.expiredKey) + `.*expired\n`).MatchString(out) {
		t.Errorf("ls does not mark %s expired:\n%s", f.expiredKey, out)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(f.corruptKey) + `.*corrupt: serializer: envelope checksum mismatch`).MatchString(out) {
		t.Errorf("ls does not mark %s corrupt:\n%s", f.corruptKey, out)
	}
	if strings.Contains(out, "other:") {
		t.Errorf("ls lists a key outside the prefix:\n%s", out)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(f.sealedKey) + `.*encrypted`).MatchString(out) {
		t.Errorf("ls does not mark %s encrypted:\n%s", f.sealedKey, out)
	}
	if !strings.Contains(out, `6 entries under prefix "sess:"`) || !strings.Contains(out, "3 live, 1 expired, 1 encrypted, 1 corrupt") {
		t.Errorf("ls totals wrong:\n%s", out)
	}

	// show: by ID and by key; values only with -values.
	out, _ = mustRun(t, 0, "show", url, f.ids[0])
	for _, want := range []string{"key          " + key1, "revision", "codec        msgpack (id 1)", "3 values", "cart", "user", "visits"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "user-1") {
		t.Errorf("show prints values without -values:\n%s", out)
	}
	// A sticky-mode cookie value, with the session's version after the ID.
	if out, _ = mustRun(t, 0, "show", url, f.ids[0]+".1k.3f9a2"); !strings.Contains(out, "key          "+key1) {
		t.Errorf("show of a cookie value with a version:\n%s", out)
	}
	out, _ = mustRun(t, 0, "show", "-values", url, key1)
	for _, want := range []string{`"user-1"`, `{"apple":1}`, "  10\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show -values lacks %q:\n%s", want, out)
		}
	}
	out, _ = mustRun(t, 0, "show", "-values", url, f.expiredKey)
	if !strings.Contains(out, "EXPIRED") || !strings.Contains(out, "codec        json") || !strings.Contains(out, "  7\n") {
		t.Errorf("show of the expired session:\n%s", out)
	}
	_, errOut := mustRun(t, 1, "show", url, f.corruptKey)
	if !strings.Contains(errOut, "not a readable session: serializer: envelope checksum mismatch") {
		t.Errorf("show of a corrupt entry:\n%s", errOut)
	}
	out, _ = mustRun(t, 0, "show", url, f.sealedKey)
	if !strings.Contains(out, "encrypted    yes") {
		t.Errorf("show of an encrypted entry:\n%s", out)
	}
	_, errOut = mustRun(t, 1, "show", url, newID(t))
	if !strings.Contains(errOut, "no entry") {
		t.Errorf("show of a missing session:\n%s", errOut)
	}

	// stats.
	out, _ = mustRun(t, 0, "stats", url)
	for _, want := range []string{"entries      6\n", "sessions     3 live, 1 expired\n", "encrypted    1",
		"corrupt      1  (envelope checksum mismatch 1)", "codecs       msgpack 3, json 1", "largest", "oldest"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}

	// purge: refuses without a selection; -dry-run deletes nothing.
	_, errOut = mustRun(t, 2, "purge", url)
	if !strings.Contains(errOut, "refusing") {
		t.Errorf("bare purge:\n%s", errOut)
	}
	out, _ = mustRun(t, 0, "purge", "-expired", "-dry-run", url)
	if !strings.Contains(out, "1 would delete (1 expired)") {
		t.Errorf("purge -dry-run:\n%s", out)
	}
	out, _ = mustRun(t, 0, "purge", "--expired", url)
	if !strings.Contains(out, "6 entries checked, 1 deleted (1 expired), 5 kept") || !strings.Contains(out, "1 encrypted entry kept") {
		t.Errorf("purge -expired:\n%s", out)
	}
	out, _ = mustRun(t, 0, "ls", url)
	if strings.Contains(out, f.expiredKey) || !strings.Contains(out, f.corruptKey) {
		t.Errorf("after purge -expired:\n%s", out)
	}
	old := progressEvery
	progressEvery = 0
	out, errOut = mustRun(t, 0, "purge", "-expired", "-corrupt", url)
	progressEvery = old
	if !strings.Contains(out, "5 entries checked, 1 deleted (0 expired, 1 corrupt), 4 kept") {
		t.Errorf("purge -expired -corrupt:\n%s", out)
	}
	if count(`purge: \d+ entries checked`, errOut) != 5 {
		t.Errorf("purge progress (every key with progressEvery 0):\n%s", errOut)
	}

	// The sessions left are intact: a Manager serves them.
	checkSession(t, url, f.ids[1], 20)

	// rm: by ID and by key, idempotent.
	key2 := adapter.Key(defaultPrefix, f.ids[1])
	out, _ = mustRun(t, 0, "rm", url, f.ids[0], key2)
	if count(`(?m)^deleted `, out) != 2 {
		t.Errorf("rm:\n%s", out)
	}
	out, _ = mustRun(t, 0, "rm", url, f.ids[0], key2)
	if count(`(?m)^not found `, out) != 2 {
		t.Errorf("rm again:\n%s", out)
	}
	out, _ = mustRun(t, 0, "ls", url)
	if !strings.Contains(out, "2 entries under") {
		t.Errorf("after rm:\n%s", out)
	}

	// purge -all leaves keys outside the prefix alone.
	out, _ = mustRun(t, 0, "purge", "-all", url)
	if !strings.Contains(out, "2 deleted (all)") {
		t.Errorf("purge -all:\n%s", out)
	}
	out, _ = mustRun(t, 0, "ls", "-prefix", "other:", url)
	if !strings.Contains(out, f.otherKey) {
		t.Errorf("purge -all touched a key outside the prefix:\n%s", out)
	}
	_, errOut = mustRun(t, 2, "purge", "-all", "-prefix", "", url)
	if !strings.Contains(errOut, "non-empty -prefix") {
		t.Errorf("purge -all with an empty prefix:\n%s", errOut)
	}
	mustRun(t, 0, "rm", "-prefix", "other:", url, f.otherKey)
}

// checkSession asks a new Manager on url for session id and checks its
// visits value.
func checkSession(t *testing.T, url, id string, visits int) {
	t.Helper()
	m, err := sessions.New(sessions.Config{Storage: url, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var got int
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _, _ = sessions.Get[int](sessions.FromContext(r.Context()), "visits")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: id})
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != visits {
		t.Errorf("session %s: visits %d, want %d", id, got, visits)
	}
}

// TestOpsBolt runs the operator commands on a bolt file.
func TestOpsBolt(t *testing.T) {
	testOps(t, boltURL(filepath.Join(t.TempDir(), "ops.db")))
}

// TestOpsRedis runs the operator commands on a real redis-server.
func TestOpsRedis(t *testing.T) {
	testOps(t, testservers.SharedRedis(t).URL())
}

// TestOpsMemcached: memcached cannot list keys; the commands that need a
// listing say so, and show and rm still work.
func TestOpsMemcached(t *testing.T) {
	url := testservers.SharedMemcached(t).URL()
	prefix := "sessionctl-" + newID(t)[:10] + ":" // the server is shared
	ids := writeSessions(t, sessions.Config{Storage: url, KeyPrefix: prefix}, 1)
	for _, cmd := range []string{"ls", "stats"} {
		_, errOut := mustRun(t, 1, cmd, "-prefix", prefix, url)
		if !strings.Contains(errOut, "cannot list keys") || !strings.Contains(errOut, "memcached store") {
			t.Errorf("%s on memcached:\n%s", cmd, errOut)
		}
	}
	_, errOut := mustRun(t, 1, "purge", "-expired", "-prefix", prefix, url)
	if !strings.Contains(errOut, "cannot list keys") {
		t.Errorf("purge on memcached:\n%s", errOut)
	}
	out, _ := mustRun(t, 0, "show", "-values", "-prefix", prefix, url, ids[0])
	if !strings.Contains(out, `"user-1"`) {
		t.Errorf("show on memcached:\n%s", out)
	}
	out, _ = mustRun(t, 0, "rm", "-prefix", prefix, url, ids[0])
	if !strings.Contains(out, "deleted") {
		t.Errorf("rm on memcached:\n%s", out)
	}
	mustRun(t, 1, "show", "-prefix", prefix, url, ids[0])
}

// TestOpsConfig names a storage from a config file, whose key_prefix and
// options (here a bolt bucket) apply.
func TestOpsConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.toml")
	conf := fmt.Sprintf(`storage = "main"
key_prefix = "app:"

[storages.main]
url = %q
options = { bucket = "web" }
`, boltURL(filepath.Join(dir, "app.db")))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sessions.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := writeSessions(t, cfg, 2)
	out, _ := mustRun(t, 0, "ls", "-config", path, "main")
	if !strings.Contains(out, adapter.Key("app:", ids[0])) || !strings.Contains(out, "2 entries under prefix \"app:\"") {
		t.Errorf("ls -config main:\n%s", out)
	}
	out, _ = mustRun(t, 0, "show", "-values", "-config", path, "main", ids[1])
	if !strings.Contains(out, `"user-2"`) {
		t.Errorf("show -config main:\n%s", out)
	}
	// Without the bucket option, the same file holds nothing.
	out, _ = mustRun(t, 0, "ls", "-prefix", "app:", boltURL(filepath.Join(dir, "app.db")))
	if !strings.Contains(out, "0 entries") {
		t.Errorf("ls of the default bucket:\n%s", out)
	}
	_, errOut := mustRun(t, 1, "ls", "-config", path, "nosuch")
	if !strings.Contains(errOut, `defines no storage "nosuch" (it defines: main)`) {
		t.Errorf("unknown name:\n%s", errOut)
	}
	_, errOut = mustRun(t, 1, "ls", "-config", filepath.Join(dir, "missing.toml"), "main")
	if !strings.Contains(errOut, "missing.toml") {
		t.Errorf("missing config file:\n%s", errOut)
	}
}

// TestOpsBadInput: clear errors, no panics.
func TestOpsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", "memory"}, "in-process storage"},
		{[]string{"stats", "memory://"}, "in-process storage"},
		{[]string{"ls", "main"}, "not a URL"},
		{[]string{"ls", "nosuch://host"}, "no driver for scheme"},
		{[]string{"show", "bolt:///nonexistent-dir/x.db", "abc"}, "directory does not exist"},
		{[]string{"rm", "redis://127.0.0.1:1/0?nosuch=1", "abc"}, "nosuch"},
	} {
		code, _, errOut := runArgs(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("sessionctl %s: exit %d, stderr %q; want an error containing %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	// Garbage and lookalike IDs are looked up as keys, harmlessly.
	url := boltURL(filepath.Join(t.TempDir(), "x.db"))
	for _, arg := range []string{"", "x", strings.Repeat("A", 43), strings.Repeat("é", 30), "sess:"} {
		code, _, errOut := runArgs("show", url, arg)
		if code != 1 || !strings.Contains(errOut, "sessionctl show:") {
			t.Errorf("show %q: exit %d, %s", arg, code, errOut)
		}
	}
}

// TestOpsConfigEncrypted: with the config file's encryption keys, show and
// ls open sealed sessions; without them, entries are only marked encrypted.
func TestOpsConfigEncrypted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.toml")
	conf := fmt.Sprintf(`storage = "main"
encryption_keys = ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]

[storages.main]
url = %q
`, boltURL(filepath.Join(dir, "app.db")))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sessions.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := writeSessions(t, cfg, 1)
	out, _ := mustRun(t, 0, "show", "-values", "-config", path, "main", ids[0])
	if !strings.Contains(out, `"user-1"`) {
		t.Errorf("show with the config's keys did not open the session:\n%s", out)
	}
	out, _ = mustRun(t, 0, "ls", boltURL(filepath.Join(dir, "app.db")))
	if !strings.Contains(out, "encrypted") {
		t.Errorf("ls without keys should mark the entry encrypted:\n%s", out)
	}
}

// TestOpsStorageKeyPrefix: a storage URL's key_prefix option is the
// default prefix, for the Manager and for sessionctl alike.
func TestOpsStorageKeyPrefix(t *testing.T) {
	url := boltURL(filepath.Join(t.TempDir(), "app.db")) + "?key_prefix=shop:"
	ids := writeSessions(t, sessions.Config{Storage: url}, 2)
	out, _ := mustRun(t, 0, "ls", url)
	if !strings.Contains(out, adapter.Key("shop:", ids[0])) || !strings.Contains(out, `2 entries under prefix "shop:"`) {
		t.Errorf("ls with the storage's key_prefix:\n%s", out)
	}
}
