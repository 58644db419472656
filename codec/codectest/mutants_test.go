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
)

const mutantEnv = "FERRY_CODECTEST_MUTANT"

// Subtests of Run, as named there.
const (
	undecodable = "undecodable payload is dead-lettered after exactly one attempt, byte-identical"
	roundTrip   = "typed publish and typed handler round trip"
	panics      = "typed handler panic is redelivered"
)

var mutants = []mutanttest.Inmem{
	{
		// A client that carries payloads as text mangles bytes that are
		// not UTF-8: the dead-letter copy is no longer the original.
		Case:    mutanttest.Case{Name: "carries only valid UTF-8 payloads", Fails: []string{undecodable}, Passes: []string{roundTrip, panics}},
		Publish: func(m *message.Message) { m.Payload = []byte(strings.ToValidUTF8(string(m.Payload), "\uFFFD")) },
	},
	{
		Case: mutanttest.Case{Name: "drops the headers", Fails: []string{undecodable, roundTrip}, Passes: []string{panics}},
		Publish: func(m *message.Message) {
			for k := range m.Headers {
				if !strings.HasPrefix(k, "ferry-dlt-") {
					delete(m.Headers, k)
				}
			}
		},
	},
	{
		// Calls the chain twice per delivery: "exactly one attempt" breaks.
		Case: mutanttest.Case{Name: "delivers every message twice", Fails: []string{undecodable}},
		Handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				_ = h(ctx, m)
				return h(ctx, m)
			}
		},
	},
	{
		// A panic or an error must bring the message back.
		Case: mutanttest.Case{Name: "settles failed messages", Fails: []string{panics}, Passes: []string{undecodable, roundTrip}},
		Handle: func(h message.Handler) message.Handler {
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

// TestMutantChild runs the suite on inmem, broken as FERRY_CODECTEST_MUTANT says; on its own
// (the variable unset) on the healthy adapter. It is the child process of
// TestSuiteCatchesMutants.
func TestMutantChild(t *testing.T) {
	mutanttest.RunInmemChild(t, mutantEnv, mutants, codectest.Run)
}

func TestSuiteCatchesMutants(t *testing.T) {
	mutanttest.CheckInmem(t, mutantEnv, mutants)
}
