package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// RunMiddleware runs the end-to-end tests of the dedupe middleware (memory
// store) against the adapter that h describes, each as a subtest named for
// the behaviour it checks (the list is in the package doc). Call it beside
// messagetest.Run with the same harness. (RunStoreTests, by contrast, tests
// a Store on its own, without a broker.)
func RunMiddleware(t *testing.T, h messagetest.Harness) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *messagetest.Env)
	}{
		{"same ID published three times is handled once", testDuplicates},
		{"message whose first run fails is handled exactly once after it succeeds", testFirstRunFails},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, messagetest.NewEnv(t, h)) })
	}
}

// dedupeCounts records, per message ID, the handler runs behind the dedupe
// middleware and the deliveries settled (nil result) in front of it.
type dedupeCounts struct {
	mu      sync.Mutex
	runs    map[string]int
	ok      map[string]int
	settled map[string]int
}

func newDedupeCounts() *dedupeCounts {
	return &dedupeCounts{runs: map[string]int{}, ok: map[string]int{}, settled: map[string]int{}}
}

func (c *dedupeCounts) get(id string) (runs, ok, settled int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[id], c.ok[id], c.settled[id]
}

// handler wraps inner in the dedupe middleware over a fresh memory store
// and counts settled deliveries outside it.
func (c *dedupeCounts) handler(t *testing.T, inner func(ctx context.Context, m *message.Message, run int) error) message.Handler {
	t.Helper()
	store, err := dedupe.NewMemoryStore()
	if err != nil {
		t.Fatalf("dedupe.NewMemoryStore: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	mw, err := dedupe.New(store)
	if err != nil {
		t.Fatalf("dedupe.New: %v", err)
	}
	counting := func(next message.Handler) message.Handler {
		return func(ctx context.Context, m *message.Message) error {
			err := next(ctx, m)
			if err == nil {
				c.mu.Lock()
				c.settled[m.ID]++
				c.mu.Unlock()
			} else if !errors.Is(err, dedupe.ErrInProgress) && !errors.Is(err, errFirstRun) {
				t.Errorf("handler of %s: unexpected error %v", m.ID, err)
			}
			return err
		}
	}
	return message.Chain(func(ctx context.Context, m *message.Message) error {
		c.mu.Lock()
		c.runs[m.ID]++
		run := c.runs[m.ID]
		c.mu.Unlock()
		if err := inner(ctx, m, run); err != nil {
			return err
		}
		c.mu.Lock()
		c.ok[m.ID]++
		c.mu.Unlock()
		return nil
	}, counting, mw)
}

var errFirstRun = errors.New("dedupetest: first run fails on purpose")

func testDuplicates(t *testing.T, e *messagetest.Env) {
	topic, group := e.Topic(), e.Group("dedupe")
	e.Prepare(topic, group)
	c := newDedupeCounts()
	e.Subscribe(e.Subscriber(e.Config(group, 4)), topic, c.handler(t, func(context.Context, *message.Message, int) error { return nil }))
	pub := e.Publisher()
	dup, other := "dup-"+message.NewID(), "other-"+message.NewID()
	for i := range 3 {
		e.Publish(pub, topic, &message.Message{ID: dup, Payload: fmt.Appendf(nil, "copy %d", i+1)})
	}
	e.Publish(pub, topic, &message.Message{ID: other, Payload: []byte("control")})
	e.Eventually("3 deliveries of "+dup+" and 1 of "+other+" settled", func() (bool, string) {
		_, _, d := c.get(dup)
		_, _, o := c.get(other)
		return d >= 3 && o >= 1, fmt.Sprintf("%d and %d settled", d, o)
	})
	if runs, ok, settled := c.get(dup); runs != 1 || ok != 1 || settled != 3 {
		t.Errorf("%s: handler ran %d times (%d succeeded), %d deliveries settled; want 1 run for 3 deliveries", dup, runs, ok, settled)
	}
	if runs, _, settled := c.get(other); runs != 1 || settled != 1 {
		t.Errorf("%s: handler ran %d times, %d deliveries settled; want 1 and 1", other, runs, settled)
	}
}

func testFirstRunFails(t *testing.T, e *messagetest.Env) {
	topic, group := e.Topic(), e.Group("dedupe")
	e.Prepare(topic, group)
	c := newDedupeCounts()
	e.Subscribe(e.Subscriber(e.Config(group, 4)), topic, c.handler(t, func(_ context.Context, _ *message.Message, run int) error {
		if run == 1 {
			return errFirstRun
		}
		return nil
	}))
	pub := e.Publisher()
	id := "flaky-" + message.NewID()
	e.Publish(pub, topic, &message.Message{ID: id, Payload: []byte("original")})
	e.Eventually("the first run of "+id+" to fail", func() (bool, string) {
		runs, _, _ := c.get(id)
		return runs >= 1, fmt.Sprintf("%d runs", runs)
	})
	e.Publish(pub, topic, &message.Message{ID: id, Payload: []byte("duplicate")})
	e.Eventually("both copies of "+id+" settled", func() (bool, string) {
		runs, ok, settled := c.get(id)
		return settled >= 2, fmt.Sprintf("%d runs, %d succeeded, %d settled", runs, ok, settled)
	})
	if runs, ok, settled := c.get(id); runs != 2 || ok != 1 || settled != 2 {
		t.Errorf("%s: handler ran %d times (%d succeeded), %d deliveries settled; want 2 runs (one failure, one success) for 2 settled deliveries", id, runs, ok, settled)
	}
}
