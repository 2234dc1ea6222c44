package sessions_test

import (
	"strings"
	"testing"

	"github.com/sessionstorage/sessions"
)

// FuzzParseConfig: whatever the text, ParseConfig never panics; it returns
// a Config or an error that says it is the config's ("sessions: config:")
// and, for ${NAME} of a set variable, never complains that it is unset.
func FuzzParseConfig(f *testing.F) {
	f.Setenv("SESSIONS_FUZZ_PW", "s3cr3tPW")
	f.Setenv("SESSIONS_FUZZ_TIMEOUT", "45m")
	f.Setenv("SESSIONS_FUZZ_EMPTY", "")
	for _, s := range []string{
		"",
		`storage = "primary"
cluster = true
timeout = "${SESSIONS_FUZZ_TIMEOUT}"
idle_evict = "2m"
write_behind = "50ms"
storage_timeout = "1s"
codec = "json"
key_prefix = "app:"
max_session_size = 65536
max_key_length = 128
encryption_keys = ["MDEyMzQ1Njc4OWFiY2RlZg=="]
require_storage_at_start = true

[cookie]
name = "sid"
path = "/"
domain = "example.com"
same_site = "strict"
insecure = false
allow_script = false
persist = true

[storages.primary]
url = "memory://"
options = { sweep = "250ms", token = "${SESSIONS_FUZZ_PW}" }

[storages.archive]
url = "redis://:${SESSIONS_FUZZ_PW}@127.0.0.1:6379/3"
`,
		`timout = "1m"`,
		"[cookie]\nsamesite = \"lax\"",
		`timeout = "soon"`,
		"[storages.a]\nurl = \"redis://${SESSIONS_FUZZ_UNSET}@h\"",
		"[storages.a]\nurl = \"redis://$HOME@h\"",
		"[storages.a]\nurl = \"redis://${SESSIONS_FUZZ_PW\"",
		"[storages.a]\nurl = \"a$$b${SESSIONS_FUZZ_EMPTY}c\"",
		"[storages.a]\noptions = { x = \"1\" }",
		`codec = "xml"`,
		"[cookie]\nsame_site = \"sometimes\"",
		`storage = `,
		`encryption_keys = ["not base64!", "${SESSIONS_FUZZ_PW}"]`,
		`timeout = 5`,
		"timeout = \"1m\"\ntimeout = \"2m\"",
		"[storages]\na = 1",
		"\xff\xfe = 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		_, err := sessions.ParseConfig(text)
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "sessions: config: ") || len(msg) <= len("sessions: config: ") {
			t.Fatalf("error %q does not say it is the config's", msg)
		}
		for _, name := range []string{"SESSIONS_FUZZ_PW", "SESSIONS_FUZZ_TIMEOUT", "SESSIONS_FUZZ_EMPTY"} {
			if strings.Contains(msg, "environment variable "+name+" is not set") {
				t.Fatalf("error %q for a variable that is set", msg)
			}
		}
	})
}
