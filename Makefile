# make test: every test, with the race detector, against real servers
# (SESSIONS_REQUIRE_SERVERS=1 turns a missing server into a failure).
GO ?= go

.PHONY: test vet bench

test: vet
	SESSIONS_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

# make bench: side-by-side benchmarks (bench/, a module of its own) against
# real servers in one `go test -bench` run, then the ratios from that run
# (medians when BENCHFLAGS='-count 3', say).
bench:
	cd bench && $(GO) test -run '^$$' -bench . -benchmem -count 1 -benchtime 1s -timeout 20m $(BENCHFLAGS) . 2>&1 | tee bench.out
	cd bench && $(GO) run ./cmd/ratios bench.out
