package messagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// testRestart publishes messages one at a time while the broker restarts,
// retrying a Publish that fails as a real caller would, and consumes them
// meanwhile. Every message whose Publish returned nil must be handled at
// least once (duplicates are allowed: at-least-once across a restart).
func (s *suite) testRestart(t *testing.T) {
	const total, beforeRestart = 300, 100
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()

	c := NewCollector()
	run := e.subscribe(e.Subscriber(e.Config(group, 4)), topic, c.handler(0))

	msgs := newMessages(total, "r", distinctKeys("k"))
	restarting := make(chan struct{})
	var (
		mu      sync.Mutex
		acked   []string
		retries int
	)
	pubDone := make(chan error, 1)
	// The publisher gives up after four timeouts: the restart itself may
	// take most of one.
	ctx, cancel := context.WithTimeout(context.Background(), 4*e.timeout)
	defer cancel()
	go func() {
		pubDone <- func() error {
			for i, m := range msgs {
				if i == beforeRestart {
					select {
					case <-restarting:
					case <-ctx.Done():
						return fmt.Errorf("restart never began: %w", ctx.Err())
					}
				}
				for {
					err := pub.Publish(ctx, topic, m)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return fmt.Errorf("message %d: Publish kept failing until the deadline: %w", i, err)
					}
					mu.Lock()
					retries++
					mu.Unlock()
					// Back off before retrying, as a caller would.
					select {
					case <-time.After(50 * time.Millisecond):
					case <-ctx.Done():
					}
				}
				mu.Lock()
				acked = append(acked, m.ID)
				mu.Unlock()
			}
			return nil
		}()
	}()
	ackedIDs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), acked...)
	}

	// Restart once consumption is under way.
	e.Eventually("some messages consumed before the restart", func() (bool, string) {
		n := len(ackedIDs())
		got := n - len(c.missing(ackedIDs()))
		return n >= beforeRestart && got >= beforeRestart/2, fmt.Sprintf("%d published, %d received", n, got)
	})
	close(restarting)
	s.h.RestartBroker(t)

	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatalf("publishing across the restart: %v", err)
		}
	case <-time.After(4 * e.timeout):
		t.Fatalf("publishing did not finish within %v after the restart", 4*e.timeout)
	}
	c.WaitAll(e, "every message whose Publish returned nil", ackedIDs())
	e.stop(run)
	var dups int
	for _, id := range ackedIDs() {
		if len(c.get(id)) > 1 {
			dups++
		}
	}
	mu.Lock()
	t.Logf("restart: %d messages published with %d Publish retries; %d handled more than once (allowed)", len(acked), retries, dups)
	mu.Unlock()
}
