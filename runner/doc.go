// Package runner runs a service's subscriptions as one unit: it starts
// them, reports when every one is consuming, stops them all gracefully on
// SIGINT/SIGTERM or a cancelled context within one drain deadline, and
// stops them all when one fails, returning its error.
//
//	r, err := runner.New(runner.WithHTTP(":8081")) // /healthz and /readyz
//	r.Add("billing", billingSub, "orders", codec.Handler(orders, bill), retryMW)
//	r.Add("shipping", shippingSub, "orders", codec.Handler(orders, ship), retryMW)
//	err = r.Run(ctx) // until SIGTERM; nil after a clean drain
//
// AddBatch adds a batch consumer (message.BatchHandler on SubscribeBatch)
// the same way. Go adds a task that runs beside the subscriptions (a
// producer, an outbox relay, an HTTP server), started once every
// subscription consumes, stopped with them, and failing the service when
// it fails. Stop begins a graceful stop from anywhere, a handler included.
//
// # Life of a Runner
//
//	state        what happens                                    leaves for
//	idle         Add registers subscriptions                     running (Run)
//	running      each Subscribe runs in its own goroutine;       stopping (ctx cancelled, a signal,
//	             a subscription is "starting" until its            a subscription failed)
//	             subscriber signals message.WithReady, then
//	             "consuming"; Ready() closes when all consume
//	stopping     every Subscribe's context is cancelled: the     done (all returned)
//	             subscribers stop fetching and drain, handlers
//	             keep their contexts; at the drain deadline (or
//	             a second signal) the handlers' contexts are
//	             cancelled with ErrDrainTimeout; CloseGrace
//	             later (or at a third signal) the subscribers
//	             still running are closed; CloseGrace after
//	             that (or at a fourth signal) Run gives up on
//	             a Subscribe that still does not return (a
//	             handler ignoring its context) and goes on
//	done         subscribers, then WithClose closers, closed;
//	             Run returns
//
// A subscription fails when its Subscribe returns while the runner is
// running: with an error (a broker that cannot be reached, ErrClosed) or,
// since Subscribe returns nil only when its context ends, with nil. The
// first failure stops the others and is what Run returns (naming the
// subscription); errors of Subscribe calls while stopping, the drain
// deadline and close errors are joined to it.
//
// What a graceful stop keeps: a handler running when the stop begins
// finishes with its context intact and its result is settled (a Kafka
// offset committed, an AMQP delivery acknowledged) before Subscribe
// returns, so a restart in the same group continues with nothing lost
// and nothing done twice; on Kafka that holds per partition up to the
// first message that had not started when the stop began (offsets commit
// contiguously, so a message of another key of the same partition that
// finished after it is delivered again). A handler still running at the drain deadline
// sees its context cancelled; what it did not finish is not settled and
// is delivered again after the restart (at-least-once, as after a crash).
//
// Per message, the runner gives the handler a context that the drain
// deadline can cancel (the adapters' own drain timeouts are set on each
// subscriber, and their Close does not cancel running handlers): about
// about 0.7 µs and 5 allocations on 2 cores (BENCHMARKS.md), which a
// handler doing any I/O does not notice.
//
// # Probes
//
// Status is the runner's state; ReadyHandler and HealthHandler answer
// Kubernetes readiness and liveness probes from it (200 or 503, the
// Status as JSON) and Handler serves both at /readyz and /healthz.
// Readiness is true while every subscription is consuming and the runner
// is not stopping; liveness is false once a subscription failed, the drain
// deadline passed, or Run returned, and stays true while a graceful stop
// drains, so that a probe does not kill a service finishing its work. No
// server is started unless WithHTTP asks for one.
//
// # Compared with Watermill and Spring
//
// Watermill's Router runs handlers (subscriber, topic, handler, optional
// publisher) with router-level and handler-level middleware, closes its
// subscribers on Close, waits CloseTimeout for running handlers, and
// exposes Running(). Taken: router-wide middleware (WithMiddleware) and
// per-subscription middleware (Add's mw), owning and closing the
// subscribers, one close timeout. Not taken: the handler that returns
// messages to publish (publish from the handler instead, with a typed
// codec.Publisher), and signal handling as a separate plugin.
//
// Spring's listener containers (ConcurrentMessageListenerContainer,
// SimpleMessageListenerContainer) are started and stopped together by the
// application context's lifecycle (SmartLifecycle phases, graceful
// shutdown with spring.lifecycle.timeout-per-shutdown-phase, 30 s by
// default), and Spring Boot's actuator reports liveness and readiness
// states. Taken: one lifecycle for all subscriptions, one shutdown
// deadline, readiness and liveness for probes, and tasks that start once
// the consumers are up (Spring Boot's ApplicationRunner runs after the
// context started). Not taken: per-container
// auto-startup and pause/resume, and a global registry of containers: a
// Runner is a value you make, with no package state, so a test can run
// several.
//
// # Options and defaults
//
// WithDrainTimeout (DefaultDrainTimeout, 25 s), WithSignals (SIGINT and
// SIGTERM), WithLogger (slog.Default()), WithMiddleware (none), WithClose
// (none), WithHTTP (no server). New returns an error wrapping
// message.ErrInvalidConfig for a bad option; Add and Run do for bad
// input, naming it.
package runner
