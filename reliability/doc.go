// Package reliability holds ferry's fault, crash and soak tests: the
// evidence, with figures, that no message is lost when a broker restarts,
// a connection drops, a consumer is killed, the broker answers with errors
// or inputs are malformed, and that nothing leaks under sustained load.
//
// It has no API; everything is in its tests, which run against the real
// brokers that scripts/services.sh starts (and against franz-go's kfake
// for injected Kafka protocol errors):
//
//   - Kafka broker restart mid-stream (services.sh restart kafka) while
//     publishing and consuming;
//   - RabbitMQ connection cuts and outages through an in-test TCP proxy;
//   - a consumer in a child process killed with SIGKILL and restarted, with
//     the SQL dedupe store on PostgreSQL making its side effect (a row per
//     message) happen exactly once, on Kafka and on RabbitMQ;
//   - per-key order across the members of one group, each member its own
//     process, while members join, leave (SIGTERM) and are SIGKILLed, on
//     Kafka and on RabbitMQ (no order violation, no same-key overlap
//     between members, nothing lost; redeliveries after a kill counted);
//   - produce errors, fetch errors, commit failures and coordinator moves
//     injected with kfake's ControlKey;
//   - malformed messages from producers that are not ferry (raw franz-go
//     records and raw amqp091 publishes);
//   - credentials redacted from errors, amqps:// to a plain port;
//   - a soak with 16 publishers and 16 concurrent handlers on each adapter
//     (heap, goroutines and throughput stay flat) and a slow consumer
//     behind a large backlog (memory stays bounded).
//
// Every fault test counts messages sent, acknowledged, received, lost
// (always required to be 0) and duplicated (allowed, counted), and appends
// a machine-readable line ("RELIABILITY fault=... lost=0 ...") to the file
// named by FERRY_RELIABILITY_OUT; RELIABILITY.md at the repository root
// holds the table made from those lines.
//
// # Running
//
// `make test` runs these tests as a separate step, after every other
// package, because restarting a shared broker would cut the other
// packages' connections and the soak's figures need a quiet CPU:
//
//	make test-faults               # this package alone, against the real brokers
//	FERRY_SOAK=1 make test-faults  # with the long soak (about 2 minutes)
//
// The broker restart only runs with FERRY_FAULTS=1 (set by make
// test-faults), so a plain `go test ./...` never restarts a broker under
// the feet of other packages. Without reachable brokers the broker tests
// skip, unless FERRY_REQUIRE_BROKERS=1, as everywhere in ferry.
package reliability
