package codectest_test

// These tests check that the suite can fail: each mutant breaks one promise
// the typed helpers rely on by wrapping the inmem adapter, and the subtests
// that guard it must fail on it. Each mutant runs in a child process (this
// test binary, re-run with FERRY_CODECTEST_MUTANT set); internal/mutanttest
// runs them.

import (
	"context"
	"strings"
	"testing"

	"github.com/ferrymsg/ferry/codec/codectest"
	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

const mutantEnv = "FERRY_CODECTEST_MUTANT"

// Subtests of Run, as named there.
const (
	undecodable = "undecodable payload is dead-lettered after exactly one attempt, byte-identical"
	roundTrip   = "typed publish and typed handler round trip"
	panics      = "typed handler panic is redelivered"
)

type mutant struct {
	name    string
	fails   []string
	passes  []string
	publish func(m *message.Message)
	handle  func(h message.Handler) message.Handler
}

var mutants = []mutant{
	{
		// A client that carries payloads as text mangles bytes that are
		// not UTF-8: the dead-letter copy is no longer the original.
		name:    "carries only valid UTF-8 payloads",
		fails:   []string{undecodable},
		passes:  []string{roundTrip, panics},
		publish: func(m *message.Message) { m.Payload = []byte(strings.ToValidUTF8(string(m.Payload), "\uFFFD")) },
	},
	{
		name:   "drops the headers",
		fails:  []string{undecodable, roundTrip},
		passes: []string{panics},
		publish: func(m *message.Message) {
			for k := range m.Headers {
				if !strings.HasPrefix(k, "ferry-dlt-") {
					delete(m.Headers, k)
				}
			}
		},
	},
	{
		// Calls the chain twice per delivery: "exactly one attempt" breaks.
		name:  "delivers every message twice",
		fails: []string{undecodable},
		handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				_ = h(ctx, m)
				return h(ctx, m)
			}
		},
	},
	{
		// A panic or an error must bring the message back.
		name:   "settles failed messages",
		fails:  []string{panics},
		passes: []string{undecodable, roundTrip},
		handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) (err error) {
				defer func() {
					_ = recover()
					err = nil
				}()
				return h(ctx, m)
			}
		},
	},
}

func harness(t *testing.T, m *mutant) messagetest.Harness {
	if m == nil {
		return mutanttest.InmemHarness(t, false, nil, nil)
	}
	return mutanttest.InmemHarness(t, true, m.publish, m.handle)
}

// TestMutantChild runs the suite on inmem, broken as FERRY_CODECTEST_MUTANT
// says; on its own (the variable unset) on the healthy adapter.
func TestMutantChild(t *testing.T) {
	name := mutanttest.Child(mutantEnv)
	if name == "" {
		codectest.Run(t, harness(t, nil))
		return
	}
	for i := range mutants {
		if mutants[i].name == name {
			codectest.Run(t, harness(t, &mutants[i]))
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
