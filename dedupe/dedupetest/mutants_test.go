package dedupetest_test

// These tests check that the suites can fail: each mutant breaks one
// promise, of an adapter (wrapping inmem) or of a store (wrapping the
// memory store), and the subtests that guard it must fail on it. Each
// mutant runs in a child process (this test binary, re-run with
// FERRY_DEDUPETEST_MUTANT set), because a failing subtest cannot be
// observed from inside the same test; internal/mutanttest runs them.

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/internal/mutanttest"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

const mutantEnv = "FERRY_DEDUPETEST_MUTANT"

// Subtests of RunMiddleware and RunStoreTests, as named there.
const (
	duplicates    = "same ID published three times is handled once"
	firstRunFails = "message whose first run fails is handled exactly once after it succeeds"

	claimCycle       = "new key is claimed, then in progress, then processed after complete"
	releaseFrees     = "release frees the key for a redelivery"
	staleRelease     = "stale release does not free a newer claim"
	extendKeepsAlive = "extend keeps a claim alive past its first lease"
	extendLost       = "extend of a released or unknown key reports lease lost"
	oneWins          = "concurrent claims of one key: exactly one wins"
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
	// store wraps every store the store suite builds.
	store func(s dedupe.Store) dedupe.Store
}

var mutants = []mutant{
	{
		// The dedupe key is the message ID: an adapter that does not carry
		// it end to end makes every copy look new.
		name:    "gives every published message a fresh ID",
		fails:   []string{duplicates, firstRunFails},
		publish: func(m *message.Message) { m.ID = message.NewID() },
	},
	{
		// A failed run releases the key; the redelivery must run it.
		name:  "settles failed messages",
		fails: []string{firstRunFails},
		handle: func(h message.Handler) message.Handler {
			return func(ctx context.Context, m *message.Message) error {
				_ = h(ctx, m)
				return nil
			}
		},
	},
	{
		name:   "release does nothing",
		fails:  []string{releaseFrees, staleRelease},
		passes: []string{claimCycle},
		store:  func(s dedupe.Store) dedupe.Store { return &mutatedStore{Store: s, noRelease: true} },
	},
	{
		name:  "claim ignores live claims",
		fails: []string{claimCycle, oneWins},
		store: func(s dedupe.Store) dedupe.Store { return &mutatedStore{Store: s, claimAlways: true} },
	},
	{
		name:   "extend does nothing",
		fails:  []string{extendKeepsAlive, extendLost},
		passes: []string{releaseFrees},
		store:  func(s dedupe.Store) dedupe.Store { return &mutatedStore{Store: s, noExtend: true} },
	},
}

// mutatedStore breaks a store as its flags say.
type mutatedStore struct {
	dedupe.Store
	noRelease   bool // Release returns nil and frees nothing
	claimAlways bool // Claim of a key in progress claims it too
	noExtend    bool // Extend returns nil and extends nothing
}

func (s *mutatedStore) Claim(ctx context.Context, key string, lease time.Duration) (dedupe.ClaimResult, error) {
	res, err := s.Store.Claim(ctx, key, lease)
	if err == nil && s.claimAlways && res.Status == dedupe.InProgress {
		return dedupe.ClaimResult{Status: dedupe.Claimed, Token: dedupe.Token(rand.Int64N(1<<62) + 1)}, nil
	}
	return res, err
}

func (s *mutatedStore) Release(ctx context.Context, key string, token dedupe.Token) error {
	if s.noRelease {
		return nil
	}
	return s.Store.Release(ctx, key, token)
}

func (s *mutatedStore) Extend(ctx context.Context, key string, token dedupe.Token, lease time.Duration) error {
	if s.noExtend {
		return nil
	}
	return s.Store.Extend(ctx, key, token, lease)
}

// harness builds the inmem harness, with the mutant applied when m is set.
func harness(t *testing.T, m *mutant) messagetest.Harness {
	if m == nil {
		return mutanttest.InmemHarness(t, false, nil, nil)
	}
	return mutanttest.InmemHarness(t, true, m.publish, m.handle)
}

// runSuites runs both suites: the store suite on the memory store and the
// middleware suite on inmem, broken by m when it is set.
func runSuites(t *testing.T, m *mutant) {
	dedupetest.RunStoreTests(t, func(t *testing.T, cfg dedupetest.Config) dedupe.Store {
		s, err := dedupe.NewMemoryStore(dedupe.WithClock(cfg.Now), dedupe.WithTTL(cfg.TTL))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if m != nil && m.store != nil {
			return m.store(s)
		}
		return s
	})
	dedupetest.RunMiddleware(t, harness(t, m))
}

// TestMutantChild runs the suites, broken as FERRY_DEDUPETEST_MUTANT says.
// It is the child process of TestSuiteCatchesMutants, and on its own (the
// variable unset) runs them on the healthy memory store and adapter.
func TestMutantChild(t *testing.T) {
	name := mutanttest.Child(mutantEnv)
	if name == "" {
		runSuites(t, nil)
		return
	}
	for i := range mutants {
		if mutants[i].name == name {
			runSuites(t, &mutants[i])
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
