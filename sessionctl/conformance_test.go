package sessionctl

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/internal/testservers"
)

func TestConformanceCommand(t *testing.T) {
	for name, url := range map[string]string{
		"bolt":      boltURL(filepath.Join(t.TempDir(), "c.db")),
		"redis":     testservers.SharedRedis(t).URL(),
		"memcached": testservers.SharedMemcached(t).URL(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, _ := mustRun(t, 0, "conformance", url)
			for _, want := range []string{"CHECK", "bytes", "pass", "session/cluster", "checks passed or do not apply"} {
				if !strings.Contains(out, want) {
					t.Errorf("conformance %s output lacks %q:\n%s", name, want, out)
				}
			}
			if name == "memcached" && !strings.Contains(out, "cap/list-keys") || strings.Contains(out, "FAIL") {
				t.Errorf("conformance %s:\n%s", name, out)
			}
		})
	}
	_, errOut := mustRun(t, 1, "conformance", "nosuch://host")
	if !strings.Contains(errOut, `no driver for scheme "nosuch"`) {
		t.Errorf("unknown scheme:\n%s", errOut)
	}
	mustRun(t, 2, "conformance")
}
