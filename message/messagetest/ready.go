package messagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// readyProbe is a message.WithReady function that counts its calls.
type readyProbe struct {
	calls atomic.Int32
	ch    chan struct{} // closed by the first call
}

func newReadyProbe() *readyProbe { return &readyProbe{ch: make(chan struct{})} }

func (p *readyProbe) ctx() context.Context {
	return message.WithReady(context.Background(), func() {
		if p.calls.Add(1) == 1 {
			close(p.ch)
		}
	})
}

func (p *readyProbe) fired() bool {
	select {
	case <-p.ch:
		return true
	default:
		return false
	}
}

// testReady checks message.WithReady: a Subscribe that fails (bad input,
// a closed subscriber) never calls it; a running Subscribe calls it once,
// and a message published right after it fired, with no warm-up and
// without Harness.Prepare (called only at the end, so the adapter's own
// Subscribe must have made the group's topology), reaches every member of
// a fresh group, also a member that got no partition of its own.
func (s *suite) testReady(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")

	// Not ready when Subscribe cannot consume.
	bad := newReadyProbe()
	sub := e.Subscriber(e.Config(group, 1))
	if err := sub.Subscribe(bad.ctx(), "", nopHandler); err == nil {
		t.Errorf("Subscribe with an empty topic returned nil, want an error")
	}
	closed := e.Subscriber(e.Config(group, 1))
	if err := closed.Close(); err != nil {
		t.Fatalf("Subscriber.Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(bad.ctx(), e.timeout)
	err := closed.Subscribe(ctx, topic, nopHandler)
	cancel()
	e.isErr("Subscribe after Close", err, message.ErrClosed)
	if n := bad.calls.Load(); n != 0 {
		t.Errorf("the ready function was called %d times by Subscribe calls that failed (empty topic, closed subscriber), want 0: ready must mean consuming", n)
	}

	// Ready, once, while Subscribe runs.
	pub := e.Publisher()
	c := NewCollector()
	first := newReadyProbe()
	run := e.subscribeCtx(first.ctx(), sub, topic, c.handler(0))
	e.Eventually("the ready function to be called by a running Subscribe", func() (bool, string) {
		return first.fired(), "not called"
	})
	msgs := newMessages(20, "ready", distinctKeys("ready"))
	e.Publish(pub, topic, msgs...)
	c.WaitAll(e, "the messages published right after ready fired, without a warm-up", ids(msgs))

	// A second member of the group is ready too (whatever share it gets).
	second := newReadyProbe()
	c2 := NewCollector()
	run2 := e.subscribeCtx(second.ctx(), e.Subscriber(e.Config(group, 1)), topic, c2.handler(0))
	e.Eventually("the ready function of a second member of the group to be called", func() (bool, string) {
		return second.fired(), "not called"
	})
	more := newMessages(20, "ready-2", distinctKeys("ready-2"))
	e.Publish(pub, topic, more...)
	e.Eventually("the messages published after the second member was ready", func() (bool, string) {
		var missing []string
		for _, id := range ids(more) {
			if len(c.get(id)) == 0 && len(c2.get(id)) == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of %d missing: %s", len(missing), len(more), abbrev(missing))
	})
	e.stop(run2)
	e.stop(run)
	for name, p := range map[string]*readyProbe{"first member": first, "second member": second} {
		if n := p.calls.Load(); n != 1 {
			t.Errorf("the %s's ready function was called %d times, want exactly once", name, n)
		}
	}
	e.Prepare(topic, group) // lets the harness clean up what Subscribe made
}
