package sessionctl

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions/conformance"
)

// runConformance is the conformance subcommand.
func runConformance(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("conformance", "URL", `
Runs the driver conformance suite (the checks of package conformance)
against the live storage named by URL and prints a pass/fail table. Every
check works under its own random key prefix and removes nothing else, but
run it against a storage you can spare: the session checks write and
delete entries. The exit code is 1 if any check fails.`, stderr)
	resolution := fs.Duration("ttl-resolution", 0, "how late an entry may outlive its TTL; the expiry checks' waits scale with it (default 1s for memcached, 100ms otherwise, as in package conformance)")
	maxValue := fs.Int("max-value", 0, "largest value the storage must hold, in bytes (default 1000 KiB for memcached, 1 MiB otherwise)")
	verbose := fs.Bool("v", false, "print each failure's full messages")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	raw := fs.Arg(0)
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	storage, err := adapter.Resolve(openCtx, raw, nil)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "sessionctl:", err)
		return 1
	}
	defer storage.Close()
	st := storage.Store()
	h := conformance.Harness{
		NewStore:      func(conformance.TB) store.StoreInterface { return st },
		TTLResolution: *resolution,
		MaxValueSize:  *maxValue,
	}
	if u, err := url.Parse(raw); err == nil && u.Scheme == "memcached" {
		if h.TTLResolution == 0 {
			h.TTLResolution = time.Second
		}
		if h.MaxValueSize == 0 {
			h.MaxValueSize = 1000 << 10
		}
	}
	fmt.Fprintf(stdout, "conformance of %s (%s store)\n\n", driver.RedactURL(raw), st.GetType())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	failed := 0
	conformance.Execute(h, func(r conformance.Result) {
		detail := r.Detail
		if !*verbose {
			detail, _, _ = strings.Cut(detail, "\n")
		}
		if r.Outcome == conformance.Fail {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Check, r.Outcome, detail)
		tw.Flush()
	})
	tw.Flush()
	if failed > 0 {
		fmt.Fprintf(stdout, "\n%d of %d checks failed\n", failed, len(conformance.Checks()))
		return 1
	}
	fmt.Fprintf(stdout, "\nall %d checks passed or do not apply\n", len(conformance.Checks()))
	return 0
}
