package messagetest

import (
	"testing"
	"time"
)

// DefaultTimeout bounds each wait of the suite when Features.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Redelivery backoff the suite asks of subscribers unless a test needs
// otherwise: small, so that redelivery tests run fast.
const (
	suiteInitialBackoff = time.Millisecond
	suiteMaxBackoff     = 20 * time.Millisecond
)

// Run runs the conformance suite against the adapter that h describes, each
// test as a subtest named for the behaviour it checks. The tests run one
// after another (the goroutine-leak test needs a quiet process). Tests that
// need a capability the adapter lacks (see Features) are not run; Run logs
// them.
//
// Run holds the adapter contract only. The middleware suites take the same
// Harness and are called beside it: retrytest.Run (package retry/retrytest)
// and dedupetest.RunMiddleware (package dedupe/dedupetest).
func Run(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	for _, tc := range append(s.tests(), s.batchTests()...) { // batch.go
		if tc.needs != nil {
			if missing := tc.needs(h.Features); missing != "" {
				// Not run, rather than skipped: the adapter declares it
				// cannot do this, so there is nothing to test.
				t.Logf("not run: %q needs Features.%s", tc.name, missing)
				continue
			}
		}
		t.Run(tc.name, tc.run)
	}
}

// newSuite checks the harness and applies the defaults.
func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	if h.NewPublisher == nil || h.NewSubscriber == nil {
		t.Fatal("messagetest: Harness.NewPublisher and Harness.NewSubscriber are required")
	}
	if h.Features.Restart && h.RestartBroker == nil {
		t.Fatal("messagetest: Features.Restart is set but Harness.RestartBroker is nil")
	}
	s := &suite{h: h, timeout: h.Features.Timeout}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	return s
}

type testCase struct {
	name string
	run  func(t *testing.T)
	// needs names the capability the test requires when f lacks it.
	needs func(f Features) (missing string)
}

// tests lists the suite. Keep it in step with the list in doc.go.
func (s *suite) tests() []testCase {
	return []testCase{
		{"round trip keeps ID, key, payload, headers and time", s.testRoundTrip, nil},
		{"publish fills in an empty ID and time", s.testPublishFillsIDAndTime, nil},
		{"batch publish of 1000 messages arrives complete", s.testBatchPublish, nil},
		{"concurrent publishes from 20 goroutines arrive complete without duplicates", s.testConcurrentPublish, nil},
		{"topics are isolated", s.testTopicIsolation, nil},
		{"two groups each receive every message", s.testTwoGroups, nil},
		{"subscribers of one group split the messages without overlap", s.testGroupSplit, nil},
		{"same-key messages are handled in order and never concurrently, up to the concurrency limit", s.testKeyOrder, needsKeyOrder},
		{"a handler may keep a delivered message: it stays intact after the handler returns", s.testKeptMessagesStayIntact, nil},
		{"members of one group keep per-key order and never overlap a key", s.testGroupKeyOrder, needsKeyOrder},
		{"per-key order holds while members join, leave and crash", s.testGroupKeyOrderChurn, needsKeyOrder},
		{"handler error redelivers with growing attempt before later same-key messages", s.testHandlerError, nil},
		{"handler panic is treated as an error and the subscriber keeps running", s.testHandlerPanic, nil},
		{"resumed subscriber does not get settled messages again", s.testResume, nil},
		{"new group reads from the start", s.testNewGroupReadsHistory, func(f Features) string {
			if !f.NewGroupReadsHistory {
				return "NewGroupReadsHistory"
			}
			return ""
		}},
		{"subscribe signals ready once it consumes, and a message published right after arrives", s.testReady, nil},
		{"graceful shutdown lets in-flight handlers finish and settles them", s.testGracefulShutdown, nil},
		{"cancelling an idle subscribe returns nil", s.testCancelIdle, nil},
		{"close is idempotent", s.testCloseIdempotent, nil},
		{"publish and subscribe after close return ErrClosed", s.testUseAfterClose, nil},
		{"close unblocks a running subscribe with ErrClosed", s.testCloseUnblocksSubscribe, nil},
		{"bad input is rejected and publishes nothing", s.testBadInput, nil},
		{"no goroutines are left after close", s.testNoLeaks, nil},
		{"broker restart during publish and consume loses nothing", s.testRestart, func(f Features) string {
			if !f.Restart {
				return "Restart"
			}
			return ""
		}},
	}
}

// needsKeyOrder is the needs of the per-key order tests.
func needsKeyOrder(f Features) string {
	if f.NoKeyOrder {
		return "NoKeyOrder to be false"
	}
	return ""
}

type suite struct {
	h       Harness
	timeout time.Duration
}
