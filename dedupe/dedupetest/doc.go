// Package dedupetest holds the suites of package dedupe: RunStoreTests, the
// contract every dedupe.Store must pass, and RunMiddleware, the end-to-end
// tests of the dedupe middleware on a real adapter.
//
// Each store's tests call RunStoreTests with a constructor, so the memory,
// SQLite and PostgreSQL stores are held to the same behaviour:
//
//	func TestStore(t *testing.T) {
//		dedupetest.RunStoreTests(t, func(t *testing.T, cfg dedupetest.Config) dedupe.Store {
//			s, err := dedupe.NewMemoryStore(dedupe.WithClock(cfg.Now), dedupe.WithTTL(cfg.TTL))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// RunMiddleware takes the messagetest.Harness of an adapter's conformance
// suite, so that the idempotent consumer is proven on every broker. An
// adapter's conformance_test.go calls it beside messagetest.Run:
//
//	func TestConformance(t *testing.T) {
//		h := harness(t) // a messagetest.Harness
//		messagetest.Run(t, h)
//		t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
//		t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
//	}
//
// # Store tests
//
// RunStoreTests runs these subtests, named as listed; all but the last two
// run on a Clock that the suite moves:
//
//   - new key is claimed, then in progress, then processed after complete
//   - release frees the key for a redelivery (with a new token)
//   - expired lease frees the key (crashed consumer)
//   - stale release does not free a newer claim
//   - release after complete keeps the key processed
//   - processed key outlives its lease and expires after the TTL
//   - complete of an expired claim taken over still marks processed (and
//     the slow claim's Extend reports ErrLeaseLost)
//   - complete without a claim and twice is idempotent
//   - extend keeps a claim alive past its first lease
//   - extend of a released or unknown key reports lease lost
//   - keys are exact strings: case, spaces, unicode, quotes and SQL, 500
//     bytes
//   - bad input is rejected with an error: an empty key (ErrInvalidKey), a
//     zero lease
//   - cancelled context: Claim returns context.Canceled and claims nothing
//   - concurrent claims of one key: exactly one wins (8 keys × 16 racers)
//   - concurrent consumers process every key exactly once (40 keys, 8
//     consumers, the first run of every third key released as a failure)
//
// # Middleware tests
//
// RunMiddleware runs these subtests, one after another, named as listed:
//
//   - same ID published three times is handled once: three Publish calls
//     carry one ID (and a control message another); all four deliveries
//     are settled, the handler runs once per ID.
//   - message whose first run fails is handled exactly once after it
//     succeeds: its first handler run fails, the subscriber redelivers it,
//     a duplicate is published as well; both copies are settled, the
//     handler ran exactly twice (one failure, one success).
//
// Each test uses a fresh memory store. Subscribers run with concurrency 4,
// so duplicates may meet a live claim (dedupe.ErrInProgress) and be
// redelivered, as after a rebalance. The tests are built with
// messagetest.Env and assume of the harness what messagetest.Run does:
// topics and groups are fresh in every test, Harness.Prepare (when set) is
// called for each topic with the group that consumes it before publishing,
// and waits end after Features.Timeout with a failure that says what was
// expected and what was seen. No Features are needed.
//
// mutants_test.go proves that the middleware suite can fail: each mutant
// breaks the inmem adapter in one way (message IDs, settling a failure),
// and the subtests guarding that promise must fail on it.
package dedupetest
