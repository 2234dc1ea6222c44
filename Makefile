# make test: every test, with the race detector, against real servers
# (SESSIONS_REQUIRE_SERVERS=1 turns a missing server into a failure).
GO ?= go

.PHONY: test vet bench

test: vet
	SESSIONS_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...
