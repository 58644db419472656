package retrytest_test

// These tests check that the suite can fail: each mutant breaks one promise
// that the retry middleware relies on by wrapping the inmem adapter, and
// the subtests that guard it must fail on it. Each mutant runs in a child
// process (this test binary, re-run with FERRY_RETRYTEST_MUTANT set),
// because a failing subtest cannot be observed from inside the same test;
// internal/mutanttest runs them.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

const mutantEnv = "FERRY_RETRYTEST_MUTANT"

// Subtests of Run, as named there.
const (
	exhausted          = "always-failing message is dead-lettered after exactly N attempts while later messages keep flowing"
	permanentSpring    = "permanent error goes straight to the dead-letter topic with Spring headers"
	deadLetterPubFails = "failing dead-letter publish redelivers instead of losing the message"
	replay             = "replay brings dead-lettered messages back to their topic"
	holdsNoWorker      = "a retrying key holds no worker: other keys flow during its backoff"
)

// mutant breaks one promise; fails lists the subtests that must fail on it,
// passes those that must still pass on it (showing that the failing ones
// catch what these cannot).
var mutants = []mutanttest.Inmem{
	{
		// Spring's dead-letter headers are raw big-endian bytes: a broker
		// client that only carries text mangles them.
		Case: mutanttest.Case{Name: "carries only valid UTF-8 header values", Fails: []string{permanentSpring}, Passes: []string{exhausted}},
		Publish: func(m *message.Message) {
			for k, v := range m.Headers {
				m.Headers[k] = strings.ToValidUTF8(v, "\uFFFD")
			}
		},
	},
	{
		Case:    mutanttest.Case{Name: "publishes without keys", Fails: []string{exhausted, replay}, Passes: []string{permanentSpring}},
		Publish: func(m *message.Message) { m.Key = "" },
	},
	{
		// The middleware knows a redelivery from Delivery.Attempt: it only
		// retries the dead-letter publish of a message it exhausted.
		Case: mutanttest.Case{Name: "reports attempt 1 on every delivery", Fails: []string{deadLetterPubFails}},
		Handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				c := *m
				c.Delivery.Attempt = 1
				return h(ctx, &c)
			}
		},
	},
	{
		// The retry middleware before issue 16: it slept between attempts
		// inside the handler call, holding the worker (at concurrency 1,
		// every key). This mutant waits out each message.RedeliverAfter
		// in the handler and calls it again, as that middleware did.
		Case: mutanttest.Case{Name: "sleeps between attempts in the handler", Fails: []string{holdsNoWorker}, Passes: []string{exhausted, permanentSpring}},
		Handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				for {
					err := h(ctx, m)
					d, ok := message.RedeliveryDelay(err)
					if !ok {
						return err
					}
					t := time.NewTimer(d)
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return err
					}
					m.Delivery.Attempt++
				}
			}
		},
	},
	{
		// A failed dead-letter publish, and a failed replay, must leave the
		// message to be delivered again.
		Case: mutanttest.Case{Name: "settles failed messages", Fails: []string{deadLetterPubFails, replay}},
		Handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				_ = h(ctx, m)
				return nil
			}
		},
	},
}

// TestMutantChild runs the suite on inmem, broken as FERRY_RETRYTEST_MUTANT says; on its own
// (the variable unset) on the healthy adapter. It is the child process of
// TestSuiteCatchesMutants.
func TestMutantChild(t *testing.T) {
	mutanttest.RunInmemChild(t, mutantEnv, mutants, retrytest.Run)
}

func TestSuiteCatchesMutants(t *testing.T) {
	mutanttest.CheckInmem(t, mutantEnv, mutants)
}
