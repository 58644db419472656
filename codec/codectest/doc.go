// Package codectest is the end-to-end suite of the typed helpers (package
// codec) on a real adapter, through the messagetest.Harness of the
// adapter's conformance suite, so that "an undecodable payload goes to the
// dead-letter topic after one attempt, byte for byte" is proven on every
// broker. An adapter's conformance_test.go calls it beside
// messagetest.Run:
//
//	t.Run("codec", func(t *testing.T) { codectest.Run(t, h) })
//
// # Tests
//
// Run runs these subtests, one after another, named as listed:
//
//   - undecodable payload is dead-lettered after exactly one attempt,
//     byte-identical: on one key, a good order, a payload that is not
//     JSON (with bytes that are not UTF-8), one whose content type (set by
//     a typed publisher of another codec, so on AMQP it is the
//     content_type property) is not JSON, and another good order; with the
//     retry middleware at 5 attempts, each bad one reaches the handler
//     chain exactly once, never the typed function, and lands on
//     <topic>.DLT with its ID, key, payload (bytes.Equal) and headers,
//     plus the decode error text, the error type *codec.DecodeError and 1
//     attempt in the dead-letter headers; both good orders are handled.
//   - typed publish and typed handler round trip: the values decode to
//     what was published, and the handler sees the content type (in the
//     broker's own place) and the __TypeId__ header WithTypeID wrote.
//   - typed handler panic is redelivered: without retry middleware, the
//     function panics on the first delivery; the subscriber delivers the
//     message again (Attempt 2), it is handled, and the next message of
//     its key comes after it.
//   - batch: undecodable payload is dead-lettered once, the rest of the
//     batch handled once (not with Features.NoBatch): codec.BatchHandler
//     under retry.NewBatch on SubscribeBatch, 12 messages over 3 keys with
//     one undecodable; it lands on the DLT byte-identical after 1 attempt,
//     never reaches the typed function, and each other message reaches it
//     exactly once.
//
// mutants_test.go proves that the suite can fail: each mutant breaks the
// inmem adapter in one way (payload bytes mangled, headers dropped, every
// message delivered twice, failures settled) and the subtests that guard
// against it must fail.
//
// Harness.Prepare (when set) is called for each topic and for its
// dead-letter topic with the groups that consume them. No Features are
// needed.
package codectest
