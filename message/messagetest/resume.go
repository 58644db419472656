package messagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// testResume consumes a first batch in a group, stops, publishes a second
// batch and consumes it with a new subscriber in the same group: no message
// of the first batch may come again. Both batches use the same keys, so any
// redelivered first-batch message would arrive before the second batch of
// its key (per-key order) and is seen before the wait for the second batch
// ends.
func (s *suite) testResume(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	keys := []string{"k0", "k1", "k2", "k3"}

	first := keyedMessages(keys, 5)
	e.Publish(pub, topic, first...)
	c1 := NewCollector()
	sub1 := e.Subscriber(e.Config(group, 4))
	run1 := e.subscribe(sub1, topic, c1.handler(0))
	c1.WaitAll(e, "first batch", ids(first))
	e.stop(run1)
	if err := sub1.Close(); err != nil {
		t.Errorf("Close of the first subscriber: %v", err)
	}
	c1.checkOnly(e, "first subscriber", ids(first))

	second := keyedMessages(keys, 5)
	e.Publish(pub, topic, second...)
	c2 := NewCollector()
	run2 := e.subscribe(e.Subscriber(e.Config(group, 4)), topic, c2.handler(0))
	c2.WaitAll(e, "second batch in the resumed group", ids(second))
	e.stop(run2)
	for _, m := range first {
		if n := len(c2.get(m.ID)); n > 0 {
			t.Errorf("message %q (key %s) was settled by the first subscriber and delivered again %d times to the resumed one, want never", m.ID, m.Key, n)
		}
	}
	c2.checkOnly(e, "resumed subscriber", append(ids(first), ids(second)...))
}

// testNewGroupReadsHistory lets one group consume and settle everything, then
// starts a group that did not exist when the messages were published: it
// gets every message from the start. The harness must keep history for that
// (for inmem: a retention option). Enough messages are published that an
// adapter which drops settled history in chunks is caught.
func (s *suite) testNewGroupReadsHistory(t *testing.T) {
	e := s.env(t)
	topic, old := e.Topic(), e.Group("old")
	e.Prepare(topic, old)
	pub := e.Publisher()

	msgs := newMessages(4096, "m", distinctKeys("k"))
	e.Publish(pub, topic, msgs...)
	c1 := NewCollector()
	run1 := e.subscribe(e.Subscriber(e.Config(old, 8)), topic, c1.handler(0))
	c1.WaitAll(e, "existing group", ids(msgs))
	e.stop(run1)

	c2 := NewCollector()
	run2 := e.subscribe(e.Subscriber(e.Config(e.Group("new"), 8)), topic, c2.handler(0))
	c2.WaitAll(e, "group created after publishing, reading from the start", ids(msgs))
	e.stop(run2)
	c2.checkOnly(e, "new group", ids(msgs))
}

// testGracefulShutdown cancels a subscription while as many handlers as the
// concurrency allows are running. They must be allowed to finish with a live
// context (the drain timeout is long), Subscribe must return nil only after
// they finished, and their messages must be settled: a resumed subscriber in
// the same group gets exactly the messages that did not finish, so each
// message is handled exactly once in total.
func (s *suite) testGracefulShutdown(t *testing.T) {
	const concurrency = 4
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	// One message per key in flight at a time; later messages of a key
	// prove per key that nothing settled comes back (see testResume).
	keys := []string{"k0", "k1", "k2", "k3"}
	msgs := keyedMessages(keys, 3)
	e.Publish(pub, topic, msgs...)

	var (
		mu        sync.Mutex
		started   = make(map[string]bool)
		finished  = make(map[string]bool)
		ctxDone   []string // handlers whose ctx was cancelled before they finished
		cancelled = make(chan struct{})
	)
	h := func(ctx context.Context, m *message.Message) error {
		mu.Lock()
		started[m.ID] = true
		mu.Unlock()
		select {
		case <-cancelled:
		case <-ctx.Done():
		}
		// Work that goes on after shutdown began.
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			ctxDone = append(ctxDone, m.Key+"#"+string(m.Payload))
		}
		finished[m.ID] = true
		return nil
	}
	sub1 := e.Subscriber(e.Config(group, concurrency))
	run1 := e.subscribe(sub1, topic, h)
	e.Eventually(fmt.Sprintf("%d handlers in flight", concurrency), func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(started) >= concurrency, fmt.Sprintf("%d started", len(started))
	})
	run1.cancel()
	close(cancelled)
	if err := e.wait(run1, "its context being cancelled"); err != nil {
		t.Fatalf("Subscribe returned %v after its context was cancelled, want nil", err)
	}
	mu.Lock()
	if len(finished) != len(started) {
		t.Errorf("Subscribe returned while handlers were still running: %d started, %d finished; want it to wait for in-flight handlers", len(started), len(finished))
	}
	if len(ctxDone) > 0 {
		t.Errorf("handler context was cancelled during shutdown before the drain timeout (%v) for %s, want it live until in-flight handlers finish", e.timeout, abbrev(ctxDone))
	}
	done := make(map[string]bool, len(finished))
	for id := range finished {
		done[id] = true
	}
	mu.Unlock()
	if err := sub1.Close(); err != nil {
		t.Errorf("Close of the first subscriber: %v", err)
	}

	c2 := NewCollector()
	run2 := e.subscribe(e.Subscriber(e.Config(group, concurrency)), topic, c2.handler(0))
	var rest []string
	for _, m := range msgs {
		if !done[m.ID] {
			rest = append(rest, m.ID)
		}
	}
	c2.WaitAll(e, fmt.Sprintf("the %d messages not handled before shutdown, in the resumed subscriber", len(rest)), rest)
	e.stop(run2)
	var again []string
	for _, m := range msgs {
		if done[m.ID] && len(c2.get(m.ID)) > 0 {
			again = append(again, m.Key+"#"+string(m.Payload))
		}
	}
	if len(again) > 0 {
		t.Errorf("%d messages handled before shutdown were delivered again to the resumed subscriber, want them settled: %s", len(again), abbrev(again))
	}
	c2.checkOnly(e, "resumed subscriber", ids(msgs))
}
