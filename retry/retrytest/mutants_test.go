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
	"github.com/ferrymsg/ferry/message/messagetest"
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
type mutant struct {
	name   string
	fails  []string
	passes []string
	// publish changes each message a publisher sends (a clone of it).
	publish func(m *message.Message)
	// handle wraps the handler of every Subscribe.
	handle func(h message.Handler) message.Handler
}

var mutants = []mutant{
	{
		// Spring's dead-letter headers are raw big-endian bytes: a broker
		// client that only carries text mangles them.
		name:   "carries only valid UTF-8 header values",
		fails:  []string{permanentSpring},
		passes: []string{exhausted},
		publish: func(m *message.Message) {
			for k, v := range m.Headers {
				m.Headers[k] = strings.ToValidUTF8(v, "\uFFFD")
			}
		},
	},
	{
		name:    "publishes without keys",
		fails:   []string{exhausted, replay},
		passes:  []string{permanentSpring},
		publish: func(m *message.Message) { m.Key = "" },
	},
	{
		// The middleware knows a redelivery from Delivery.Attempt: it only
		// retries the dead-letter publish of a message it exhausted.
		name:  "reports attempt 1 on every delivery",
		fails: []string{deadLetterPubFails},
		handle: func(h message.Handler) message.Handler {
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
		name:   "sleeps between attempts in the handler",
		fails:  []string{holdsNoWorker},
		passes: []string{exhausted, permanentSpring},
		handle: func(h message.Handler) message.Handler {
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
		name:  "settles failed messages",
		fails: []string{deadLetterPubFails, replay},
		handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				_ = h(ctx, m)
				return nil
			}
		},
	},
}

// harness builds the inmem harness, with the mutant applied when m is set.
func harness(t *testing.T, m *mutant) messagetest.Harness {
	if m == nil {
		return mutanttest.InmemHarness(t, false, nil, nil)
	}
	return mutanttest.InmemHarness(t, true, m.publish, m.handle)
}

// TestMutantChild runs the suite on inmem, broken as FERRY_RETRYTEST_MUTANT
// says. It is the child process of TestSuiteCatchesMutants, and on its own
// (the variable unset) runs the suite on the healthy adapter.
func TestMutantChild(t *testing.T) {
	name := mutanttest.Child(mutantEnv)
	if name == "" {
		retrytest.Run(t, harness(t, nil))
		return
	}
	for i := range mutants {
		if mutants[i].name == name {
			retrytest.Run(t, harness(t, &mutants[i]))
			return
		}
	}
	t.Fatalf("unknown mutant %q", name)
}

func TestSuiteCatchesMutants(t *testing.T) {
	cases := make([]mutanttest.Case, len(mutants))
	for i, m := range mutants {
		cases[i] = mutanttest.Case{Name: m.name, Fails: m.fails, Passes: m.passes}
	}
	mutanttest.Check(t, mutantEnv, cases)
}
