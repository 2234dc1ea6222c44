// Command ratios reads the output of the bench module's `go test -bench`
// run (benchstat-style lines) and prints, from that one run, the raw numbers
// and the ratios of this library's contenders to the bare harness, to the
// bare Redis floor and to each other library, then the targets met or
// missed.
//
//	go test -run '^$' -bench . -benchmem | tee bench.out
//	go run ./cmd/ratios bench.out      # or: go run ./cmd/ratios < bench.out
//
// A ratio below 1 means this library is faster. Every benchmark's time is
// the median of its samples (the bench module's rounds, each run of -count);
// "spread" is (max-min)/median over them. The command fails only when the input holds no
// benchmark results or reports a failure; a missed target is reported, not
// an error (the machines are shared and noisy).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// samples maps a benchmark name (without the -GOMAXPROCS suffix) to its
// metrics by unit, one value per run.
type samples map[string]map[string][]float64

// procSuffix is the -GOMAXPROCS suffix; roundSuffix the #NN that go test
// gives a sub-benchmark run again under the same name (the bench module's
// rounds): both go, so that every round is a sample of one benchmark.
var (
	procSuffix  = regexp.MustCompile(`-\d+$`)
	roundSuffix = regexp.MustCompile(`#\d+$`)
)

func parse(r io.Reader) (samples, []string, error) {
	s := samples{}
	var failures []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			failures = append(failures, line)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := roundSuffix.ReplaceAllString(procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""), "")
		if s[name] == nil {
			s[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			s[name][f[i+1]] = append(s[name][f[i+1]], v)
		}
	}
	return s, failures, sc.Err()
}

// get returns the median of a benchmark's metric, and whether it exists.
func (s samples) get(name, unit string) (float64, bool) {
	vs := s[name][unit]
	if len(vs) == 0 {
		return 0, false
	}
	c := append([]float64(nil), vs...)
	sort.Float64s(c)
	if n := len(c); n%2 == 1 {
		return c[n/2], true
	} else {
		return (c[n/2-1] + c[n/2]) / 2, true
	}
}

// spread returns (max-min)/median of a metric in percent, "-" with one sample.
func (s samples) spread(name, unit string) string {
	vs := s[name][unit]
	med, ok := s.get(name, unit)
	if len(vs) < 2 || !ok || med == 0 {
		return "-"
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return fmt.Sprintf("%.0f%% (n=%d)", 100*(hi-lo)/med, len(vs))
}

func (s samples) contenders(op string) (ours, others []string) {
	prefix := "Session/" + op + "/"
	for name := range s {
		if c, ok := strings.CutPrefix(name, prefix); ok {
			if strings.HasPrefix(c, "ours-") {
				ours = append(ours, c)
			} else if c != "bare" {
				others = append(others, c)
			}
		}
	}
	order := func(list []string) {
		sort.Slice(list, func(i, j int) bool { return rank(list[i]) < rank(list[j]) })
	}
	order(ours)
	order(others)
	return ours, others
}

// rank keeps the contenders in the benchmark's order.
var knownOrder = []string{
	"bare", "ours-sticky-memory", "ours-sticky-redis", "ours-sticky-bolt",
	"ours-cluster-redis", "ours-cluster-memcached", "ours-cluster-bolt", "ours-cluster-postgres",
	"scs-memstore", "scs-goredisstore", "scs-boltstore", "gorilla-redisstore",
}

func rank(name string) string {
	for i, k := range knownOrder {
		if k == name {
			return fmt.Sprintf("%03d", i)
		}
	}
	return "999" + name
}

func floorOf(op string) string {
	if op == "read" {
		return "Session/floor/redis-GET"
	}
	return "Session/floor/redis-GET+SET"
}

func ns(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2f µs", v/1e3)
	}
	return fmt.Sprintf("%.0f ns", v)
}

// cpu formats a benchmark's process CPU time per operation.
func cpu(s samples, name string) string {
	if v, ok := s.get(name, "cpu-ns/op"); ok {
		return ns(v)
	}
	return "-"
}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "ratios:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	s, failures, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(2)
	}
	if len(s) == 0 {
		fmt.Fprintln(os.Stderr, "ratios: no benchmark results in the input")
		os.Exit(1)
	}
	out := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	defer out.Flush()
	row := func(cells ...string) { fmt.Fprintln(out, strings.Join(cells, "\t")+"\t") }

	for _, op := range []string{"read", "write"} {
		bare, hasBare := s.get("Session/"+op+"/bare", "ns/op")
		ours, others := s.contenders(op)
		fmt.Fprintf(out, "\n== %s request: raw, per request (net = minus the bare harness)\n", op)
		row("contender", "time/op", "spread", "net", "cpu/op", "B/op", "allocs/op")
		for _, c := range append(append([]string{"bare"}, ours...), others...) {
			name := "Session/" + op + "/" + c
			v, ok := s.get(name, "ns/op")
			if !ok {
				continue
			}
			b, _ := s.get(name, "B/op")
			a, _ := s.get(name, "allocs/op")
			net := "-"
			if hasBare && c != "bare" {
				net = ns(v - bare)
			}
			row(c, ns(v), s.spread(name, "ns/op"), net, cpu(s, name), fmt.Sprintf("%.0f", b), fmt.Sprintf("%.0f", a))
		}
		floors := []string{floorOf(op)}
		if op == "write" {
			floors = append(floors, "Session/floor/redis-GET+CAS")
		}
		for _, fl := range floors {
			if v, ok := s.get(fl, "ns/op"); ok {
				b, _ := s.get(fl, "B/op")
				a, _ := s.get(fl, "allocs/op")
				row(strings.TrimPrefix(fl, "Session/")+" (no HTTP)", ns(v), s.spread(fl, "ns/op"), "-", cpu(s, fl), fmt.Sprintf("%.0f", b), fmt.Sprintf("%.0f", a))
			}
		}
		out.Flush()

		cols := append([]string{"bare", floorOf(op)}, others...)
		if op == "write" {
			cols = append([]string{"bare", floorOf(op), "Session/floor/redis-GET+CAS"}, others...)
		}
		fmt.Fprintf(out, "\n== %s request: ours / column, time per request (below 1: ours is faster)\n", op)
		head := []string{"ours"}
		for _, c := range cols {
			head = append(head, strings.TrimPrefix(c, "Session/floor/"))
		}
		row(head...)
		for _, o := range ours {
			v, _ := s.get("Session/"+op+"/"+o, "ns/op")
			cells := []string{o}
			for _, c := range cols {
				name := c
				if !strings.HasPrefix(c, "Session/floor/") {
					name = "Session/" + op + "/" + c
				}
				if d, ok := s.get(name, "ns/op"); ok && d > 0 {
					cells = append(cells, fmt.Sprintf("%.2f", v/d))
				} else {
					cells = append(cells, "-")
				}
			}
			row(cells...)
		}
		out.Flush()
		if hasBare {
			fmt.Fprintf(out, "\n== %s request: net of the bare harness, ours / column\n", op)
			row(append([]string{"ours"}, others...)...)
			for _, o := range ours {
				v, _ := s.get("Session/"+op+"/"+o, "ns/op")
				cells := []string{o}
				for _, c := range others {
					if d, ok := s.get("Session/"+op+"/"+c, "ns/op"); ok && d-bare > 0 {
						cells = append(cells, fmt.Sprintf("%.3f", (v-bare)/(d-bare)))
					} else {
						cells = append(cells, "-")
					}
				}
				row(cells...)
			}
			out.Flush()
		}
	}

	fmt.Fprintf(out, "\n== write-behind and memory\n")
	for _, m := range []struct{ name, unit, label string }{
		{"Coalescing", "storage-writes", "storage writes for 1,000 writes to one session in 1 s (WriteBehind 100 ms)"},
		{"Heap/null-store", "resident-B/session", "heap per resident session, bytes (100,000 sessions, 5 keys)"},
		{"Heap/null-store", "payload-B/session", "  of which the values' own bytes (keys, strings, 8 per int)"},
		{"Heap/null-store", "overhead-B/session", "  overhead beyond the values' own bytes"},
		{"Heap/null-store", "evicted-B/session", "heap per session after idle eviction, bytes"},
	} {
		if v, ok := s.get(m.name, m.unit); ok {
			fmt.Fprintf(out, "%s\t%.1f\t\n", m.label, v)
		}
	}
	out.Flush()

	// Targets. A ratio target is judged on wall time per request (the
	// medians); the same ratio on process CPU time per request is shown
	// beside it, as a check that is less sensitive to a noisy machine (it
	// leaves out what the servers in other processes spend).
	type target struct {
		label  string
		a, b   string // ratio a/b of two benchmarks, or
		metric string // a custom metric of a
		limit  float64
		atMost bool
	}
	ratio := func(a, b, unit string) (float64, bool) {
		x, ok1 := s.get(a, unit)
		y, ok2 := s.get(b, unit)
		if !ok1 || !ok2 || y == 0 {
			return 0, false
		}
		return x / y, true
	}
	var targets []target
	for _, op := range []string{"read", "write"} {
		for _, st := range []string{"memory", "redis", "bolt"} {
			targets = append(targets, target{label: fmt.Sprintf("sticky-%s %s / bare harness", st, op),
				a: "Session/" + op + "/ours-sticky-" + st, b: "Session/" + op + "/bare", limit: 1.5, atMost: true})
		}
		targets = append(targets, target{label: fmt.Sprintf("scs-memstore / sticky-memory, %s (times faster)", op),
			a: "Session/" + op + "/scs-memstore", b: "Session/" + op + "/ours-sticky-memory", limit: 8})
	}
	targets = append(targets,
		target{label: "cluster-redis read / scs-goredisstore read", a: "Session/read/ours-cluster-redis", b: "Session/read/scs-goredisstore", limit: 0.8, atMost: true},
		target{label: "cluster-redis read / bare redis GET", a: "Session/read/ours-cluster-redis", b: floorOf("read"), limit: 1.25, atMost: true},
		target{label: "cluster-redis write / bare redis GET+SET", a: "Session/write/ours-cluster-redis", b: floorOf("write"), limit: 1.25, atMost: true},
		target{label: "storage writes for 1,000 writes in 1 s", a: "Coalescing", metric: "storage-writes", limit: 11, atMost: true},
		target{label: "overhead per resident session, bytes", a: "Heap/null-store", metric: "overhead-B/session", limit: 1024, atMost: true},
		target{label: "heap per idle-evicted session, bytes", a: "Heap/null-store", metric: "evicted-B/session", limit: 64, atMost: true},
	)
	verdict := func(t target, v float64) string {
		if (t.atMost && v <= t.limit) || (!t.atMost && v >= t.limit) {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(out, "\n== targets (reported, not enforced)\n")
	row("target", "limit", "value (wall)", "", "same on cpu/op", "")
	for _, t := range targets {
		cmp := "<= "
		if !t.atMost {
			cmp = ">= "
		}
		limit := cmp + strconv.FormatFloat(t.limit, 'f', -1, 64)
		if t.metric != "" {
			if v, ok := s.get(t.a, t.metric); ok {
				row(t.label, limit, fmt.Sprintf("%.2f", v), verdict(t, v), "", "")
			} else {
				row(t.label, limit, "-", "not measured", "", "")
			}
			continue
		}
		cells := []string{t.label, limit}
		for _, unit := range []string{"ns/op", "cpu-ns/op"} {
			if v, ok := ratio(t.a, t.b, unit); ok {
				cells = append(cells, fmt.Sprintf("%.2f", v), verdict(t, v))
			} else {
				cells = append(cells, "-", "not measured")
			}
		}
		row(cells...)
	}
	out.Flush()

	if len(failures) > 0 {
		fmt.Fprintln(os.Stderr, "\nratios: the benchmark run reported failures:")
		for _, f := range failures {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		os.Exit(1)
	}
}
