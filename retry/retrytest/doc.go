// Package retrytest is the end-to-end suite of the retry middleware (package
// retry): retries, dead-lettering and replay, run on a real adapter through
// the same messagetest.Harness that the adapter's conformance suite uses, so
// that the error policy is proven on every broker. An adapter's
// conformance_test.go calls it beside messagetest.Run:
//
//	func TestConformance(t *testing.T) {
//		h := harness(t) // a messagetest.Harness
//		messagetest.Run(t, h)
//		t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
//		t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
//	}
//
// # Tests
//
// Run runs these subtests, one after another, named as listed:
//
//   - always-failing message is dead-lettered after exactly N attempts while
//     later messages keep flowing: the message is handled exactly 3 times
//     (WithMaxAttempts(3)), lands once on <topic>.DLT with the same ID,
//     key, payload and headers plus ferry's dead-letter headers (topic,
//     group, partition and offset where the broker has them, error,
//     attempts, failure times), and the later messages of its key and of
//     other keys are all handled.
//   - permanent error goes straight to the dead-letter topic with Spring
//     headers: one handler call; the Spring profile's binary headers
//     survive the broker and decode back to the delivery's partition,
//     offset and time; the exception type, root-cause type, stack trace
//     and timestamp type are Spring's; ferry's original-topic header is
//     not written.
//   - failing dead-letter publish redelivers instead of losing the message:
//     the first 2 dead-letter publishes fail, the message is redelivered by
//     the subscriber (not settled, Delivery.Attempt rising) and is
//     dead-lettered on the third, with no extra handler calls.
//   - replay brings dead-lettered messages back to their topic: a Replay
//     whose publisher fails leaves every message on the dead-letter topic;
//     a second Replay republishes all of them, with their keys and headers
//     but without dead-letter headers, and the now-healthy handler gets
//     each one.
//   - a retrying key holds no worker: other keys flow during its backoff:
//     at concurrency 1, key A's message fails 3 times with a 1 s constant
//     backoff (WithMaxAttempts(4)); the 1,000 messages of 50 other keys
//     published after it (while its first attempt runs, which fails once
//     they are all published) are all handled before A's second attempt
//     starts, and then A's message is handled attempt by attempt (Attempt
//     1 to 4) before the later messages of key A, in order. With
//     Features.NoKeyOrder (Kafka share groups, where the waiting record
//     goes back to the broker and returns among the others) it checks
//     only that other keys' messages were handled while A waited. A
//     middleware that
//     sleeps between attempts in the handler fails it: it holds the only
//     worker. It takes about 3 s.
//
// # What the suite assumes of a harness
//
// What messagetest.Run assumes (see package messagetest): the tests are
// built with messagetest.Env, so topics and groups are fresh in every test,
// waits end after Features.Timeout with a failure that says what was
// expected and what was seen, and subscribers get a redelivery backoff of
// 1 ms to 20 ms. Harness.Prepare (when set) is called for each topic and
// for its dead-letter topic <topic>.DLT with the groups that consume them,
// before anything is published there, so the dead-letter publish is
// routable on AMQP. No Features are needed.
//
// mutants_test.go proves that the suite can fail: each mutant breaks the
// inmem adapter in one way (header values, keys, attempts, settling a
// failure, sleeping between attempts in the handler as the middleware
// did before it let the dispatcher wait), and the subtests guarding that
// promise must fail on it.
package retrytest
