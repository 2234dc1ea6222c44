# make test: every test, with the race detector, against real servers
# (SESSIONS_REQUIRE_SERVERS=1 turns a missing server into a failure).
GO ?= go

.PHONY: test vet bench bench-burst fuzz

test: vet
	SESSIONS_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

# make fuzz: every native fuzz target for FUZZTIME each (make test runs
# their seed corpora, testdata/fuzz/ included, as ordinary tests). A failing
# input is written to the package's testdata/fuzz/<Target>/.
FUZZTIME ?= 1m
FUZZ_TARGETS = \
	./serializer:FuzzDecodeEnvelope \
	./serializer:FuzzEnvelopeDecode \
	./serializer:FuzzEnvelopeRoundTrip \
	./serializer:FuzzEnvelopeSealed \
	./serializer:FuzzCodecRoundTrip \
	./serializer:FuzzCodecDecode \
	.:FuzzParseCookie \
	.:FuzzCookieValue \
	.:FuzzParseConfig \
	./drivers/redis:FuzzClientFromURL \
	./drivers/memcached:FuzzParseURL \
	./drivers/bolt:FuzzParseURL \
	./drivers/sql:FuzzParseURL

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# make bench: side-by-side benchmarks (bench/, a module of its own) against
# real servers in one `go test -bench` run, then the ratios from that run
# (medians when BENCHFLAGS='-count 3', say).
bench:
	cd bench && $(GO) test -run '^$$' -bench '^Benchmark(Session|Coalescing|Heap)$$' -benchmem -count 1 -benchtime 1s -timeout 20m $(BENCHFLAGS) . 2>&1 | tee bench.out
	cd bench && $(GO) run ./cmd/ratios bench.out

# make bench-burst: sticky write-behind under a burst of 100,000 sessions
# per storage (sessions/s, drain time, largest lag, Close time), and idle
# eviction of a million sessions under read load (root package).
bench-burst:
	cd bench && $(GO) test -run '^$$' -bench '^BenchmarkWriteBehind$$' -benchtime 1x -timeout 20m . 2>&1 | tee burst.out
	$(GO) test -run '^$$' -bench '^BenchmarkEvictionUnderLoad$$' -benchtime 1x -timeout 20m . 2>&1 | tee -a bench/burst.out
