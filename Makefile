GO ?= go

.PHONY: test test-unit test-faults fuzz-short services services-down interop vet lint bench

# test runs lint, starts the real brokers (idempotent) and runs every suite against them,
# in three steps: every package but reliability/ (in parallel), then the
# fault, crash and soak tests of reliability/ on their own (they restart
# brokers and measure heap and throughput, so no other package may share the
# brokers or the CPU with them), then a short fuzz run.
test: lint services interop
	FERRY_REQUIRE_BROKERS=1 $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/reliability')
	cd adapter/kittest/chanadapter && $(GO) test -race -count=1 ./...
	cd cmd/ferry && FERRY_REQUIRE_BROKERS=1 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory test-faults fuzz-short

# test-faults runs reliability/ alone against the real brokers. Each test
# appends a summary line to $(FAULTS_OUT), printed at the end (the figures
# of RELIABILITY.md). FERRY_SOAK=1 makes the soak long (about 2 minutes).
FAULTS_OUT ?= $(CURDIR)/reliability/faults.out
test-faults: services
	rm -f $(FAULTS_OUT)
	FERRY_REQUIRE_BROKERS=1 FERRY_FAULTS=1 FERRY_RELIABILITY_OUT=$(FAULTS_OUT) $(GO) test -race -count=1 -timeout 20m ./reliability/
	@cat $(FAULTS_OUT)

# fuzz-short runs each fuzz target for FUZZTIME (the committed seed corpora
# also run as ordinary tests in every `go test`).
FUZZTIME ?= 10s
FUZZ_TARGETS = ./kafka:FuzzRecordToMessage ./kafka:FuzzValidateTopic \
	./amqp:FuzzDeliveryToMessage ./amqp:FuzzValidateTopic \
	./reliability:FuzzInmemTopic ./retry:FuzzParseDeadLetter \
	./adapter/offsets:FuzzDecodeSettled
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# test-unit runs everything that needs no broker (broker suites skip).
# test and test-unit also run the tests of adapter/kittest/chanadapter, a
# module of its own (an adapter on the exported kit only, as one outside
# ferry would be), and of cmd/ferry, the CLI's module (built against this
# repository's library through cmd/ferry/go.work).
test-unit:
	$(GO) test -race -count=1 ./...
	cd adapter/kittest/chanadapter && $(GO) test -race -count=1 ./...
	cd cmd/ferry && $(GO) test -race -count=1 ./...

services:
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

# interop installs and builds the other clients of interop/'s tests (Spring
# AMQP through Maven, Python's pika in a venv, Debian's kcat), idempotent.
interop:
	bash scripts/interop.sh up

vet:
	$(GO) vet ./...

# lint runs go vet and staticcheck (a pinned version, fetched and built
# through the Go module proxy by `go run`, cached after the first run) on
# the library, the benchmarks module, the out-of-module adapter
# (adapter/kittest/chanadapter) and the CLI (cmd/ferry). It must report
# nothing.
STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	cd benchmarks && $(GO) vet ./... && $(STATICCHECK) ./...
	cd adapter/kittest/chanadapter && $(GO) vet ./... && $(STATICCHECK) ./...
	cd cmd/ferry && $(GO) vet ./... && $(STATICCHECK) ./...

# bench starts the brokers and runs the ferry-vs-raw-vs-Watermill benchmark
# program (benchmarks/, its own module; about 40 minutes on 2 cores). It
# writes benchmarks/results/latest.md and regenerates the tables between the
# ferrybench markers of BENCHMARKS.md. Add -quick via BENCHFLAGS for a short run.
bench: services
	cd benchmarks && $(GO) run ./cmd/ferrybench -rounds 1 -out results/latest.md -update ../BENCHMARKS.md $(BENCHFLAGS)
