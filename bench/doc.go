// Package bench holds side-by-side benchmarks of github.com/sessionstorage/sessions
// against other Go session libraries (alexedwards/scs, gorilla/sessions) and
// against a bare go-redis round trip. It is a module of its own, so that the
// library's module never depends on the libraries it is compared with.
//
// Everything is in the _test.go files; run it from the repository root with
//
//	make bench
//
// which runs every benchmark in one `go test -bench` run and then prints the
// ratios computed from that run (./cmd/ratios). Real redis-server, memcached
// and PostgreSQL servers are started from the binaries on the machine
// (internal/testservers); a contender whose server is missing is skipped.
//
// BenchmarkSession runs its contenders (and the bare Redis floor) in
// interleaved rounds (-bench.rounds, default 5), so that load from elsewhere
// on a shared machine spreads over all of them; cmd/ratios uses the median.
//
// No benchmark asserts anything about timing: the targets are reported as
// met or missed by cmd/ratios, never enforced.
package bench
