// Package testenv tells tests where the real brokers are and whether they
// may be skipped.
//
// The addresses come from the environment, with defaults that match what
// scripts/services.sh (run by `make test`) starts on the loopback
// interface:
//
//	FERRY_KAFKA_BROKERS  comma-separated host:port list, default 127.0.0.1:9092
//	FERRY_AMQP_URL       default amqp://guest:guest@127.0.0.1:5672/
//	FERRY_POSTGRES_DSN   default postgres://ferry:ferry@127.0.0.1:5432/ferry?sslmode=disable
//
// A suite that needs a broker starts with NeedKafka, NeedAMQP or
// NeedPostgres. When the broker cannot be reached the test is skipped with a
// message naming `make test`, so plain `go test ./...` stays green on a
// machine without brokers. With FERRY_REQUIRE_BROKERS=1 (set by `make
// test` and so by CI) an unreachable broker fails the test instead: a
// broker that did not start can never turn a run green by skipping.
//
// Fault tests restart a broker with RestartService, which runs
// `scripts/services.sh restart <name>` and returns once the service is ready
// again. It only makes sense against the brokers the script manages, so it
// skips (or fails under FERRY_REQUIRE_BROKERS=1) when the addresses point
// elsewhere.
package testenv
