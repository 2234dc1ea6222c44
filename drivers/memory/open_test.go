package memory_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/internal/adapter"
)

// TestURLOptions: the memory:// URL (its opener is registered by the
// sessions package) accepts sweep and the library's key_prefix, and
// rejects anything else naming the option and the known ones.
func TestURLOptions(t *testing.T) {
	ctx := context.Background()
	for _, raw := range []string{"memory", "memory://", "memory://?sweep=2s", "memory://?key_prefix=app:&sweep=1s", "memory://?key_prefix=app:"} {
		st, err := adapter.Resolve(ctx, raw, nil)
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		st.Close()
	}
	for raw, want := range map[string][]string{
		"memory://?bogus=1":           {`unknown option "bogus"`, "known options: sweep", "key_prefix"},
		"memory://?sweep=1s&swep=2s":  {`unknown option "swep"`, "known options: sweep"},
		"memory://?sweep=fast":        {`sweep="fast"`},
		"memory://?sweep=-1s":         {`sweep="-1s"`},
		"memory://?sweep=1s&sweep=2s": {`"sweep" given 2 times`},
	} {
		st, err := adapter.Resolve(ctx, raw, nil)
		if err == nil {
			st.Close()
			t.Errorf("%s: opened", raw)
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", raw, err, w)
			}
		}
	}
}
