package outbox_test

// TestSuiteCatchesMutants checks that the relay tests can fail: each
// planted bug (outbox/mutant.go) breaks one promise, and the subtests that
// guard it must fail on it while others still pass. The naive-cursor
// mutant is the high-water-mark polling of Watermill's issue #311: it
// must fail the out-of-sequence-commit test. A case lists as Passes only
// subtests that cannot see its bug at any speed: the rollback subtest may
// see no-ack's second publish of its one message, or may return first.

import (
	"testing"

	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/outbox"
)

const (
	outOfOrder   = "a row committed after a higher sequence number was published is not skipped"
	outage       = "a broker outage is retried with backoff in order and loses nothing"
	onceInOrder  = "publishes every committed message once in per-key order"
	rollback     = "a rolled-back transaction publishes nothing"
	twoRelays    = "concurrent writers and two relays: per-key order exact, every message once"
	notifyWakeup = "NOTIFY wakes the relay without polling"
	keyBlock     = "a failing message holds back the later messages of its key only"
	republished  = "messages a publisher accepted after a failed one of their key are published again after it"
)

// TestMutantChild runs the PostgreSQL relay tests, on the mutant named by
// outbox.MutantEnv in a child process, on the real code otherwise.
func TestMutantChild(t *testing.T) {
	relaySuite(t, backend{"PostgreSQL", openPostgres})
	pgSuite(t)
}

func TestSuiteCatchesMutants(t *testing.T) {
	openPostgres(t) // skips, or fails with FERRY_REQUIRE_BROKERS=1, without PostgreSQL
	mutanttest.Check(t, outbox.MutantEnv, []mutanttest.Case{
		{Name: "naive-cursor", Fails: []string{outOfOrder, outage}, Passes: []string{rollback}},
		{Name: "no-ack", Fails: []string{onceInOrder}, Passes: []string{notifyWakeup}},
		{Name: "no-key-block", Fails: []string{republished}, Passes: []string{keyBlock, onceInOrder, outage}},
		{Name: "no-shard-lock", Fails: []string{twoRelays}, Passes: []string{onceInOrder}},
	})
}
