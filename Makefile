GO ?= go

.PHONY: test test-unit services services-down vet bench

# test starts the real brokers (idempotent) and runs every suite against them.
test: services
	FERRY_REQUIRE_BROKERS=1 $(GO) test -race -count=1 ./...

# test-unit runs everything that needs no broker (broker suites skip).
test-unit:
	$(GO) test -race -count=1 ./...

services:
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

vet:
	$(GO) vet ./...
